import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import NIOTLS
import Synchronization
import Tunnel

/// HTTP/1.1 to apps over mesh streams.
public enum AppUpstreamHTTP {
    /// NIO's client codec, without its check of every outgoing header: the heads sent on these streams are built
    /// by `ForwardedHeaders.request`, from HTTPTypes fields (whose values are legal by construction: invalid bytes
    /// become spaces) and values of the gateway's own, or are the http-check's constant ones. The check cost a
    /// sixteenth of the busiest thread, the mesh node's.
    public static func addCodec(to channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
    }
}

/// TLS to HTTPS apps (`ResolvedApp.https`, port URLs `8443s--…`), over the mesh stream and below the HTTP codec.
public enum AppUpstreamTLS {
    /// Certificates are not verified, on purpose: the app listens on 127.0.0.1 inside the workspace, the mesh
    /// stream to it is already encrypted and authenticated end to end (WireGuard to the agent's node), and such
    /// apps nearly always present a self-signed certificate with no name to check it against. TLS here is only
    /// what the app insists on speaking. ALPN offers http/1.1 alone: the exchange is HTTP/1.1.
    static let context = Result<NIOSSLContext, any Error> {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        configuration.applicationProtocols = ["http/1.1"]
        // Closing waits this long for the app's close_notify; many servers never send one.
        configuration.shutdownTimeout = .seconds(2)
        return try NIOSSLContext(configuration: configuration)
    }

    /// Sets up a new stream to an HTTPS app for HTTP/1.1 exchanges: TLS, then NIO's client codec. Usable as a
    /// stream pool's pipeline (a second pool keeps TLS streams alive across exchanges) or with
    /// `FreshAgentStreams`. On the stream's event loop, before anything is sent.
    public static func configure(_ channel: any Channel) throws {
        try addHandlers(to: channel)
        try AppUpstreamHTTP.addCodec(to: channel)
    }

    /// The sniffer and TLS alone, for raw byte streams (WebSocket splices).
    static func addHandlers(to channel: any Channel) throws {
        let handlers = channel.pipeline.syncOperations
        // Below TLS, so it sees the app's own first byte: a plain HTTP app answers the ClientHello in text.
        try handlers.addHandler(FirstByteSniffer())
        try handlers.addHandler(NIOSSLClientHandler(context: context.get(), serverHostname: nil))
    }
}

extension AppUpstreamTLS {
    /// Whether the app on `port` completes a TLS handshake. Asked only after a plain HTTP request met a silent
    /// close on a new stream: BoringSSL-based servers (and others) drop a plain request without a word, so
    /// only trying TLS tells an HTTPS app from one that merely hung up.
    static func handshakes(agent: UUID, port: UInt16, dialer: any AgentStreamDialer, within timeout: TimeAmount = .seconds(2)) async -> Bool {
        let outcome = try? await dialer.openStream(toAgent: agent, service: .tcp(port: port)) { channel in
            channel.eventLoop.makeCompletedFuture {
                try addHandlers(to: channel)
                let probe = HandshakeProbe(timeout: timeout, result: channel.eventLoop.makePromise())
                try channel.pipeline.syncOperations.addHandler(probe)
                return probe.result.futureResult
            }
        }
        return (try? await outcome?.get()) ?? false
    }
}

/// After TLS on a probing stream: whether the handshake completes in time, then the stream is closed.
final class HandshakeProbe: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let result: EventLoopPromise<Bool>
    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?
    private var decided = false

    init(timeout: TimeAmount, result: EventLoopPromise<Bool>) { (self.timeout, self.result) = (timeout, result) }

    func handlerAdded(context: ChannelHandlerContext) {
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { self.decide(false, context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { decide(true, context) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { decide(false, context) }

    func channelInactive(context: ChannelHandlerContext) {
        decide(false, context)
        context.fireChannelInactive()
    }

    private func decide(_ handshook: Bool, _ context: ChannelHandlerContext) {
        guard !decided else { return }
        decided = true
        deadline?.cancel()
        result.succeed(handshook)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension HandshakeProbe: Sendable {}

/// A new stream for every exchange, closed after it: the HTTPS apps' streams when no pool keeps them, and
/// anything that must not share a stream.
public struct FreshAgentStreams: AgentStreamFailureReporting {
    private let dialer: any AgentStreamDialer
    private let configure: @Sendable (any Channel) throws -> Void

    /// `configure` sets up each stream's pipeline on its event loop (`AppUpstreamTLS.configure` for HTTPS apps).
    public init(dialer: any AgentStreamDialer, configure: @escaping @Sendable (any Channel) throws -> Void) {
        (self.dialer, self.configure) = (dialer, configure)
    }

    public func checkoutReportingFailure(agent: UUID, port: UInt16) async throws -> (lease: AgentStreamLease, failure: AgentStreamFailureRecord?) {
        let configure = self.configure
        let failure = AgentStreamFailureRecord()
        let channel = try await dialer.openStream(toAgent: agent, service: .tcp(port: port)) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(failure.recorder())
                try configure(channel)
                return channel
            }
        }
        return (AgentStreamLease(channel: channel, agent: agent, port: port, reused: false), failure)
    }

    public func checkin(_ lease: AgentStreamLease) async { checkinOnLoop(lease) }

    public func checkinOnLoop(_ lease: AgentStreamLease) {
        // Not waited for: a TLS close waits for the app's close_notify, which nobody needs.
        lease.channel.close(promise: nil)
    }
}

/// A stream source that can also say why a new stream ended before its first exchange began: the agent's
/// refusal (`MeshStreamError.refused`, with its reason) can close a stream before the exchange's handlers are
/// in place, and is lost with it otherwise. Sources add `AgentStreamFailureRecord.recorder()` to new streams.
public protocol AgentStreamFailureReporting: AgentStreamSource {
    /// `checkout`, with the record of a new stream's first error (nil for a reused stream).
    func checkoutReportingFailure(agent: UUID, port: UInt16) async throws -> (lease: AgentStreamLease, failure: AgentStreamFailureRecord?)
}

extension AgentStreamFailureReporting {
    public func checkout(agent: UUID, port: UInt16) async throws -> AgentStreamLease {
        try await checkoutReportingFailure(agent: agent, port: port).lease
    }
}

/// A source that hands out a stream it already holds without waiting: the app proxy's fast path takes one on a
/// browser connection's event loop, where nothing may wait for a new stream to open (without one, the request
/// takes the full path).
public protocol IdleAgentStreamSource: AgentStreamSource {
    /// An idle stream to `tcp:port` of `agent` if one waits, else nil. Its lease's `claim` still decides on the
    /// stream's loop whether it is whole.
    func idleLease(agent: UUID, port: UInt16) -> AgentStreamLease?
}

/// The first error a stream reported, kept beyond the stream's pipeline.
public final class AgentStreamFailureRecord: Sendable {
    private let first = Mutex<(any Error)?>(nil)

    public init() {}

    public var error: (any Error)? { first.withLock { $0 } }

    /// The handler that records into this; add it to the stream's pipeline when setting it up.
    public func recorder() -> some ChannelHandler & RemovableChannelHandler { Recorder(record: self) }

    fileprivate func record(_ error: any Error) { first.withLock { $0 = $0 ?? error } }

    private final class Recorder: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        let record: AgentStreamFailureRecord

        init(record: AgentStreamFailureRecord) { self.record = record }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            record.record(error)
            context.fireErrorCaught(error)
        }
    }
}

/// What an app's first byte on a new stream says it speaks: enough to tell which of HTTP and HTTPS it wanted
/// when an exchange fails.
public enum HeardProtocol: Sendable, Equatable {
    /// A TLS record (alert or handshake): the app wants HTTPS.
    case tls
    /// A letter, as in `HTTP/1.1 400`: the app speaks plain HTTP.
    case plainText
}

/// Before everything else on a new stream, until the app's first byte: remembers it, then steps aside.
final class FirstByteSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private(set) var heard: HeardProtocol?
    private var seen = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        guard !seen, let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return context.fireChannelRead(data) }
        seen = true
        switch first {
        case 0x15, 0x16: heard = .tls  // alert, handshake
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"): heard = .plainText
        default: break
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

@available(*, unavailable)
extension FirstByteSniffer: Sendable {}
