import HTTPTypes
import NIOCore
import NIOHPACK
import NIOHTTP2

/// `AppFastPath` on one HTTP/2 connection, at the frame level: between NIO's `NIOHTTP2Handler` (frames, HPACK, flow
/// control, stream states) and its `HTTP2StreamMultiplexer`.
///
/// A stream whose first HEADERS frame is a request the fast path accepts is answered here with frames and never
/// gets a stream channel: a channel, its pipeline, its activation and the HTTP/2-to-HTTP codec were about a fifth of
/// the gateway's CPU per small HTTP/2 request. Every other stream's frames pass on to the multiplexer unchanged, and
/// so does a stream handed over (its idle mesh stream turned out stale before the app answered): its HEADERS frame
/// goes on then, with the creation event the multiplexer needs to activate its channel, and the full path decides.
///
/// Backpressure: a DATA frame's write completes once NIO's HTTP/2 handler has sent it, which waits for the
/// stream's and the connection's flow-control windows and for the TLS connection. The next body part is asked of
/// the app only while less than `unsentLimit` bytes of this stream wait, so no stream buffers more than that.
public final class AppHTTP2FastStreams: ChannelDuplexHandler {
    public typealias InboundIn = HTTP2Frame
    public typealias InboundOut = HTTP2Frame
    public typealias OutboundIn = HTTP2Frame
    public typealias OutboundOut = HTTP2Frame

    /// A stream's response bytes written but not yet sent past which its app is asked for no more. 64 KiB is the
    /// default initial stream window (RFC 9113 §6.9.2): at most one window waits.
    static let unsentLimit = 64 * 1024

    /// One stream served here.
    private final class Stream {
        let id: HTTP2StreamID
        let request: HTTPRequest
        let accepted: AppFastPath.Accepted
        /// Its first frame, for a handover.
        let headers: HTTP2Frame
        let began = NIODeadline.now()
        /// NIO's creation event, which a handed-over stream's channel needs (it marks the stream open on the wire).
        var created: NIOHTTP2StreamCreatedEvent?
        var exchange: FastExchangeOnLoop?
        var status: HTTPResponse.Status?
        var hasBody = true
        /// The head, until it goes out with the first DATA frame or as the whole response.
        var head: HTTPResponse?
        var unsentBytes = 0
        var waitingToPull = false
        /// The response has begun (it is logged and counted from then on).
        var started = false
        /// Its last frame is written; the stream stays listed until NIO reports it closed, so that frames still on
        /// their way for it end here.
        var done = false

        init(id: HTTP2StreamID, request: HTTPRequest, accepted: AppFastPath.Accepted, headers: HTTP2Frame) {
            (self.id, self.request, self.accepted, self.headers) = (id, request, accepted, headers)
        }
    }

    private let fastPath: AppFastPath
    private let secure: Bool
    private var streams: [HTTP2StreamID: Stream] = [:]
    /// The highest stream id seen opening: HEADERS on a higher one open a stream (client streams only ever rise).
    private var highestStreamID = HTTP2StreamID.rootStream
    private var clientAddress: String?

    init(fastPath: AppFastPath, secure: Bool) { (self.fastPath, self.secure) = (fastPath, secure) }

    // MARK: Frames in

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        // Our streams' later frames (WINDOW_UPDATE, RST_STREAM, PRIORITY) were handled by NIO's handler, which reports
        // what matters as events.
        if streams[frame.streamID] != nil { return }
        if case .headers(let block) = frame.payload, frame.streamID > highestStreamID {
            highestStreamID = frame.streamID
            if block.endStream, var request = HTTPRequest(http2Headers: block.headers) {
                if secure { request.scheme = "https" }
                if let accepted = fastPath.accept(request, clientAddress: address(context)) {
                    let stream = Stream(id: frame.streamID, request: request, accepted: accepted, headers: frame)
                    streams[frame.streamID] = stream
                    return serve(stream, context: context)
                }
            }
        }
        context.fireChannelRead(data)
    }

    private func address(_ context: ChannelHandlerContext) -> String {
        if let clientAddress { return clientAddress }
        let address = context.channel.remoteAddress?.ipAddress ?? ""
        clientAddress = address
        return address
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let created = event as? NIOHTTP2StreamCreatedEvent, let stream = streams[created.streamID] {
            stream.created = created
        } else if let closed = event as? StreamClosedEvent, let stream = streams.removeValue(forKey: closed.streamID), !stream.done {
            // The browser reset the stream, or the connection went (then the stream closed with it).
            abandon(stream)
        }
        // The multiplexer knows nothing of our streams' ids and passes their events on untouched.
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: Serving one

    private func serve(_ stream: Stream, context: ChannelHandlerContext) {
        fastPath.begin(stream.accepted, on: context.eventLoop) { start in self.started(start, stream, context: context) }
    }

    private func started(_ start: FastExchangeOnLoop.Start, _ stream: Stream, context: ChannelHandlerContext) {
        guard streams[stream.id] === stream else {
            if case .answered(let exchange, _) = start { exchange.abort() }
            return
        }
        switch start {
        case .answered(let exchange, let start):
            begin(stream)
            stream.exchange = exchange
            let answer = fastPath.answer(start, for: stream.accepted)
            stream.hasBody = answer.hasBody
            stream.status = answer.head.status
            stream.head = answer.head
            deliver(answer.parts, stream, context: context)
        case .handOver:
            handOver(stream, context: context)
        case .failed(let error):
            begin(stream)
            let page = fastPath.errorResponse(error, for: stream.accepted)
            stream.status = page.head.status
            stream.head = page.head
            deliver(page.body.map { [.bytes($0), .end(nil)] } ?? [.end(nil)], stream, context: context)
        }
    }

    /// Writes what the app sent; then either the response is complete or the next part is asked for. A part
    /// followed by the end goes as one frame carrying END_STREAM.
    private func deliver(_ parts: [AgentHTTPExchange.BodyPart], _ stream: Stream, context: ChannelHandlerContext) {
        var index = parts.startIndex
        while index < parts.endIndex {
            switch parts[index] {
            case .bytes(let chunk):
                index += 1
                guard stream.hasBody, chunk.readableBytes > 0 else { continue }
                writeHead(stream, endStream: false, context: context)
                if index < parts.endIndex, case .end(nil) = parts[index] {
                    stream.done = true
                    write(.data(.init(data: .byteBuffer(chunk), endStream: true)), on: stream, context: context)
                    return finish(stream, context: context)
                }
                writeData(chunk, stream, context: context)
            case .end(let trailers):
                stream.done = true
                if let trailers, stream.hasBody, !trailers.isEmpty {
                    writeHead(stream, endStream: false, context: context)
                    write(.headers(.init(headers: HPACKHeaders(http2Trailers: AppForwarder.httpFields(trailers)), endStream: true)), on: stream, context: context)
                } else if stream.head != nil {
                    writeHead(stream, endStream: true, context: context)
                } else {
                    write(.data(.init(data: .byteBuffer(context.channel.allocator.buffer(capacity: 0)), endStream: true)), on: stream, context: context)
                }
                return finish(stream, context: context)
            }
        }
        // More is to come: the head goes now (an app streaming events may say nothing for a while).
        writeHead(stream, endStream: false, context: context)
        context.flush()
        pull(stream, context: context)
    }

    private func writeHead(_ stream: Stream, endStream: Bool, context: ChannelHandlerContext) {
        guard let head = stream.head else { return }
        stream.head = nil
        write(.headers(.init(headers: HPACKHeaders(http2Response: head), endStream: endStream)), on: stream, context: context)
    }

    private func write(_ payload: HTTP2Frame.FramePayload, on stream: Stream, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: payload)), promise: nil)
    }

    /// A DATA frame counted until it is sent.
    private func writeData(_ chunk: ByteBuffer, _ stream: Stream, context: ChannelHandlerContext) {
        let size = chunk.readableBytes
        stream.unsentBytes += size
        let sent = context.eventLoop.makePromise(of: Void.self)
        let here = NIOLoopBound((handler: self, stream: stream, context: context), eventLoop: context.eventLoop)
        sent.futureResult.whenComplete { _ in
            let (handler, stream, context) = here.value
            stream.unsentBytes -= size
            if stream.waitingToPull, stream.unsentBytes < Self.unsentLimit {
                stream.waitingToPull = false
                handler.pull(stream, context: context)
            }
        }
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: .data(.init(data: .byteBuffer(chunk))))), promise: sent)
    }

    /// Asks for more of the body while little of it waits to be sent.
    private func pull(_ stream: Stream, context: ChannelHandlerContext) {
        guard streams[stream.id] === stream, !stream.done, let exchange = stream.exchange else { return }
        guard stream.unsentBytes < Self.unsentLimit else {
            stream.waitingToPull = true
            return
        }
        let here = NIOLoopBound((handler: self, stream: stream, context: context), eventLoop: context.eventLoop)
        exchange.nextBodyPart(to: context.eventLoop) { result in
            here.value.handler.received(result, here.value.stream, context: here.value.context)
        }
    }

    private func received(_ result: Result<AgentHTTPExchange.BodyPart, any Error>, _ stream: Stream, context: ChannelHandlerContext) {
        guard streams[stream.id] === stream, !stream.done else { return }
        switch result {
        case .success(let part):
            deliver([part], stream, context: context)
        case .failure:
            // The app's response broke off: so does this stream's (its length would be wrong), and only this one.
            abandon(stream)
            write(.rstStream(.internalError), on: stream, context: context)
            context.flush()
        }
    }

    /// The stream goes the full way: its HEADERS frame reaches the multiplexer now, as if it had just come.
    private func handOver(_ stream: Stream, context: ChannelHandlerContext) {
        streams[stream.id] = nil
        context.fireChannelRead(wrapInboundOut(stream.headers))
        // Without it the stream's channel never learns that the stream is open on the wire (NIO then treats it as
        // one never sent: closing it early would send no RST_STREAM); if it has not come yet, it passes on later.
        if let created = stream.created { context.fireUserInboundEventTriggered(created) }
        context.fireChannelReadComplete()
    }

    private func begin(_ stream: Stream) {
        stream.started = true
        fastPath.observer.started(stream.request)
    }

    /// The last frame is written (`done` set before it: writing it closes the stream within the call).
    private func finish(_ stream: Stream, context: ChannelHandlerContext) {
        report(stream)
        context.flush()
    }

    private func report(_ stream: Stream) {
        if stream.started { fastPath.report(stream.request, status: stream.status, began: stream.began) }
    }

    // MARK: The connection's end

    public func channelInactive(context: ChannelHandlerContext) {
        abandonAll()
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) { abandonAll() }

    private func abandonAll() {
        let open = streams.values
        streams.removeAll()
        for stream in open where !stream.done { abandon(stream) }
    }

    /// The browser went away, or the app's response broke off: the rest of the exchange goes.
    private func abandon(_ stream: Stream) {
        stream.done = true
        stream.exchange?.abort()
        report(stream)
    }
}

@available(*, unavailable)
extension AppHTTP2FastStreams: Sendable {}
