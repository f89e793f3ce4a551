import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import Tunnel

/// One HTTP/1.1 exchange with an app behind an agent, on a stream from an `AgentStreamSource`, streaming both
/// ways: the request body goes out as the caller produces it (each chunk waits until the stream can take it),
/// and the response body comes in as the caller takes it (at most `HTTPExchangeHandler.bufferLimit` bytes wait).
/// The app proxy and the gateway's http-check both run their exchanges through this.
///
/// `begin` returns once the response head is in. Then read the body to its end and call `finish`, which checks
/// the stream back in when both sides kept it alive and closes it otherwise; or `abort`.
public final class AgentHTTPExchange: Sendable {
    public let lease: AgentStreamLease
    public let response: HTTPResponseHead
    private let handler: NIOLoopBound<HTTPExchangeHandler>
    private let upload: Task<Void, Never>?

    public enum BodyPart: Sendable {
        case bytes(ByteBuffer)
        /// The body ended, with the app's trailers if it sent any.
        case end(HTTPHeaders?)
    }

    /// Writes a request body; handed to the body closure of `begin`.
    public struct RequestBodyWriter: Sendable {
        fileprivate let handler: NIOLoopBound<HTTPExchangeHandler>
        fileprivate let channel: any Channel

        /// Returns once the stream can take more, so a fast producer never piles bytes up in memory.
        public func write(_ chunk: ByteBuffer) async throws {
            try await channel.awaitingCancellably(handler.eventLoop.flatSubmit { handler.value.sendBody(chunk) })
        }
    }

    private init(lease: AgentStreamLease, response: HTTPResponseHead, handler: NIOLoopBound<HTTPExchangeHandler>, upload: Task<Void, Never>?) {
        (self.lease, self.response, self.handler, self.upload) = (lease, response, handler, upload)
    }

    /// Sends `request` on a stream to `tcp:port` of `agent` and waits for the response head.
    ///
    /// Without `body` the request has none and, when `retryingStaleStreams` (idempotent methods), a reused stream
    /// that fails before the response head is given up for another: the app may have closed that idle
    /// connection just as the request went out (the keep-alive race). With `body`, which runs as its own task
    /// while the response is awaited and read, nothing is retried: the body cannot be read twice.
    ///
    /// Throws `AgentHTTPExchangeFailure`.
    public static func begin(
        _ request: HTTPRequestHead, agent: UUID, port: UInt16, through streams: any AgentStreamSource, retryingStaleStreams: Bool = false,
        responseHeadTimeout: Duration = defaultResponseHeadTimeout, body: (@Sendable (RequestBodyWriter) async throws -> Void)? = nil
    ) async throws -> AgentHTTPExchange {
        try await begin(
            request, agent: agent, port: port, through: streams, retryingStaleStreams: retryingStaleStreams, acceptsUpgrade: false,
            responseHeadTimeout: responseHeadTimeout, body: body
        )
    }

    /// How long an app may take to start its answer (nginx's `proxy_read_timeout` default). Once the head is in,
    /// a response may stream for as long as it likes: long polls and downloads are the app's business.
    public static let defaultResponseHeadTimeout = Duration.seconds(60)

    /// `acceptsUpgrade`: a WebSocket handshake, whose 101 ends the exchange and leaves the stream to the caller.
    static func begin(
        _ request: HTTPRequestHead, agent: UUID, port: UInt16, through streams: any AgentStreamSource, retryingStaleStreams: Bool,
        acceptsUpgrade: Bool, responseHeadTimeout: Duration = defaultResponseHeadTimeout, body: (@Sendable (RequestBodyWriter) async throws -> Void)?
    ) async throws -> AgentHTTPExchange {
        while true {
            let lease: AgentStreamLease
            var early: AgentStreamFailureRecord?
            do {
                if let reporting = streams as? any AgentStreamFailureReporting {
                    (lease, early) = try await reporting.checkoutReportingFailure(agent: agent, port: port)
                } else {
                    lease = try await streams.checkout(agent: agent, port: port)
                }
            } catch {
                throw AgentHTTPExchangeFailure(stage: .stream, cause: error, heard: nil, reusedStream: false)
            }
            let channel = lease.channel
            let (handler, sniffer): (NIOLoopBound<HTTPExchangeHandler>, NIOLoopBound<FirstByteSniffer?>)
            do {
                (handler, sniffer) = try await channel.eventLoop.submit {
                    let pipeline = channel.pipeline.syncOperations
                    // The sniffer goes below everything on a new stream, before the request leaves (TLS streams
                    // got theirs when they were set up, before their ClientHello).
                    var sniffer = try? pipeline.handler(type: FirstByteSniffer.self)
                    if sniffer == nil, !lease.reused {
                        sniffer = FirstByteSniffer()
                        try pipeline.addHandler(sniffer!, position: .first)
                    }
                    let handler = HTTPExchangeHandler(request: request, acceptsUpgrade: acceptsUpgrade, eventLoop: channel.eventLoop)
                    try pipeline.addHandler(handler)
                    if body == nil { _ = handler.endRequest() }
                    return (NIOLoopBound(handler, eventLoop: channel.eventLoop), NIOLoopBound(sniffer, eventLoop: channel.eventLoop))
                }.get()
            } catch {
                channel.close(promise: nil)
                throw AgentHTTPExchangeFailure(stage: .request, cause: early?.error ?? error, heard: nil, reusedStream: lease.reused)
            }
            let uploadFailure = FirstError()
            // The app's time to answer runs from the end of the request: a long upload is not a slow app.
            let deadline = ResponseHeadDeadline(channel: channel, limit: responseHeadTimeout)
            if body == nil { deadline.arm() }
            let upload = body.map { body in
                Task {
                    do {
                        try await body(RequestBodyWriter(handler: handler, channel: channel))
                        try await channel.awaitingCancellably(handler.eventLoop.flatSubmit { handler.value.endRequest() })
                        deadline.arm()
                    } catch {
                        // The app must not wait for the rest of a body that will never come.
                        uploadFailure.record(error)
                        channel.close(promise: nil)
                    }
                }
            }
            do {
                let response = try await channel.awaitingCancellably(handler.eventLoop.flatSubmit { handler.value.head.futureResult })
                deadline.cancel()
                return AgentHTTPExchange(lease: lease, response: response, handler: handler, upload: upload)
            } catch {
                deadline.cancel()
                if let timedOut = deadline.expired {
                    upload?.cancel()
                    await upload?.value
                    throw AgentHTTPExchangeFailure(stage: .request, cause: timedOut, heard: nil, reusedStream: lease.reused)
                }
                channel.close(promise: nil)
                // The body may be waiting on the client: it ends now, with the stream.
                upload?.cancel()
                await upload?.value
                if lease.reused, retryingStaleStreams, body == nil, !Task.isCancelled { continue }
                let heard = try? await channel.eventLoop.submit { sniffer.value?.heard }.get()
                // A stream that ended before the exchange's handler was in place says why only to its record.
                let cause = uploadFailure.error ?? (error as? ChannelError == .ioOnClosedChannel ? early?.error : nil) ?? error
                throw AgentHTTPExchangeFailure(stage: .request, cause: cause, heard: heard ?? nil, reusedStream: lease.reused)
            }
        }
    }

    /// The next piece of the response body. Throws `AgentHTTPExchangeFailure` (stage `.response`).
    public func nextBodyPart() async throws -> BodyPart {
        let handler = self.handler
        do {
            return try await lease.channel.awaitingCancellably(handler.eventLoop.flatSubmit { handler.value.nextBodyPart() })
        } catch {
            throw AgentHTTPExchangeFailure(stage: .response, cause: error, heard: nil, reusedStream: lease.reused)
        }
    }

    /// After the body's end: waits for the request body to be sent, then checks the stream in to `streams` if
    /// both sides kept the connection alive, else closes it. Returns whether it was checked in.
    @discardableResult
    public func finish(returningTo streams: any AgentStreamSource) async -> Bool {
        let handler = self.handler
        // An app that answered before the whole body arrived (a 413, say) may never read the rest: its stream
        // cannot be reused, and the rest of the body is not worth waiting for.
        if (try? await handler.eventLoop.submit { handler.value.requestEndSent }.get()) != true { abort() }
        await upload?.value
        let reusable = (try? await handler.eventLoop.flatSubmit { handler.value.completion.futureResult }.get()) ?? false
        if reusable { await streams.checkin(lease) } else { lease.channel.close(promise: nil) }
        return reusable
    }

    /// Ends the exchange early: the stream is closed (an app mid-response cannot be interrupted otherwise).
    public func abort() {
        lease.channel.close(promise: nil)
        upload?.cancel()
    }

    /// The most response bytes that waited for the caller at once (bounded by the handler's buffer limit).
    public func peakBufferedResponseBytes() async -> Int {
        let handler = self.handler
        return (try? await handler.eventLoop.submit { handler.value.peakBufferedBytes }.get()) ?? 0
    }
}

/// Why an exchange failed, and how far it had got.
public struct AgentHTTPExchangeFailure: Error, CustomStringConvertible {
    public enum Stage: Sendable, Equatable {
        /// No stream: the agent is not reachable (`cause` is the stream source's error).
        case stream
        /// Before the response head: a refused port (`MeshStreamError.refused`), a connection the app closed,
        /// a TLS handshake that failed, a response that is not HTTP.
        case request
        /// The response had begun: a body cut short.
        case response
    }

    public let stage: Stage
    public let cause: any Error
    /// What the app's first byte on a new stream looked like, when one came before the failure.
    public let heard: HeardProtocol?
    /// The stream had carried an earlier exchange (so the app did speak HTTP on it).
    public let reusedStream: Bool

    /// A new stream that the app closed before saying anything: a crash, or a TLS server hearing plain text.
    var silentClose: Bool {
        guard stage == .request, !reusedStream, heard == nil else { return false }
        switch cause {
        case AppUpstreamError.closedEarly, HTTPParserError.invalidEOFState: return true
        default: return false
        }
    }

    public var description: String { "\(cause)" }
}

/// The first error recorded, shared between tasks.
/// The limit on waiting for a response head, from `arm()` (the request fully sent) to `cancel()` (the head is in).
/// Expiry closes the stream, which is what ends the wait; `expired` tells that close from any other.
private final class ResponseHeadDeadline: Sendable {
    private let channel: any Channel
    private let limit: Duration
    private let state = Mutex<(timer: Scheduled<Void>?, done: Bool, expired: AppUpstreamError?)>((nil, false, nil))

    init(channel: any Channel, limit: Duration) { (self.channel, self.limit) = (channel, limit) }

    var expired: AppUpstreamError? { state.withLock { $0.expired } }

    func arm() {
        let (channel, limit) = (self.channel, self.limit)
        state.withLock { state in
            guard !state.done, state.timer == nil else { return }
            state.timer = channel.eventLoop.scheduleTask(in: TimeAmount(limit)) { [self] in
                self.state.withLock { $0.expired = .noResponse(within: limit) }
                channel.close(promise: nil)
            }
        }
    }

    func cancel() {
        state.withLock { state in
            state.done = true
            state.timer?.cancel()
        }
    }
}

private final class FirstError: Sendable {
    private let first = Mutex<(any Error)?>(nil)

    var error: (any Error)? { first.withLock { $0 } }

    func record(_ error: any Error) { first.withLock { $0 = $0 ?? error } }
}

extension Channel {
    /// Waits for `future`; a cancelled task closes the channel, which fails whatever the future waits on.
    func awaitingCancellably<Value: Sendable>(_ future: EventLoopFuture<Value>) async throws -> Value {
        try await withTaskCancellationHandler {
            try await future.get()
        } onCancel: {
            self.close(promise: nil)
        }
    }
}
