import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP2

/// HTTP/2 connections whose streams get a task only when Hummingbird must answer them.
///
/// Hummingbird's `HTTP2Channel` wraps every stream in an `NIOAsyncChannel` and starts a task for it as the stream
/// opens, before its request is known. Most streams to a busy gateway are app requests that the fast path
/// (`AppFastPathHandler`, among `streamHandlers`) answers on the event loop; for those, the wrapping, the task and
/// its wake-ups were about two fifths of the gateway's CPU per HTTP/2 request. Here a stream is wrapped and handed
/// to Hummingbird (`HTTPChannelHandler.handleHTTP`, the same responder) only when a request part gets past those
/// handlers. The connection's own life is `HTTP2ConnectionKeeper`'s.
struct AppHTTP2Channel: ServerChildChannel {
    typealias Stream = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    struct Value: ServerChildChannelValue {
        let channel: any Channel
        /// The streams handed to Hummingbird, as they are; finished when the connection closes.
        let streams: AsyncStream<Stream>
    }

    let responder: HTTPChannelHandler.Responder
    /// After each stream's HTTP/2-to-HTTP codec, in order (the fast path).
    let streamHandlers: @Sendable () -> [any RemovableChannelHandler]

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let (streams, handOff) = AsyncStream.makeStream(of: Stream.self)
            let keeper = HTTP2ConnectionKeeper(eventLoop: channel.eventLoop)
            let sync = channel.pipeline.syncOperations
            _ = try sync.configureHTTP2Pipeline(
                mode: .server, connectionConfiguration: .init(), streamConfiguration: .init(), streamDelegate: keeper.streamDelegate
            ) { stream in
                stream.eventLoop.makeCompletedFuture {
                    let streamSync = stream.pipeline.syncOperations
                    try streamSync.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                    try streamSync.addHandlers(streamHandlers())
                    try streamSync.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
                    try streamSync.addHandler(StreamHandOff(handOff))
                }
            }
            try sync.addHandler(keeper)
            channel.closeFuture.whenComplete { _ in handOff.finish() }
            return Value(channel: channel, streams: streams)
        }
    }

    func handle(value: Value, logger: Logger) async {
        let handler = StreamResponder(responder: responder)
        await withDiscardingTaskGroup { group in
            for await stream in value.streams {
                group.addTask { await handler.handleHTTP(asyncChannel: stream, logger: logger) }
            }
        }
    }

    /// Hummingbird's request loop for one stream (one request: the stream ends with its answer).
    private struct StreamResponder: HTTPChannelHandler {
        let responder: Responder

        func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Stream> {
            channel.eventLoop.makeCompletedFuture { try Stream(wrappingChannelSynchronously: channel) }
        }

        func handle(value: Stream, logger: Logger) async { await handleHTTP(asyncChannel: value, logger: logger) }
    }
}

/// Last in a stream's pipeline until the first request part reaches it: then the stream becomes an
/// `NIOAsyncChannel` for Hummingbird's task, the part goes into it, and this handler steps aside.
private final class StreamHandOff: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart

    private let handOff: AsyncStream<AppHTTP2Channel.Stream>.Continuation

    init(_ handOff: AsyncStream<AppHTTP2Channel.Stream>.Continuation) { self.handOff = handOff }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let stream: AppHTTP2Channel.Stream
        do {
            stream = try AppHTTP2Channel.Stream(wrappingChannelSynchronously: context.channel)
        } catch {
            return context.close(promise: nil)
        }
        guard case .enqueued = handOff.yield(stream) else {
            // The connection is gone.
            return context.close(promise: nil)
        }
        // The async channel's handler is after this one: the part reaches it, then everything after it does.
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// An error before any request part got here (a request NIO could not turn into HTTP, or one the fast path
    /// held until its answer was out): nobody else would end the stream, which would then hold its slot.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension StreamHandOff: Sendable {}
