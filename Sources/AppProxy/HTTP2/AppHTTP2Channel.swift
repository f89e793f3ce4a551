import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP2

/// HTTP/2 connections to a gateway serving apps, whose streams get a channel only when Hummingbird must answer
/// them, and a task only then.
///
/// NIO's HTTP/2 handler, then the connection's own life (`HTTP2ConnectionKeeper`), then `connectionHandlers` on the
/// frames (the app fast path, `AppHTTP2FastStreams`, which answers most app requests without a stream channel),
/// then the stream multiplexer for the rest. Hummingbird's `HTTP2Channel` wraps every stream in an
/// `NIOAsyncChannel` and starts a task for it as the stream opens, before its request is known; here a stream is
/// wrapped and handed to Hummingbird (`HTTPChannelHandler.handleHTTP`, the same responder) when its first request
/// part arrives.
public struct AppHTTP2Channel: ServerChildChannel {
    public typealias Stream = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    public struct Value: ServerChildChannelValue {
        public let channel: any Channel
        /// The streams handed to Hummingbird, as they are; finished when the connection closes.
        let streams: AsyncStream<Stream>
    }

    let responder: HTTPChannelHandler.Responder
    /// After the keeper and before the stream multiplexer, in order, on HTTP/2 frames.
    let connectionHandlers: @Sendable () -> [any ChannelHandler]

    /// The connection came over TLS: every request is `https`, whatever its `:scheme` says (the scheme decides the
    /// token cookie's `Secure`, redirects and `X-Forwarded-Proto`).
    let secure: Bool

    public init(
        responder: @escaping HTTPChannelHandler.Responder, secure: Bool, connectionHandlers: @escaping @Sendable () -> [any ChannelHandler]
    ) {
        (self.responder, self.secure, self.connectionHandlers) = (responder, secure, connectionHandlers)
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let (streams, handOff) = AsyncStream.makeStream(of: Stream.self)
            let sync = channel.pipeline.syncOperations
            // NIO's defaults, as its configureHTTP2Pipeline sets them.
            let streamDefaults = NIOHTTP2Handler.StreamConfiguration()
            try sync.addHandler(NIOHTTP2Handler(mode: .server))
            try sync.addHandler(HTTP2ConnectionKeeper())
            try sync.addHandlers(connectionHandlers())
            let multiplexer = HTTP2StreamMultiplexer(
                mode: .server, channel: channel, targetWindowSize: streamDefaults.targetWindowSize,
                outboundBufferSizeHighWatermark: streamDefaults.outboundBufferSizeHighWatermark,
                outboundBufferSizeLowWatermark: streamDefaults.outboundBufferSizeLowWatermark
            ) { stream in
                stream.eventLoop.makeCompletedFuture {
                    let streamSync = stream.pipeline.syncOperations
                    try streamSync.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                    if secure { try streamSync.addHandler(SecureScheme()) }
                    try streamSync.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
                    try streamSync.addHandler(StreamHandOff(handOff))
                }
            }
            try sync.addHandler(multiplexer)
            channel.closeFuture.whenComplete { _ in handOff.finish() }
            return Value(channel: channel, streams: streams)
        }
    }

    public func handle(value: Value, logger: Logger) async {
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

/// Calls a stream's request `https`: it came over TLS. (The fast path sets its own requests' scheme the same way.)
private final class SecureScheme: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var request) = unwrapInboundIn(data) else { return context.fireChannelRead(data) }
        request.scheme = "https"
        context.fireChannelRead(wrapInboundOut(.head(request)))
    }
}

@available(*, unavailable)
extension SecureScheme: Sendable {}

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

    /// An error before any request part got here (a request NIO could not turn into HTTP): nobody else would end
    /// the stream, which would then hold its slot.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension StreamHandOff: Sendable {}
