import Foundation
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The client's side of the login, on the pipeline so no frame after it is lost: answers ServerKey with a
/// sealed ClientInfo, checks the sealed ServerInfo, completes `serverKey` and steps aside.
final class DERPLoginHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = DERPFrame
    typealias InboundOut = DERPFrame
    typealias OutboundOut = DERPFrame

    let serverKey: EventLoopPromise<NodePublicKey>
    private let privateKey: NodePrivateKey
    private let meshKey: String?
    private var awaitingInfoFrom: NodePublicKey?
    private var done = false

    init(privateKey: NodePrivateKey, meshKey: String?, serverKey: EventLoopPromise<NodePublicKey>) {
        (self.privateKey, self.meshKey, self.serverKey) = (privateKey, meshKey, serverKey)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return context.fireChannelRead(data) }
        do {
            switch (unwrapInboundIn(data), awaitingInfoFrom) {
            case (.serverKey(let key), nil):
                awaitingInfoFrom = key
                let info = try DERPFrame.clientInfo(DERPClientInfo(meshKey: meshKey), from: privateKey, to: key)
                context.writeAndFlush(wrapOutboundOut(info), promise: nil)
            case (.serverInfo(let nonce, let sealed), let key?):
                guard let json = NaClBox.open(sealed, nonce: nonce, from: key, to: privateKey),
                    (try? JSONDecoder().decode(DERPServerInfo.self, from: Data(json))) != nil
                else { throw DERPError.badServerInfo("cannot open or parse") }
                done = true
                serverKey.succeed(key)
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            case (let frame, _):
                throw DERPConnection.DialError.unexpectedServerFrame(frame.type)
            }
        } catch {
            fail(context: context, error)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { fail(context: context, DERPConnection.DialError.closedDuringLogin) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done { fail(context: context, error) } else { context.fireErrorCaught(error) }
    }

    private func fail(context: ChannelHandlerContext, _ error: any Error) {
        guard !done else { return }
        done = true
        serverKey.fail(error)
        context.close(promise: nil)
    }
}

/// DERP over WebSocket on the client: binary messages carry a byte stream whose boundaries mean nothing,
/// so this turns messages into bytes and bytes into masked binary messages (RFC 6455 §5.3: clients mask).
final class WebSocketByteStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .continuation:
            context.fireChannelRead(wrapInboundOut(frame.unmaskedData))
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            context.close(promise: nil)
        case .text:
            // DERP is binary; text means the other end is not a DERP server.
            context.fireErrorCaught(DERPError.malformedFrame(type: 0, reason: "text WebSocket message"))
            context.close(promise: nil)
        default:
            break
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = WebSocketFrame(fin: true, opcode: .binary, maskKey: .random(), data: unwrapOutboundIn(data))
        context.write(wrapOutboundOut(frame), promise: promise)
    }
}

/// Reads the status of a refused upgrade's response (the upgrade handler has already decided).
final class ResponseStatusReader: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let status: EventLoopPromise<Int>
    private var done = false

    init(status: EventLoopPromise<Int>) { self.status = status }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !done, case .head(let head) = unwrapInboundIn(data) {
            done = true
            status.succeed(Int(head.status.code))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { status.fail(DERPConnection.DialError.closedDuringLogin) }
        done = true
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done { status.fail(error) }
        done = true
        context.close(promise: nil)
    }
}

/// Closes the connection when `IdleStateHandler` reports that nothing was read for its read timeout.
final class CloseOnReadIdle: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
