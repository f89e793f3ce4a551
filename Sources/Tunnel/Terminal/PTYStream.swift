import NIOCore

/// One direction's frames, as `PTYWire` lays them out.
public protocol PTYFrame: Sendable {
    func encode(into buffer: inout ByteBuffer)
    static func decode(from buffer: inout ByteBuffer) throws -> Self?
}

extension PTYClientFrame: PTYFrame {}
extension PTYAgentFrame: PTYFrame {}

/// Bytes to frames; a malformed frame is an error, which closes the stream (and only it).
final class PTYFrameDecoder<Frame: PTYFrame>: ByteToMessageDecoder {
    typealias InboundOut = Frame

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Frame.decode(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData  // a partial frame at the end is dropped with the stream
    }
}

final class PTYFrameEncoder<Frame: PTYFrame>: MessageToByteEncoder {
    typealias OutboundIn = Frame

    func encode(data: Frame, out: inout ByteBuffer) throws {
        data.encode(into: &out)
    }
}

/// A `pty` stream as async frames, for both ends: the opener (gateway, CLI) and the agent.
public enum PTYStream {
    /// Opener side: receives the agent's frames, sends the opener's. Call on the stream's event loop (an
    /// `openStream` initializer).
    public static func opener(_ channel: any Channel) throws -> NIOAsyncChannel<PTYAgentFrame, PTYClientFrame> {
        try wrap(channel, decoding: PTYAgentFrame.self, encoding: PTYClientFrame.self)
    }

    /// Agent side: receives the opener's frames, sends the agent's. Call on the stream's event loop.
    public static func agent(_ channel: any Channel) throws -> NIOAsyncChannel<PTYClientFrame, PTYAgentFrame> {
        try wrap(channel, decoding: PTYClientFrame.self, encoding: PTYAgentFrame.self)
    }

    private static func wrap<In: PTYFrame, Out: PTYFrame>(
        _ channel: any Channel, decoding: In.Type, encoding: Out.Type
    ) throws -> NIOAsyncChannel<In, Out> {
        try channel.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(PTYFrameDecoder<In>()), MessageToByteHandler(PTYFrameEncoder<Out>()),
        ])
        return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
    }
}
