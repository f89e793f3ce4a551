import NIOCore

/// One side of a byte-for-byte splice between two channels that may live on different event loops (the
/// browser's connection on the server's, the mesh stream on the mesh node's), so Tunnel's `SpliceHandler`,
/// which calls its partner's context directly, cannot serve. It talks to the other channel only through the
/// `Channel` API, which is safe from any thread and keeps the order of what one thread sends.
///
/// Backpressure: this side reads only while the other channel is writable; when the other side sees its
/// channel writable again it asks this channel to read. A half-close is passed on as a half-close (a full
/// close where the other channel cannot half-close), and when either channel closes, the other closes once
/// what it was handed is written.
final class ByteSplice: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let other: any Channel

    init(to other: any Channel) { self.other = other }

    func handlerAdded(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return Self.closeAfterWrites(other) }
        // The channel may have been set to read on demand only: the splice reads as long as the other side keeps up.
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        read(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        other.write(unwrapInboundIn(data), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        other.flush()
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        // A read not passed on here is asked for again by the other side once its channel is writable.
        if other.isWritable { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { other.read() }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent {
            // After what was handed over: a socket turns a half-close into a full close once its own input has
            // ended, which would drop bytes still pending.
            let other = self.other
            other.writeAndFlush(other.allocator.buffer(capacity: 0)).whenComplete { _ in
                other.close(mode: .output).whenFailure { _ in other.close(promise: nil) }
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        Self.closeAfterWrites(other)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private static func closeAfterWrites(_ channel: any Channel) {
        channel.writeAndFlush(channel.allocator.buffer(capacity: 0)).whenComplete { _ in channel.close(promise: nil) }
    }
}

@available(*, unavailable)
extension ByteSplice: Sendable {}

/// On the browser's connection from the takeover until the splice: keeps what arrives (a browser sends nothing
/// before the 101, but a FIN or an eager frame must not be lost) and asks for nothing more. On removal it
/// passes on, in order, the bytes, the half-close and the read it held back.
final class InboundHold: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer

    private var held: ByteBuffer?
    private var inputClosed = false
    private var readHeld = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if held == nil { held = bytes } else { held!.writeBuffer(&bytes) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {}

    func read(context: ChannelHandlerContext) { readHeld = true }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent { return inputClosed = true }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let held, held.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(held))
            context.fireChannelReadComplete()
        }
        held = nil
        if inputClosed { context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        if readHeld { context.read() }
    }
}

@available(*, unavailable)
extension InboundHold: Sendable {}
