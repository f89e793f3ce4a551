import NIOCore
import NIOPosix

/// The `tcp:PORT` service: the listening node connects to `host:PORT` and splices the stream to that
/// connection, half-closes included. Which ports are reachable is the listener's choice (`allows`).
public struct MeshTCPForward: Sendable {
    public var host: String
    public var allows: @Sendable (UInt16) -> Bool

    public init(host: String = "127.0.0.1", allows: @escaping @Sendable (UInt16) -> Bool = { _ in true }) {
        (self.host, self.allows) = (host, allows)
    }

    /// The decision for a `tcp:` request; nil for other services.
    public func decision(for request: MeshStreamRequest) -> MeshStreamDecision? {
        guard case .tcp(let port) = request.service else { return nil }
        guard allows(port) else { return .refuse(reason: "port \(port) is not forwarded") }
        let host = self.host
        return .accept { stream in
            // Same event loop as the stream, so the splice handlers call each other directly.
            ClientBootstrap(group: stream.eventLoop)
                .channelOption(.allowRemoteHalfClosure, value: true)
                .connectTimeout(.seconds(10))
                .connect(host: host, port: Int(port))
                .flatMapError { error in
                    stream.eventLoop.makeFailedFuture(MeshTCPForwardError.connectFailed(host: host, port: port, cause: "\(error)"))
                }
                .flatMapThrowing { socket in
                    // The stream may have been reset while we connected: the socket must not outlive it.
                    stream.closeFuture.whenComplete { _ in socket.close(promise: nil) }
                    do {
                        let (streamSide, socketSide) = SpliceHandler.pair()
                        try stream.pipeline.syncOperations.addHandler(streamSide)
                        try socket.pipeline.syncOperations.addHandler(socketSide)
                    } catch {
                        socket.close(promise: nil)
                        throw error
                    }
                }
        }
    }
}

public enum MeshTCPForwardError: Error, CustomStringConvertible {
    case connectFailed(host: String, port: UInt16, cause: String)
    public var description: String {
        switch self {
        case .connectFailed(let host, let port, let cause): "connect to \(host):\(port) failed: \(cause)"
        }
    }
}

/// One half of a splice between two channels on the same event loop: what one reads the other writes.
/// Backpressure: a side reads only while its partner is writable. A half-close is passed on as a half-close,
/// and when either channel closes, so does the other.
public final class SpliceHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var partner: SpliceHandler?
    private var context: ChannelHandlerContext?
    private var readWaiting = false

    private init() {}

    /// Two joined handlers: add one to each channel's pipeline.
    public static func pair() -> (SpliceHandler, SpliceHandler) {
        let (first, second) = (SpliceHandler(), SpliceHandler())
        (first.partner, second.partner) = (second, first)
        return (first, second)
    }

    public func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.context?.write(data, promise: nil)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent, let partnerContext = partner?.context {
            // After the writes already handed over: a socket turns close(mode: .output) into a full close
            // once its own input has ended, which would drop bytes still pending.
            let done = partnerContext.eventLoop.makePromise(of: Void.self)
            partnerContext.writeAndFlush(wrapOutboundOut(partnerContext.channel.allocator.buffer(capacity: 0)), promise: done)
            done.futureResult.assumeIsolated().whenComplete { _ in partnerContext.close(mode: .output, promise: nil) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        partner?.context?.close(promise: nil)
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    public func read(context: ChannelHandlerContext) {
        if partner?.context?.channel.isWritable ?? false {
            context.read()
        } else {
            readWaiting = true
        }
    }

    private func resumeReading() {
        guard readWaiting, let context else { return }
        readWaiting = false
        context.read()
    }
}

@available(*, unavailable)
extension SpliceHandler: Sendable {}
