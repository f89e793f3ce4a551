import NIOCore
import NIOHTTP1

/// Last in a stream's pipeline (after the HTTP/1.1 client codec) for one exchange: writes the request as the
/// caller hands it over, and queues the response for the caller to take. Bounded both ways: a body chunk is
/// accepted only while the stream is writable, and reading stops while `bufferLimit` bytes of response wait.
/// Once the response has ended and the request was sent it removes itself, so the stream is clean for the
/// next exchange. Everything here runs on the stream's event loop; `AgentHTTPExchange` is the async face.
final class HTTPExchangeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    typealias BodyPart = AgentHTTPExchange.BodyPart

    /// Response bytes held for a slow caller before the stream stops reading.
    static let bufferLimit = 256 << 10
    /// At most this much goes to the caller at once (small chunks are joined: fewer event loop hops).
    static let coalesceLimit = 64 << 10

    private let request: HTTPRequestHead
    /// A WebSocket handshake: a 101 is the answer hoped for, not a broken app.
    private let acceptsUpgrade: Bool
    let head: EventLoopPromise<HTTPResponseHead>
    /// Whether the stream may carry another exchange; decided once both sides ended, or false on a failure.
    let completion: EventLoopPromise<Bool>
    private var context: ChannelHandlerContext?

    private var responseHead: HTTPResponseHead?
    private var queue = CircularBuffer<ByteBuffer>()
    private(set) var bufferedBytes = 0
    private(set) var peakBufferedBytes = 0
    private var trailers: HTTPHeaders?
    private var responseEnded = false
    private var bodyWaiter: EventLoopPromise<BodyPart>?
    private var readHeld = false

    private var requestEnded = false
    /// The caller ended the request (the end may still be on its way).
    private(set) var requestEndSent = false
    private var writableWaiter: EventLoopPromise<Void>?
    private var failure: (any Error)?
    private var done = false

    init(request: HTTPRequestHead, acceptsUpgrade: Bool = false, eventLoop: any EventLoop) {
        (self.request, self.acceptsUpgrade) = (request, acceptsUpgrade)
        (head, completion) = (eventLoop.makePromise(), eventLoop.makePromise())
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        guard context.channel.isActive else { return fail(ChannelError.ioOnClosedChannel) }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.head(request)), promise: written)
        written.futureResult.assumeIsolated().whenFailure { self.fail($0) }
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    // MARK: The request, as the caller sends it

    /// Writes a body chunk; the future completes once the stream can take more (at once while it is writable).
    func sendBody(_ chunk: ByteBuffer) -> EventLoopFuture<Void> {
        guard let context, failure == nil, !requestEndSent else { return failedFuture(ChannelError.ioOnClosedChannel) }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(chunk))), promise: written)
        written.futureResult.assumeIsolated().whenFailure { self.fail($0) }
        if context.channel.isWritable { return context.eventLoop.makeSucceededVoidFuture() }
        let waiter = context.eventLoop.makePromise(of: Void.self)
        writableWaiter = waiter
        return waiter.futureResult
    }

    /// Ends the request; completes once the end is on its way.
    func endRequest(trailers: HTTPHeaders? = nil) -> EventLoopFuture<Void> {
        guard let context, failure == nil, !requestEndSent else { return failedFuture(ChannelError.ioOnClosedChannel) }
        requestEndSent = true
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(trailers)), promise: written)
        return written.futureResult.assumeIsolated().map {
            self.requestEnded = true
            self.completeIfEnded()
        }.flatMapErrorThrowing { error in
            self.fail(error)
            throw error
        }.nonisolated()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let waiter = writableWaiter {
            writableWaiter = nil
            waiter.succeed()
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: The response, as the caller takes it

    /// The next body bytes (up to `coalesceLimit`, joined from what is queued), or the end with its trailers.
    func nextBodyPart() -> EventLoopFuture<BodyPart> {
        let loop = completion.futureResult.eventLoop
        if var chunk = queue.popFirst() {
            while chunk.readableBytes < Self.coalesceLimit, var next = queue.first, next.readableBytes <= Self.coalesceLimit - chunk.readableBytes {
                queue.removeFirst()
                chunk.writeBuffer(&next)
            }
            bufferedBytes -= chunk.readableBytes
            resumeReadingIfRoom()
            return loop.makeSucceededFuture(.bytes(chunk))
        }
        if responseEnded { return loop.makeSucceededFuture(.end(trailers)) }
        if let failure { return loop.makeFailedFuture(failure) }
        precondition(bodyWaiter == nil, "one body reader at a time")
        let waiter = loop.makePromise(of: BodyPart.self)
        bodyWaiter = waiter
        return waiter.futureResult
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard failure == nil else { return }
        switch unwrapInboundIn(data) {
        case .head(let response):
            guard responseHead == nil else { return }
            if response.status == .switchingProtocols, !acceptsUpgrade { return fail(AppUpstreamError.unexpectedUpgrade) }
            // Interim responses (100 Continue, 103 Early Hints) precede the real one; the decoder drops most.
            guard response.status.code >= 200 || response.status == .switchingProtocols else { return }
            responseHead = response
            head.succeed(response)
        case .body(let chunk):
            if let waiter = bodyWaiter {
                bodyWaiter = nil
                waiter.succeed(.bytes(chunk))
            } else {
                queue.append(chunk)
                bufferedBytes += chunk.readableBytes
                peakBufferedBytes = max(peakBufferedBytes, bufferedBytes)
            }
        case .end(let trailers):
            self.trailers = trailers
            responseEnded = true
            if let waiter = bodyWaiter {
                bodyWaiter = nil
                waiter.succeed(.end(trailers))
            }
            completeIfEnded()
        }
    }

    /// Reads wait while the caller has `bufferLimit` bytes to take: the stream's receive window then closes
    /// and the app is slowed down end to end.
    func read(context: ChannelHandlerContext) {
        if bufferedBytes >= Self.bufferLimit, !responseEnded {
            readHeld = true
        } else {
            context.read()
        }
    }

    private func resumeReadingIfRoom() {
        guard readHeld, bufferedBytes < Self.bufferLimit, let context else { return }
        readHeld = false
        context.read()
    }

    // MARK: Ending

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent, !responseEnded { fail(AppUpstreamError.closedEarly) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { fail(error) }

    func channelInactive(context: ChannelHandlerContext) {
        fail(AppUpstreamError.closedEarly)
        context.fireChannelInactive()
    }

    /// Both sides ended: the stream is free again, and reusable if both kept the connection alive.
    private func completeIfEnded() {
        guard responseEnded, requestEnded, !done, let context else { return }
        done = true
        let reusable = request.isKeepAlive && (responseHead?.isKeepAlive ?? false)
        // A read held back must reach the channel, or an idle stream would never notice the app closing it.
        if readHeld {
            readHeld = false
            context.read()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        completion.succeed(reusable)
    }

    /// After the exchange completed nothing can fail it: the stream is someone else's business by then.
    private func fail(_ error: any Error) {
        guard !done, failure == nil else { return }
        failure = error
        done = true
        if responseHead == nil { head.fail(error) }
        if !responseEnded, let waiter = bodyWaiter {
            bodyWaiter = nil
            waiter.fail(error)
        }
        if let waiter = writableWaiter {
            writableWaiter = nil
            waiter.fail(error)
        }
        completion.succeed(false)
    }

    private func failedFuture(_ fallback: any Error) -> EventLoopFuture<Void> {
        completion.futureResult.eventLoop.makeFailedFuture(failure ?? fallback)
    }
}

@available(*, unavailable)
extension HTTPExchangeHandler: Sendable {}

/// How an app broke HTTP, in words for an error page.
public enum AppUpstreamError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The connection ended (or was reset) before the response did.
    case closedEarly
    /// A 101 to a request that asked for no upgrade.
    case unexpectedUpgrade
    /// No response head within the forwarder's limit: the app holds the request without answering.
    case noResponse(within: Duration)

    public var description: String {
        switch self {
        case .closedEarly: "the app closed the connection before the response ended"
        case .unexpectedUpgrade: "the app switched protocols unasked"
        case .noResponse(let limit): "the app did not answer within \(limit)"
        }
    }
}
