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
/// `begin` returns once the response head is in. Then read the body to its end and call `finish`; or `abort`.
/// The stream goes back to its source on its own event loop the moment both sides have ended with keep-alive.
///
/// Every step that needs the stream hops to its event loop and back, which under load costs more than the
/// HTTP work itself; so a request without a body is set up, sent and answered in one hop, and the body that
/// came with the head (for small responses, all of it) is handed over in the same hop.
public final class AgentHTTPExchange: Sendable {
    public let lease: AgentStreamLease
    public let response: HTTPResponseHead
    /// Filled on the stream's loop when the exchange is set up.
    private let handler: NIOLoopBoundBox<HTTPExchangeHandler?>
    private let outcome: HTTPExchangeOutcome
    private let upload: Task<Void, Never>?
    /// Body parts that came with the head, taken before asking the loop for more.
    private let prefetched: Mutex<ArraySlice<BodyPart>>

    public enum BodyPart: Sendable {
        case bytes(ByteBuffer)
        /// The body ended, with the app's trailers if it sent any.
        case end(HTTPHeaders?)
    }

    /// Writes a request body; handed to the body closure of `begin`.
    public struct RequestBodyWriter: Sendable {
        fileprivate let handler: NIOLoopBoundBox<HTTPExchangeHandler?>
        fileprivate let channel: any Channel

        /// Returns once the stream can take more, so a fast producer never piles bytes up in memory.
        public func write(_ chunk: ByteBuffer) async throws {
            try await AgentHTTPExchange.awaiting(channel.eventLoop.flatSubmit { handler.value!.sendBody(chunk) }, on: channel, handler)
        }
    }

    private init(
        lease: AgentStreamLease, start: HTTPExchangeHandler.Start, handler: NIOLoopBoundBox<HTTPExchangeHandler?>, outcome: HTTPExchangeOutcome,
        upload: Task<Void, Never>?
    ) {
        (self.lease, self.response, self.handler, self.outcome, self.upload) = (lease, start.head, handler, outcome, upload)
        prefetched = Mutex(start.parts[...])
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
        var retried = false
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
            let loop = channel.eventLoop
            let handler = NIOLoopBoundBox<HTTPExchangeHandler?>.makeEmptyBox(valueType: HTTPExchangeHandler.self, eventLoop: loop)
            let outcome = HTTPExchangeOutcome()
            let snifferBox = NIOLoopBoundBox<FirstByteSniffer?>.makeEmptyBox(valueType: FirstByteSniffer.self, eventLoop: loop)
            // Set up on the loop: claim the stream, put the exchange's handlers in, send the head (and for a request
            // without a body, its end). The future is the response's start.
            let setUp = { @Sendable () throws -> EventLoopFuture<HTTPExchangeHandler.Start>? in
                guard
                    let (exchange, sniffer) = try HTTPExchangeHandler.install(
                        request, on: lease, returningTo: streams, acceptsUpgrade: acceptsUpgrade, responseHeadTimeout: responseHeadTimeout,
                        outcome: outcome, bodyless: body == nil
                    )
                else { return nil }
                (snifferBox.value, handler.value) = (sniffer, exchange)
                return exchange.startFuture()
            }
            let started: EventLoopFuture<HTTPExchangeHandler.Start>?
            do {
                started = try await loop.submit(setUp).get()
            } catch {
                channel.close(promise: nil)
                throw AgentHTTPExchangeFailure(stage: .request, cause: early?.error ?? error, heard: nil, reusedStream: lease.reused)
            }
            guard let started else {
                // The idle stream ended while nobody held it: another one.
                channel.close(promise: nil)
                continue
            }
            let uploadFailure = FirstError()
            let upload = body.map { body in
                Task {
                    do {
                        try await body(RequestBodyWriter(handler: handler, channel: channel))
                        try await awaiting(loop.flatSubmit { handler.value!.endRequest() }, on: channel, handler)
                    } catch {
                        // The app must not wait for the rest of a body that will never come.
                        uploadFailure.record(error)
                        channel.close(promise: nil)
                    }
                }
            }
            do {
                let start = try await awaiting(started, on: channel, handler)
                return AgentHTTPExchange(lease: lease, start: start, handler: handler, outcome: outcome, upload: upload)
            } catch {
                channel.close(promise: nil)
                // The body may be waiting on the client: it ends now, with the stream.
                upload?.cancel()
                await upload?.value
                if case .noResponse = error as? AppUpstreamError {
                    throw AgentHTTPExchangeFailure(stage: .request, cause: error, heard: nil, reusedStream: lease.reused)
                }
                // The keep-alive race: the app closed the idle connection as the request went out. Worth one more
                // try, and only then: an app that drops this request on every stream must not get it 65 times.
                if lease.reused, retryingStaleStreams, body == nil, !retried, !Task.isCancelled,
                    (try? await loop.submit { handler.value?.closedBeforeAnswering ?? true }.get()) == true
                {
                    retried = true
                    continue
                }
                let heard = try? await loop.submit { snifferBox.value?.heard }.get()
                // A stream that ended before the exchange's handler was in place says why only to its record.
                let cause = uploadFailure.error ?? (error as? ChannelError == .ioOnClosedChannel ? early?.error : nil) ?? error
                throw AgentHTTPExchangeFailure(stage: .request, cause: cause, heard: heard ?? nil, reusedStream: lease.reused)
            }
        }
    }

    /// The next piece of the response body. Throws `AgentHTTPExchangeFailure` (stage `.response`).
    public func nextBodyPart() async throws -> BodyPart {
        if let part = prefetched.withLock({ $0.popFirst() }) { return part }
        let handler = self.handler
        do {
            return try await Self.awaiting(lease.channel.eventLoop.flatSubmit { handler.value!.nextBodyPart() }, on: lease.channel, handler)
        } catch {
            throw AgentHTTPExchangeFailure(stage: .response, cause: error, heard: nil, reusedStream: lease.reused)
        }
    }

    /// The whole body, if it came with the head (a small response) without trailers; nil, and nothing taken,
    /// otherwise. A body in hand goes to the browser in one write rather than part by part.
    public func takeCompleteBody() -> ByteBuffer? {
        prefetched.withLock { parts in
            guard let body = Self.wholeBody(parts) else { return nil }
            parts.removeAll()
            return body
        }
    }

    /// `parts` joined, if they are a whole body (they end, without trailers); nil otherwise.
    static func wholeBody(_ parts: some Collection<BodyPart>) -> ByteBuffer? {
        guard case .end(nil)? = parts.reversed().first else { return nil }
        var body = ByteBuffer()
        for case .bytes(var chunk) in parts {
            if parts.count == 2 { body = chunk } else { body.writeBuffer(&chunk) }
        }
        return body
    }

    /// After the body's end: waits for the request body to be sent. Returns whether the stream went back to its
    /// source (both sides kept the connection alive); otherwise it is closed.
    @discardableResult
    public func finish() async -> Bool {
        if upload == nil, let reusable = outcome.decided { return reusable }
        let (handler, loop) = (self.handler, lease.channel.eventLoop)
        // An app that answered before the whole body arrived (a 413, say) may never read the rest: its stream
        // cannot be reused, and the rest of the body is not worth waiting for.
        if (try? await loop.submit { handler.value!.requestEndSent }.get()) != true { abort() }
        await upload?.value
        return (try? await loop.flatSubmit { handler.value!.completionFuture() }.get()) ?? false
    }

    /// Ends the exchange early: the stream is closed (an app mid-response cannot be interrupted otherwise), unless
    /// the exchange had completed and the stream is already someone else's.
    public func abort() {
        upload?.cancel()
        if outcome.decided == true { return }
        Self.closeUnlessCompleted(lease.channel, handler)
    }

    /// The most response bytes that waited for the caller at once (bounded by the handler's buffer limit).
    public func peakBufferedResponseBytes() async -> Int {
        let handler = self.handler
        return (try? await lease.channel.eventLoop.submit { handler.value!.peakBufferedBytes }.get()) ?? 0
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
private final class FirstError: Sendable {
    private let first = Mutex<(any Error)?>(nil)

    var error: (any Error)? { first.withLock { $0 } }

    func record(_ error: any Error) { first.withLock { $0 = $0 ?? error } }
}

extension AgentHTTPExchange {
    /// Waits for `future` on an exchange's stream. A cancelled task closes the stream, which fails whatever the
    /// future waits on, unless the exchange completed and handed the stream back: it may carry another by then.
    fileprivate static func awaiting<Value: Sendable>(
        _ future: EventLoopFuture<Value>, on channel: any Channel, _ handler: NIOLoopBoundBox<HTTPExchangeHandler?>
    ) async throws -> Value {
        try await withTaskCancellationHandler {
            try await future.get()
        } onCancel: {
            closeUnlessCompleted(channel, handler)
        }
    }

    fileprivate static func closeUnlessCompleted(_ channel: any Channel, _ handler: NIOLoopBoundBox<HTTPExchangeHandler?>) {
        channel.eventLoop.execute {
            if handler.value?.completed != true { channel.close(promise: nil) }
        }
    }
}
