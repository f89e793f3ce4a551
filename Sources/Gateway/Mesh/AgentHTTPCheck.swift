import Foundation
import NIOCore
import NIOHTTP1
import Tunnel

/// One `GET` to 127.0.0.1:PORT inside a workspace, through an agent's `tcp:PORT` and the stream pool: what the
/// http-check endpoint reports, so operators (and the end-to-end tests) can see that the gateway reaches a port.
public enum AgentHTTPCheck {
    /// How much of the body is returned.
    public static let bodyPreviewLimit = 64 << 10
    /// How much of the body is read at most; the stream is closed there rather than drained.
    public static let bodyReadLimit = 1 << 20
    public static let defaultTimeout: Duration = .seconds(10)

    public struct Result: Sendable {
        public var status: Int
        public var headers: [(name: String, value: String)]
        /// The first `bodyPreviewLimit` bytes.
        public var body: ByteBuffer
        /// Bytes of body read, at most `bodyReadLimit`.
        public var bodyBytes: Int
        public var reusedStream: Bool
        public var elapsed: Duration
    }

    /// Sends `GET path` with `Host: 127.0.0.1:port` and reads the response, within `timeout` in all (finding
    /// the agent included). A reused stream that fails before any response byte is retried on another: the
    /// server may have closed that idle connection just as the request went out.
    public static func run(
        agent: UUID, port: UInt16, path: String, through streams: any AgentStreamSource, timeout: Duration = defaultTimeout
    ) async throws -> Result {
        let started = ContinuousClock.now
        return try await withThrowingTaskGroup(of: Result.self) { group in
            group.addTask {
                while true {
                    let lease = try await streams.checkout(agent: agent, port: port)
                    do {
                        let response = try await exchange(on: lease, request: request(path: path, port: port))
                        if response.reusable { await streams.checkin(lease) } else { try? await lease.channel.close() }
                        return Result(
                            status: Int(response.head.status.code), headers: response.head.headers.map { (name: $0.name, value: $0.value) },
                            body: response.preview, bodyBytes: response.bodyBytes, reusedStream: lease.reused, elapsed: .now - started
                        )
                    } catch {
                        lease.channel.close(promise: nil)
                        guard let failure = error as? HTTPExchangeFailure else { throw error }
                        guard lease.reused, !failure.responseStarted else { throw failure.cause }
                    }
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw AgentHTTPCheckError.timedOut(timeout)
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    static func request(path: String, port: UInt16) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "Host", value: "127.0.0.1:\(port)")
        head.headers.add(name: "User-Agent", value: "meshgate-http-check/\(BuildInfo.version)")
        head.headers.add(name: "Accept", value: "*/*")
        return head
    }

    /// Runs one exchange on the leased stream; cancelling closes the stream, which ends the exchange.
    private static func exchange(on lease: AgentStreamLease, request: HTTPRequestHead) async throws -> HTTPExchange.Response {
        let channel = lease.channel
        return try await withTaskCancellationHandler {
            try await channel.eventLoop.flatSubmit {
                let promise = channel.eventLoop.makePromise(of: HTTPExchange.Response.self)
                do {
                    try channel.pipeline.syncOperations.addHandler(HTTPExchange(request: request, promise: promise))
                } catch {
                    promise.fail(HTTPExchangeFailure(cause: error, responseStarted: false))
                }
                return promise.futureResult
            }.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

public enum AgentHTTPCheckError: Error, CustomStringConvertible {
    case timedOut(Duration)
    /// The stream ended (or failed) before the response was complete.
    case incompleteResponse(String)

    public var description: String {
        switch self {
        case .timedOut(let limit): "no complete response within \(limit)"
        case .incompleteResponse(let why): why
        }
    }
}

/// How an exchange failed, and whether any of the response had arrived (only then is a retry unsafe to skip).
struct HTTPExchangeFailure: Error {
    let cause: any Error
    let responseStarted: Bool
}

/// Last in the pipeline for one exchange: writes the request, collects the response, and removes itself when
/// the response ended so the stream can go back to the pool clean. Holds at most `bodyPreviewLimit` bytes; past
/// `bodyReadLimit` it stops by closing the stream (reading on would only drain what nobody looks at).
final class HTTPExchange: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    struct Response: Sendable {
        let head: HTTPResponseHead
        let preview: ByteBuffer
        let bodyBytes: Int
        /// Ended cleanly, and both sides keep the connection open.
        let reusable: Bool
    }

    private let request: HTTPRequestHead
    private let promise: EventLoopPromise<Response>
    private var head: HTTPResponseHead?
    private var preview = ByteBuffer()
    private var bodyBytes = 0
    private var finished = false

    init(request: HTTPRequestHead, promise: EventLoopPromise<Response>) {
        (self.request, self.promise) = (request, promise)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return fail(ChannelError.ioOnClosedChannel) }
        context.write(wrapOutboundOut(.head(request)), promise: nil)
        let sent = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: sent)
        sent.futureResult.assumeIsolated().whenFailure { self.fail($0) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !finished else { return }
        switch unwrapInboundIn(data) {
        case .head(let response):
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            guard response.status.code >= 200 || response.status == .switchingProtocols else { return }
            head = response
        case .body(var chunk):
            bodyBytes += chunk.readableBytes
            let room = AgentHTTPCheck.bodyPreviewLimit - preview.readableBytes
            if room > 0, let bytes = chunk.readSlice(length: min(chunk.readableBytes, room)) { preview.writeImmutableBuffer(bytes) }
            if bodyBytes >= AgentHTTPCheck.bodyReadLimit {
                bodyBytes = AgentHTTPCheck.bodyReadLimit
                succeed(reusable: false)
                context.close(promise: nil)
            }
        case .end:
            let reusable = request.isKeepAlive && (head?.isKeepAlive ?? false)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            succeed(reusable: reusable)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent {
            fail(AgentHTTPCheckError.incompleteResponse("the server closed the connection before the response ended"))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { fail(error) }

    func channelInactive(context: ChannelHandlerContext) {
        fail(AgentHTTPCheckError.incompleteResponse("the stream closed before the response ended"))
        context.fireChannelInactive()
    }

    private func succeed(reusable: Bool) {
        guard !finished, let head else { return fail(AgentHTTPCheckError.incompleteResponse("the response ended without a head")) }
        finished = true
        promise.succeed(Response(head: head, preview: preview, bodyBytes: bodyBytes, reusable: reusable))
    }

    private func fail(_ error: any Error) {
        guard !finished else { return }
        finished = true
        promise.fail(HTTPExchangeFailure(cause: error, responseStarted: head != nil))
    }
}

@available(*, unavailable)
extension HTTPExchange: Sendable {}
