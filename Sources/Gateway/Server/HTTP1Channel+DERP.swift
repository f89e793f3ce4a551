import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import Tunnel

/// HTTP/1.1 with WebSocket upgrades (Hummingbird) plus `Upgrade: DERP` taken over at the NIO level:
/// `UpgradePeek` decides from the first request head, then either Hummingbird's pipeline or the DERP
/// frame codec gets the connection from its first byte.
///
/// `setup` must not wait for that decision: a server child channel only starts reading (and ALPN only
/// releases the bytes it buffered) once setup has completed, so the decision travels in the value.
struct DERPAwareHTTP1Channel: ServerChildChannel {
    enum Choice: Sendable {
        case http1(HTTP1WebSocketUpgradeChannel.Value)
        case derp(NIOAsyncChannel<DERPFrame, DERPFrame>)
        case appUpgrade(RawRequestHead)
    }

    struct Value: ServerChildChannelValue {
        let choice: EventLoopFuture<Choice>
        let channel: any Channel
    }

    let http1: HTTP1WebSocketUpgradeChannel
    /// nil when the DERP server is disabled: `Upgrade: DERP` is then an ordinary request (404).
    let derp: DERPService?
    /// WebSocket upgrades to workspace apps; nil without a mesh (they then reach the router, which has no app).
    var apps: AppUpgrades? = nil
    /// Whether this connection came in over TLS (the scheme apps are told, and cookies' `Secure`).
    var secure = false

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        guard derp != nil || apps != nil else {
            return http1.setup(channel: channel, logger: logger).map { Value(choice: channel.eventLoop.makeSucceededFuture(.http1($0)), channel: channel) }
        }
        let decision = channel.eventLoop.makePromise(of: UpgradePeek.Decision.self)
        var isAppUpgrade: (@Sendable (RawRequestHead) -> Bool)?
        if let apps { isAppUpgrade = { head in apps.isAppUpgrade(head) } }
        let peek = UpgradePeek(decision: decision, derpEnabled: derp != nil, isAppUpgrade: isAppUpgrade)
        do {
            try channel.pipeline.syncOperations.addHandler(peek)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        // The futures below complete on this channel's loop, where the handler lives.
        let peekOnLoop = NIOLoopBound(peek, eventLoop: channel.eventLoop)
        let choice = decision.futureResult.flatMap { decided -> EventLoopFuture<Choice> in
            switch decided {
            case .http:
                return http1.setup(channel: channel, logger: logger).flatMap { value in
                    channel.pipeline.syncOperations.removeHandler(peekOnLoop.value).map { .http1(value) }
                }
            case .appUpgrade(let head):
                return channel.pipeline.syncOperations.removeHandler(peekOnLoop.value).map { .appUpgrade(head) }
            case .derp where derp?.server.admitConnection() == false:
                let refusal = channel.allocator.buffer(string: DERPService.tooManyConnectionsResponse)
                return channel.writeAndFlush(refusal).flatMap { channel.close() }.flatMap { channel.eventLoop.makeFailedFuture(ChannelError.inputClosed) }
            case .derp(let fastStart):
                guard let derp else { return channel.eventLoop.makeFailedFuture(ChannelError.inputClosed) }
                return channel.eventLoop.makeCompletedFuture {
                    // Fast start (Tailscale): the client skips reading a 101 and expects ServerKey first.
                    if !fastStart { channel.writeAndFlush(channel.allocator.buffer(string: derp.upgradeResponse()), promise: nil) }
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ByteToMessageHandler(DERPFrameDecoder(maximumFrameLength: DERPLimits.maxClientInfoLength)))
                    try sync.addHandler(MessageToByteHandler(DERPFrameEncoder()))
                    return try NIOAsyncChannel<DERPFrame, DERPFrame>(wrappingChannelSynchronously: channel)
                }.flatMap { asyncChannel in
                    channel.pipeline.syncOperations.removeHandler(peekOnLoop.value).map { .derp(asyncChannel) }
                }
            }
        }
        return channel.eventLoop.makeSucceededFuture(Value(choice: choice, channel: channel))
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.choice.get() {
            case .http1(let connection): await http1.handle(value: connection, logger: logger)
            case .derp(let connection): await derp?.serve(connection, logger: logger)
            case .appUpgrade(let head): await apps?.serve(head, on: value.channel, secure: secure, logger: logger)
            }
        } catch {
            logger.debug("connection closed before its first request", metadata: ["error": "\(error)"])
            try? await value.channel.close()
        }
    }
}
