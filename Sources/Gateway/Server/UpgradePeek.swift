import Foundation
import NIOCore

/// Holds the first request head of an HTTP/1.1 connection until it is known whether it asks for
/// `Upgrade: DERP` (which Hummingbird's pipeline cannot hand over), then steps aside.
///
/// On removal it replays everything it held, in order, so the next pipeline sees the connection from its
/// first byte; for a DERP upgrade the request head is dropped first (it has been answered).
final class UpgradePeek: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum Decision: Sendable {
        case http
        /// `fastStart`: the client sent `Derp-Fast-Start: 1` and expects frames with no 101 before them.
        case derp(fastStart: Bool)
        /// A WebSocket upgrade for a workspace app: spliced to the app byte for byte, below Hummingbird.
        case appUpgrade(RawRequestHead)
    }
    /// A request head longer than this is not a DERP upgrade; HTTP decides what to do with it.
    static let maximumHeadLength = 16 * 1024
    /// A client that has not sent a whole request head by then is closed (slowloris).
    static let headTimeout: TimeAmount = .seconds(30)

    let decision: EventLoopPromise<Decision>
    private var held: ByteBuffer?
    private var decided: Decision?
    private var headLength = 0
    /// Bytes already searched for the end of the head, so a byte-at-a-time client costs linear work.
    private var scanned = 0
    private var deadline: Scheduled<Void>?

    /// Which first requests are for the DERP relay and which are app WebSocket upgrades (nil: none of either).
    let derpEnabled: Bool
    let isAppUpgrade: (@Sendable (RawRequestHead) -> Bool)?

    init(decision: EventLoopPromise<Decision>, derpEnabled: Bool = true, isAppUpgrade: (@Sendable (RawRequestHead) -> Bool)? = nil) {
        (self.decision, self.derpEnabled, self.isAppUpgrade) = (decision, derpEnabled, isAppUpgrade)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: Self.headTimeout) { [weak self] in
            guard let self, self.decided == nil else { return }
            self.giveUp()
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if held == nil { held = bytes } else { held!.writeBuffer(&bytes) }
        guard decided == nil, let held else { return }
        let view = held.readableBytesView
        if let end = Self.headEnd(view, from: max(0, scanned - 3)) {
            headLength = end
            decide(classify(String(decoding: view.prefix(end), as: UTF8.self)))
        } else if view.count > Self.maximumHeadLength {
            decide(.http)
        }
        scanned = view.count
    }

    func channelInactive(context: ChannelHandlerContext) {
        giveUp()
        context.fireChannelInactive()
    }

    /// Hummingbird allows half-closure, so a client's FIN arrives as an event, not as channelInactive.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, decided == nil {
            giveUp()
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Closed before a whole request head (a TLS probe, a port scan): nothing to serve. Deciding `.http` here
    /// would build a pipeline on a dead channel whose first request never comes, holding up shutdown.
    private func giveUp() {
        guard decided == nil else { return }
        deadline?.cancel()
        decided = .http
        decision.fail(ChannelError.inputClosed)
    }

    private func decide(_ value: Decision) {
        deadline?.cancel()
        decided = value
        decision.succeed(value)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        guard var held else { return }
        self.held = nil
        // A taken-over request's head has been read (and is answered or forwarded from its parsed form).
        switch decided {
        case .derp, .appUpgrade: held.moveReaderIndex(forwardBy: headLength)
        case .http, nil: break
        }
        if held.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(held))
            context.fireChannelReadComplete()
        }
    }

    /// Index just past "\r\n\r\n", if present.
    static func headEnd(_ bytes: ByteBufferView, from offset: Int = 0) -> Int? {
        let terminator: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 4 else { return nil }
        var index = bytes.startIndex + offset
        while index <= bytes.endIndex - 4 {
            if bytes[index] == 13 && bytes[(index + 1)..<(index + 4)].elementsEqual(terminator.dropFirst()) {
                return index - bytes.startIndex + 4
            }
            index += 1
        }
        return nil
    }

    private func classify(_ text: String) -> Decision {
        if derpEnabled, let fastStart = Self.derpUpgrade(text) { return .derp(fastStart: fastStart) }
        if let isAppUpgrade, let head = RawRequestHead(text), head.tokens("upgrade").contains("websocket"), isAppUpgrade(head) { return .appUpgrade(head) }
        return .http
    }

    /// For `GET /derp` (query allowed) with an `Upgrade` header naming DERP (case-insensitive): whether the
    /// client asked for fast start (`Derp-Fast-Start: 1`); nil for any other request.
    static func derpUpgrade(_ head: String) -> Bool? {
        guard let head = RawRequestHead(head), head.method == "GET", head.path == "/derp", head.tokens("upgrade").contains("derp") else { return nil }
        return head.values("derp-fast-start") == ["1"]
    }
}
