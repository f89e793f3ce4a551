import NIOCore
import NIOHTTP2

/// The life of one HTTP/2 connection as a whole, after NIO's HTTP/2 handler (in `AppHTTP2Channel`): a graceful
/// shutdown that lets the streams in flight finish, the end of a connection whose client stopped sending (at
/// once: a stream still waiting for its request could never finish), and no ping floods.
///
/// A graceful shutdown (`ChannelShouldQuiesceEvent`) follows RFC 9113 §6.8: a GOAWAY naming the highest stream id,
/// so a client sending new streams that very moment does not lose them, and a PING; once the PING comes back, the
/// streams the client could have opened are all here, and a second GOAWAY names the last of them. The connection
/// closes when those have finished. (The server's grace period ends a client that never answers.)
final class HTTP2ConnectionKeeper: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// A PING sooner than this after the one before is a strike; past `pingStrikesAllowed` strikes the client is
    /// told to calm down (GOAWAY ENHANCE_YOUR_CALM) and closed. Each PING costs an answer, and a flood of them
    /// costs the server for nothing; keepalive pings (gRPC, Go, OkHttp send one every few seconds at most) never
    /// strike, with or without streams open.
    static let minimumPingInterval = TimeAmount.seconds(1)
    static let pingStrikesAllowed = 10
    /// The opaque data of the PING that follows the first GOAWAY.
    static let shutdownPing = HTTP2PingData(withInteger: 0x6D65_7368_6761_7465)  // "meshgate"

    private enum Phase {
        case serving
        /// The first GOAWAY and the PING are out.
        case awaitingPingAck
        /// The second GOAWAY is out: the connection ends with its last stream.
        case closing
    }

    private var phase = Phase.serving
    private var openStreams: Set<HTTP2StreamID> = []
    private var lastStreamID = HTTP2StreamID.rootStream
    private var pingStrikes = 0
    private var lastPing: NIODeadline?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if case .ping(let ping, let ack) = frame.payload {
            if ack, ping == Self.shutdownPing, phase == .awaitingPingAck {
                phase = .closing
                goAway(lastStreamID: lastStreamID, context: context)
                closeIfDone(context: context)
            } else if !ack {
                let now = context.eventLoop.now
                if let lastPing, now - lastPing < Self.minimumPingInterval { pingStrikes += 1 }
                lastPing = now
                if pingStrikes > Self.pingStrikesAllowed {
                    goAway(lastStreamID: lastStreamID, error: .enhanceYourCalm, context: context)
                    context.close(promise: nil)
                    return
                }
            }
        }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is ChannelShouldQuiesceEvent:
            if phase == .serving {
                phase = .awaitingPingAck
                goAway(lastStreamID: .maxID, context: context)
                context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .ping(Self.shutdownPing, ack: false))), promise: nil)
            }
        case let created as NIOHTTP2StreamCreatedEvent:
            openStreams.insert(created.streamID)
            lastStreamID = max(lastStreamID, created.streamID)
        case let closed as StreamClosedEvent:
            openStreams.remove(closed.streamID)
            closeIfDone(context: context)
        case ChannelEvent.inputClosed:
            context.close(promise: nil)
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // One stream's error (NIO has reset that stream) is that stream's business: its channel hears of it.
        if error is NIOHTTP2Errors.StreamError { return context.fireErrorCaught(error) }
        // A protocol error on the connection (NIO has sent its GOAWAY): nothing more can be served on it.
        context.close(promise: nil)
    }

    private func closeIfDone(context: ChannelHandlerContext) {
        if openStreams.isEmpty, phase == .closing { context.close(promise: nil) }
    }

    private func goAway(lastStreamID: HTTP2StreamID, error: HTTP2ErrorCode = .noError, context: ChannelHandlerContext) {
        let frame = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStreamID, errorCode: error, opaqueData: nil))
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }
}

@available(*, unavailable)
extension HTTP2ConnectionKeeper: Sendable {}
