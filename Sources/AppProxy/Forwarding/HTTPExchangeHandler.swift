import NIOCore
import NIOHTTP1
import Synchronization
import Tunnel

/// Last in a stream's pipeline (after the HTTP/1.1 client codec) for one exchange: writes the request as the
/// caller hands it over, and queues the response for the caller to take. Bounded both ways: a body chunk is
/// accepted only while the stream is writable, and reading stops while `bufferLimit` bytes of response wait.
/// Once the response has ended and the request was sent it removes itself, so the stream is clean for the
/// next exchange. Everything here runs on the stream's event loop; `AgentHTTPExchange` is the async face.
final class HTTPExchangeHandler: ChannelDuplexHandler, RemovableChannelHandler, NIOScheduledCallbackHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    typealias BodyPart = AgentHTTPExchange.BodyPart

    /// Response bytes held for a slow caller before the stream stops reading.
    static let bufferLimit = 256 << 10
    /// At most this much goes to the caller at once (small chunks are joined: fewer event loop hops).
    static let coalesceLimit = 64 << 10
    /// A response whose length is at most this goes to the caller whole, with its head: an app often writes its
    /// head and its body apart, and the body would otherwise cost the caller another hop to this loop and back.
    static let wholeBodyLimit = 64 << 10
    /// How long the head waits for such a body; then it goes alone (a slow body is the app's business).
    static let wholeBodyPatience = TimeAmount.milliseconds(20)

    /// The response head with the body parts that came in the same read: for a small response all of it, so
    /// the caller's first hop to this loop is usually its last.
    struct Start {
        let head: HTTPResponseHead
        let parts: [BodyPart]
    }

    private let request: HTTPRequestHead
    /// The request has no body: its end goes out with the head, in one flush.
    private let bodyless: Bool
    /// A WebSocket handshake: a 101 is the answer hoped for, not a broken app.
    private let acceptsUpgrade: Bool
    /// How long the app may take to start answering once the request is sent; nil: no limit.
    private let responseHeadTimeout: Duration?
    let eventLoop: any EventLoop
    /// How the response started, once it did (or failed before); and who waits for it. A callback, not a
    /// promise: the fast path takes it with no future at all (each costs allocations, on every request).
    private var started: Result<Start, any Error>?
    private var startWaiter: ((Result<Start, any Error>) -> Void)?
    /// Whether the stream may carry another exchange; decided once both sides ended, or false on a failure.
    private var reusable: Bool?
    private var completionWaiter: EventLoopPromise<Bool>?
    /// The same decision, readable off the loop without a hop (for the full path, which asks from its task).
    let outcome: HTTPExchangeOutcome?
    /// Takes the stream back when the exchange completed with keep-alive on both sides (on this loop).
    var checkin: (() -> Void)?
    private var context: ChannelHandlerContext?

    private var responseHead: HTTPResponseHead?
    /// The head is in and `start` waits for the end of the read, to take the body that came with it.
    private var startPending = false
    /// `start` waits for the end of a small body (`wholeBodyLimit`).
    private var awaitingWholeBody = false
    private var queue = CircularBuffer<ByteBuffer>()
    private(set) var bufferedBytes = 0
    private(set) var peakBufferedBytes = 0
    private var trailers: HTTPHeaders?
    private var responseEnded = false
    /// The reader waiting for the next body part (a callback: the fast path asks once per chunk, and a promise and
    /// its future per chunk cost allocations).
    private var bodyWaiter: ((Result<BodyPart, any Error>) -> Void)?
    private var deliveryScheduled = false
    private var readHeld = false
    /// The app's time to start answering, kept by the stream (`responseHeadTimeout`).
    private let headDeadline: ResponseHeadDeadline
    /// The wait for a small body: a scheduled callback to this handler (unlike `scheduleTask`, no promise and no
    /// closure).
    private var wholeBodyTimer: NIOScheduledCallback?

    private var requestEnded = false
    /// The caller ended the request (the end may still be on its way).
    private(set) var requestEndSent = false
    private var writableWaiter: EventLoopPromise<Void>?
    private var failure: (any Error)?
    private var done = false
    /// Both sides ended and the handler left the pipeline: the stream is no longer this exchange's.
    private(set) var completed = false
    /// Some part of a response (an interim one included) arrived.
    private var heardResponse = false

    /// Failed the way a kept-alive stream fails when the app closed it just as the request went out: closed before
    /// any part of an answer came. (A parse error or a 101 is the app's answer, not that race.)
    var closedBeforeAnswering: Bool {
        guard !heardResponse, let failure else { return false }
        return failure as? AppUpstreamError == .closedEarly || failure is ChannelError
    }

    init(
        request: HTTPRequestHead, bodyless: Bool, acceptsUpgrade: Bool = false, responseHeadTimeout: Duration? = nil,
        headDeadline: ResponseHeadDeadline, outcome: HTTPExchangeOutcome? = nil, eventLoop: any EventLoop
    ) {
        self.headDeadline = headDeadline
        (self.request, self.bodyless, self.acceptsUpgrade, self.responseHeadTimeout) = (request, bodyless, acceptsUpgrade, responseHeadTimeout)
        (self.outcome, self.eventLoop) = (outcome, eventLoop)
    }

    /// Sends the head, and for a request without a body its end. A write that fails also ends the stream, which
    /// fails the exchange: no promise is needed to hear of it.
    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        guard context.channel.isActive else { return fail(ChannelError.ioOnClosedChannel) }
        context.write(wrapOutboundOut(.head(request)), promise: nil)
        if bodyless {
            context.write(wrapOutboundOut(.end(nil)), promise: nil)
            (requestEndSent, requestEnded) = (true, true)
        }
        context.flush()
        if bodyless { armDeadline() }
    }

    /// Calls `waiter` on this loop with how the response started: at once if it has.
    func onStart(_ waiter: @escaping (Result<Start, any Error>) -> Void) {
        precondition(startWaiter == nil, "one start waiter")
        if let started { waiter(started) } else { startWaiter = waiter }
    }

    /// The start as a future, for the full path's task.
    func startFuture() -> EventLoopFuture<Start> {
        let promise = eventLoop.makePromise(of: Start.self)
        onStart { promise.completeWith($0) }
        return promise.futureResult
    }

    /// Whether the stream may carry another exchange, once decided.
    func completionFuture() -> EventLoopFuture<Bool> {
        if let reusable { return eventLoop.makeSucceededFuture(reusable) }
        let promise = completionWaiter ?? eventLoop.makePromise(of: Bool.self)
        completionWaiter = promise
        return promise.futureResult
    }

    private func deliverStartResult(_ result: Result<Start, any Error>) {
        guard started == nil else { return }
        started = result
        if let waiter = startWaiter {
            startWaiter = nil
            waiter(result)
        }
    }

    private func decide(_ reusable: Bool) {
        guard self.reusable == nil else { return }
        self.reusable = reusable
        outcome?.decide(reusable)
        completionWaiter?.succeed(reusable)
        completionWaiter = nil
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

    /// Ends the request; completes once the end is on its way. The app's time to answer runs from then: a long
    /// upload is not a slow app.
    func endRequest(trailers: HTTPHeaders? = nil) -> EventLoopFuture<Void> {
        guard let context, failure == nil, !requestEndSent else { return failedFuture(ChannelError.ioOnClosedChannel) }
        requestEndSent = true
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(trailers)), promise: written)
        // Registered first, so whoever waits on the result finds the exchange updated.
        written.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success:
                self.requestEnded = true
                self.armDeadline()
                self.completeIfEnded()
            case .failure(let error):
                self.fail(error)
            }
        }
        return written.futureResult
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let waiter = writableWaiter {
            writableWaiter = nil
            waiter.succeed()
        }
        context.fireChannelWritabilityChanged()
    }

    private func armDeadline() {
        guard let limit = responseHeadTimeout, responseHead == nil, !done, let context else { return }
        let loop = context.eventLoop
        headDeadline.arm(for: self, at: loop.now + TimeAmount(limit), on: loop)
    }

    /// `responseHeadTimeout` passed without a response head (called by `headDeadline`).
    func responseHeadTimedOut() {
        guard let limit = responseHeadTimeout, responseHead == nil else { return }
        fail(AppUpstreamError.noResponse(within: limit))
        context?.close(promise: nil)
    }

    private func cancelTimers() {
        headDeadline.disarm()
        guard let timer = wholeBodyTimer else { return }
        wholeBodyTimer = nil
        timer.cancel()
    }

    /// The small body's wait ended: the head goes with what came.
    func handleScheduledCallback(eventLoop: some EventLoop) {
        guard wholeBodyTimer != nil else { return }
        wholeBodyTimer = nil
        deliverStart()
    }

    // MARK: The response, as the caller takes it

    /// The next body bytes (up to `coalesceLimit`, joined from what is queued), or the end with its trailers, to
    /// `deliver` on this loop: at once if there is something to take.
    func nextBodyPart(_ deliver: @escaping (Result<BodyPart, any Error>) -> Void) {
        if let chunk = takeQueued() { return deliver(.success(.bytes(chunk))) }
        if responseEnded { return deliver(.success(.end(trailers))) }
        if let failure { return deliver(.failure(failure)) }
        precondition(bodyWaiter == nil, "one body reader at a time")
        bodyWaiter = deliver
    }

    /// The same as a future, for the full path's task.
    func nextBodyPart() -> EventLoopFuture<BodyPart> {
        let promise = eventLoop.makePromise(of: BodyPart.self)
        nextBodyPart { promise.completeWith($0) }
        return promise.futureResult
    }

    /// Queued bytes, joined up to `coalesceLimit`.
    private func takeQueued() -> ByteBuffer? {
        guard var chunk = queue.popFirst() else { return nil }
        while chunk.readableBytes < Self.coalesceLimit, var next = queue.first, next.readableBytes <= Self.coalesceLimit - chunk.readableBytes {
            queue.removeFirst()
            chunk.writeBuffer(&next)
        }
        bufferedBytes -= chunk.readableBytes
        resumeReadingIfRoom()
        return chunk
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard failure == nil else { return }
        heardResponse = true
        switch unwrapInboundIn(data) {
        case .head(let response):
            guard responseHead == nil else { return }
            if response.status == .switchingProtocols, !acceptsUpgrade { return fail(AppUpstreamError.unexpectedUpgrade) }
            // Interim responses (100 Continue, 103 Early Hints) precede the real one; the decoder drops most.
            guard response.status.code >= 200 || response.status == .switchingProtocols else { return }
            responseHead = response
            // After a 101 nothing more is HTTP: the caller takes the stream over now.
            if response.status == .switchingProtocols { return deliverStart() }
            startPending = true
            let length = response.headers.first(name: "content-length").flatMap(Int.init)
            awaitingWholeBody = length.map { $0 > 0 && $0 <= Self.wholeBodyLimit } ?? false
            cancelTimers()
        case .body(let chunk):
            queue.append(chunk)
            bufferedBytes += chunk.readableBytes
            peakBufferedBytes = max(peakBufferedBytes, bufferedBytes)
            // A waiting reader gets what arrived in this turn of the loop at its end, joined: the stream delivers a
            // packet's worth at a time, and a hop to the reader per packet was most of a download's cost.
            if bodyWaiter != nil, !deliveryScheduled {
                deliveryScheduled = true
                context.eventLoop.assumeIsolated().execute { self.deliverToWaiter() }
            }
        case .end(let trailers):
            self.trailers = trailers
            responseEnded = true
            // Completed first, so whoever the end wakes finds the outcome decided.
            completeIfEnded()
            if startPending { deliverStart() }
            if let waiter = bodyWaiter {
                // Bytes waiting for the end of the turn go first; the end follows on the next read.
                bodyWaiter = nil
                waiter(.success(takeQueued().map { .bytes($0) } ?? .end(trailers)))
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if startPending {
            if !awaitingWholeBody {
                deliverStart()
            } else if wholeBodyTimer == nil {
                // The body did not come with the head in this read: it gets its patience from now. (Usually it
                // came, and its end delivered the start before any timer was needed.)
                // Throws only on a loop that is shutting down, which ends the stream anyway.
                wholeBodyTimer = try? context.eventLoop.assumeIsolated().scheduleCallback(in: Self.wholeBodyPatience, handler: self)
            }
        }
        context.fireChannelReadComplete()
    }

    private func deliverToWaiter() {
        deliveryScheduled = false
        guard let waiter = bodyWaiter, let chunk = takeQueued() else { return }
        bodyWaiter = nil
        waiter(.success(.bytes(chunk)))
    }

    private func deliverStart() {
        guard let responseHead else { return }
        cancelTimers()
        (startPending, awaitingWholeBody) = (false, false)
        var parts: [BodyPart] = []
        while let chunk = takeQueued() { parts.append(.bytes(chunk)) }
        if responseEnded { parts.append(.end(trailers)) }
        deliverStartResult(.success(Start(head: responseHead, parts: parts)))
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

    /// Both sides ended: the stream is free again, and goes back to its source if both kept the connection alive.
    private func completeIfEnded() {
        guard responseEnded, requestEnded, !done, let context else { return }
        done = true
        // After a 101 the stream is the caller's, to splice or to close: it is neither reused nor closed here.
        let upgraded = responseHead?.status == .switchingProtocols
        completed = !upgraded
        let reusable = !upgraded && request.isKeepAlive && (responseHead?.isKeepAlive ?? false)
        // A read held back must reach the channel, or an idle stream would never notice the app closing it.
        if readHeld {
            readHeld = false
            context.read()
        }
        let channel = context.channel
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        decide(reusable)
        if reusable, let checkin { checkin() } else if !upgraded { channel.close(promise: nil) }
        checkin = nil
    }

    /// After the exchange completed nothing can fail it: the stream is someone else's business by then.
    private func fail(_ error: any Error) {
        guard !done, failure == nil else { return }
        failure = error
        done = true
        cancelTimers()
        checkin = nil
        decide(false)
        // A head already in goes out with what came after it; the failure then ends the body.
        if startPending { deliverStart() } else if responseHead == nil { deliverStartResult(.failure(error)) }
        if !responseEnded, let waiter = bodyWaiter {
            // Bytes that came in this turn go first; the reader meets the failure on its next read.
            bodyWaiter = nil
            waiter(takeQueued().map { .success(.bytes($0)) } ?? .failure(error))
        }
        if let waiter = writableWaiter {
            writableWaiter = nil
            waiter.fail(error)
        }
    }

    private func failedFuture(_ fallback: any Error) -> EventLoopFuture<Void> {
        eventLoop.makeFailedFuture(failure ?? fallback)
    }
}

extension HTTPExchangeHandler {
    /// On the stream's event loop: claims `lease`, puts the exchange (and on a new stream a `FirstByteSniffer`)
    /// in its pipeline and sends the request head, with its end too when `bodyless`. The stream goes back to
    /// `streams` when the exchange completes with keep-alive. nil: the idle stream ended while nobody held it.
    static func install(
        _ request: HTTPRequestHead, on lease: AgentStreamLease, returningTo streams: any AgentStreamSource, acceptsUpgrade: Bool = false,
        responseHeadTimeout: Duration?, outcome: HTTPExchangeOutcome? = nil, bodyless: Bool
    ) throws -> (exchange: HTTPExchangeHandler, sniffer: FirstByteSniffer?)? {
        guard lease.claim?() ?? true else { return nil }
        let pipeline = lease.channel.pipeline.syncOperations
        // The sniffer goes below everything on a new stream, before the request leaves (TLS streams got theirs
        // when they were set up, before their ClientHello).
        // A reused stream's sniffer heard the app's first answer and left: no lookup (a miss throws, and allocates).
        var sniffer = lease.reused ? nil : try? pipeline.handler(type: FirstByteSniffer.self)
        if sniffer == nil, !lease.reused {
            sniffer = FirstByteSniffer()
            try pipeline.addHandler(sniffer!, position: .first)
        }
        // A stream's first exchange puts it in; the next ones find it.
        let headDeadline: ResponseHeadDeadline
        if let kept = lease.reused ? try? pipeline.handler(type: ResponseHeadDeadline.self) : nil {
            headDeadline = kept
        } else {
            headDeadline = ResponseHeadDeadline()
            try pipeline.addHandler(headDeadline)
        }
        let exchange = HTTPExchangeHandler(
            request: request, bodyless: bodyless, acceptsUpgrade: acceptsUpgrade, responseHeadTimeout: responseHeadTimeout,
            headDeadline: headDeadline, outcome: outcome, eventLoop: lease.channel.eventLoop
        )
        exchange.checkin = { streams.checkinOnLoop(lease) }
        do {
            try pipeline.addHandler(exchange)
        } catch {
            // Its promises must not die unfulfilled.
            exchange.fail(error)
            throw error
        }
        return (exchange, sniffer)
    }
}

/// Whether an exchange's stream was reusable, once decided: set on the stream's loop, read anywhere.
final class HTTPExchangeOutcome: Sendable {
    private let reusable = Mutex<Bool?>(nil)

    var decided: Bool? { reusable.withLock { $0 } }

    func decide(_ value: Bool) { reusable.withLock { $0 = $0 ?? value } }
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
