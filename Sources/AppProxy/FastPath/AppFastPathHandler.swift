import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// `AppFastPath` on one HTTP/1.1 connection or HTTP/2 stream: after the codec, before Hummingbird's handlers.
///
/// A request the fast path accepts is answered here and never reaches Hummingbird; every other request is passed
/// on unchanged (except that its scheme is the connection's: Hummingbird's HTTP/1.1 codec calls every request
/// `http`). HTTP/1.1 responses must leave in the order the requests came, so a request is taken here only while
/// Hummingbird owes no response, and requests that arrive while one is served here wait (reading stops) until it
/// has been answered. A request whose idle stream turns out stale before the app answered is handed to
/// Hummingbird as it came, which retries it on another stream.
public final class AppFastPathHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    /// The request served here now.
    private final class Serving {
        let request: HTTPRequest
        let accepted: AppFastPath.Accepted
        let began = NIODeadline.now()
        var requestEnded = false
        var exchange: FastExchangeOnLoop?
        var status: HTTPResponse.Status?
        var hasBody = true
        var waitingForWritability = false
        /// The response has begun (it is logged and counted from then on).
        var started = false

        init(request: HTTPRequest, accepted: AppFastPath.Accepted) { (self.request, self.accepted) = (request, accepted) }
    }

    private let fastPath: AppFastPath
    private let secure: Bool
    private var serving: Serving?
    /// Responses Hummingbird still owes for requests passed on.
    private var owedByHummingbird = 0
    /// The parts of a request passed on are passed on up to its end.
    private var passingRequest = false
    /// What came while a request was served here, in order: request parts, and events and errors (a half-close,
    /// a parse error, a graceful shutdown), on which Hummingbird would end the connection: they reach it once
    /// the response is out and the requests before them are answered.
    private var held = CircularBuffer<Held>()
    private var readHeld = false
    /// A request answered before its end arrived: its remaining parts are dropped.
    private var droppingRequest = false
    /// A graceful shutdown began: requests go to Hummingbird, which closes the connection after its answer.
    private var quiescing = false

    private enum Held {
        case part(HTTPRequestPart)
        case event(Any)
        case error(any Error)
    }

    init(fastPath: AppFastPath, secure: Bool) { (self.fastPath, self.secure) = (fastPath, secure) }

    // MARK: Requests

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receive(unwrapInboundIn(data), context: context)
    }

    private func receive(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        if let serving {
            // The served request has no body: what comes before its end is a GET's stray body, dropped as the
            // full path drops it.
            if !serving.requestEnded {
                if case .end = part { serving.requestEnded = true }
            } else {
                held.append(.part(part))
            }
            return
        }
        if droppingRequest {
            if case .end = part { droppingRequest = false }
            return
        }
        switch part {
        case .head(var request):
            if secure { request.scheme = "https" }
            if owedByHummingbird == 0, !passingRequest, !quiescing,
                let accepted = fastPath.accept(request, clientAddress: context.channel.remoteAddress?.ipAddress ?? "")
            {
                return serve(Serving(request: request, accepted: accepted), context: context)
            }
            owedByHummingbird += 1
            passingRequest = true
            context.fireChannelRead(wrapInboundOut(.head(request)))
        case .body:
            context.fireChannelRead(wrapInboundOut(part))
        case .end:
            passingRequest = false
            context.fireChannelRead(wrapInboundOut(part))
        }
    }

    /// Requests go on while nothing was held back, or once the served one is answered.
    public func read(context: ChannelHandlerContext) {
        if serving != nil, !held.isEmpty { readHeld = true } else { context.read() }
    }

    // MARK: Serving one

    private func serve(_ serving: Serving, context: ChannelHandlerContext) {
        self.serving = serving
        fastPath.begin(serving.accepted, on: context.eventLoop) { start in self.started(start, serving, context: context) }
    }

    private func started(_ start: FastExchangeOnLoop.Start, _ serving: Serving, context: ChannelHandlerContext) {
        guard self.serving === serving else {
            if case .answered(let exchange, _) = start { exchange.abort() }
            return
        }
        switch start {
        case .answered(let exchange, let start): answer(start, exchange: exchange, serving, context: context)
        case .handOver: handOver(serving, context: context)
        case .failed(let error): respond(fastPath.errorResponse(error, for: serving.accepted), serving, context: context)
        }
    }

    private func answer(_ start: HTTPExchangeHandler.Start, exchange: FastExchangeOnLoop, _ serving: Serving, context: ChannelHandlerContext) {
        begin(serving)
        serving.exchange = exchange
        let answer = fastPath.answer(start, for: serving.accepted)
        serving.hasBody = answer.hasBody
        serving.status = answer.head.status
        context.write(wrapOutboundOut(.head(answer.head)), promise: nil)
        deliver(answer.parts, serving, context: context)
    }

    /// Writes what the app sent; then either the response is complete or the next part is asked for.
    private func deliver(_ parts: [AgentHTTPExchange.BodyPart], _ serving: Serving, context: ChannelHandlerContext) {
        for part in parts {
            switch part {
            case .bytes(let chunk):
                if serving.hasBody { context.write(wrapOutboundOut(.body(chunk)), promise: nil) }
            case .end(let trailers):
                context.write(wrapOutboundOut(.end(trailers.map(AppForwarder.httpFields))), promise: nil)
                return finish(serving, context: context)
            }
        }
        context.flush()
        if self.serving === serving { pull(serving, context: context) }
    }

    /// Asks for more of the body once the browser's side can take it.
    private func pull(_ serving: Serving, context: ChannelHandlerContext) {
        guard context.channel.isWritable else {
            serving.waitingForWritability = true
            return
        }
        guard let exchange = serving.exchange else { return }
        let here = NIOLoopBound((handler: self, serving: serving, context: context), eventLoop: context.eventLoop)
        exchange.nextBodyPart(to: context.eventLoop) { result in
            here.value.handler.received(result, here.value.serving, context: here.value.context)
        }
    }

    private func received(_ result: Result<AgentHTTPExchange.BodyPart, any Error>, _ serving: Serving, context: ChannelHandlerContext) {
        guard self.serving === serving, let exchange = serving.exchange else { return }
        switch result {
        case .success(let part):
            deliver([part], serving, context: context)
        case .failure:
            // The app's response broke off: so does the browser's, as on the full path (a connection, or an
            // HTTP/2 stream, closed mid-body).
            self.serving = nil
            exchange.abort()
            report(serving)
            context.close(promise: nil)
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let serving, serving.waitingForWritability {
            serving.waitingForWritability = false
            pull(serving, context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    /// A whole response at once (an error page).
    private func respond(_ response: (head: HTTPResponse, body: ByteBuffer?), _ serving: Serving, context: ChannelHandlerContext) {
        begin(serving)
        serving.status = response.head.status
        context.write(wrapOutboundOut(.head(response.head)), promise: nil)
        if let body = response.body { context.write(wrapOutboundOut(.body(body)), promise: nil) }
        context.write(wrapOutboundOut(.end(nil)), promise: nil)
        finish(serving, context: context)
    }

    /// The stream was stale: Hummingbird gets the request as it came, and everything after it.
    private func handOver(_ serving: Serving, context: ChannelHandlerContext) {
        self.serving = nil
        owedByHummingbird += 1
        passingRequest = !serving.requestEnded
        context.fireChannelRead(wrapInboundOut(.head(serving.request)))
        if serving.requestEnded { context.fireChannelRead(wrapInboundOut(.end(nil))) }
        context.fireChannelReadComplete()
        releaseHeld(context: context)
    }

    private func begin(_ serving: Serving) {
        serving.started = true
        fastPath.observer.started(serving.request)
    }

    /// The response is written. Done before the flush: flushing the end of an HTTP/2 stream closes it at once.
    private func finish(_ serving: Serving, context: ChannelHandlerContext) {
        self.serving = nil
        droppingRequest = !serving.requestEnded
        report(serving)
        context.flush()
        releaseHeld(context: context)
    }

    private func report(_ serving: Serving) {
        if serving.started { fastPath.report(serving.request, status: serving.status, began: serving.began) }
    }

    /// Takes up what waited, in order, until a request is served here again (its own parts up to its end are taken
    /// too); an event waits for the response before it.
    private func releaseHeld(context: ChannelHandlerContext) {
        var released = false
        releasing: while let next = held.first {
            switch next {
            case .part(let part):
                guard serving?.requestEnded != true else { break releasing }
                held.removeFirst()
                receive(part, context: context)
            case .event(let event):
                guard serving == nil else { break releasing }
                held.removeFirst()
                context.fireUserInboundEventTriggered(event)
            case .error(let error):
                guard serving == nil else { break releasing }
                held.removeFirst()
                context.fireErrorCaught(error)
            }
            released = true
        }
        if released { context.fireChannelReadComplete() }
        if held.isEmpty, readHeld {
            readHeld = false
            context.read()
        }
    }

    /// Whether events wait: while a request is served here, or anything waits behind it.
    private var holdingEvents: Bool { serving != nil || !held.isEmpty }

    // MARK: Responses Hummingbird writes, and the connection's end

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), owedByHummingbird > 0 { owedByHummingbird -= 1 }
        context.write(data, promise: promise)
    }

    /// A graceful shutdown, a half-close or a broken request behind the one served here wait for its response:
    /// Hummingbird, which ends the connection on them, hears of them afterwards.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { quiescing = true }
        if holdingEvents { held.append(.event(event)) } else { context.fireUserInboundEventTriggered(event) }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if holdingEvents { held.append(.error(error)) } else { context.fireErrorCaught(error) }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        abandon()
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) { abandon() }

    /// The browser went away: the app's half-sent response goes with it.
    private func abandon() {
        held.removeAll()
        guard let serving else { return }
        self.serving = nil
        serving.exchange?.abort()
        report(serving)
    }
}

@available(*, unavailable)
extension AppFastPathHandler: Sendable {}
