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

    enum Decision { case http, derp }
    /// A request head longer than this is not a DERP upgrade; HTTP decides what to do with it.
    static let maximumHeadLength = 16 * 1024

    let decision: EventLoopPromise<Decision>
    private var held: ByteBuffer?
    private var decided: Decision?
    private var headLength = 0

    init(decision: EventLoopPromise<Decision>) { self.decision = decision }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if held == nil { held = bytes } else { held!.writeBuffer(&bytes) }
        guard decided == nil, let held else { return }
        let view = held.readableBytesView
        if let end = Self.headEnd(view) {
            headLength = end
            decide(Self.isDERPUpgrade(String(decoding: view.prefix(end), as: UTF8.self)) ? .derp : .http)
        } else if view.count > Self.maximumHeadLength {
            decide(.http)
        }
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
        decided = .http
        decision.fail(ChannelError.inputClosed)
    }

    private func decide(_ value: Decision) {
        decided = value
        decision.succeed(value)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        guard var held else { return }
        self.held = nil
        if decided == .derp { held.moveReaderIndex(forwardBy: headLength) }
        if held.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(held))
            context.fireChannelReadComplete()
        }
    }

    /// Index just past "\r\n\r\n", if present.
    static func headEnd(_ bytes: ByteBufferView) -> Int? {
        let terminator: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 4 else { return nil }
        var index = bytes.startIndex
        while index <= bytes.endIndex - 4 {
            if bytes[index] == 13 && bytes[(index + 1)..<(index + 4)].elementsEqual(terminator.dropFirst()) {
                return index - bytes.startIndex + 4
            }
            index += 1
        }
        return nil
    }

    /// `GET /derp` (query allowed) with an `Upgrade` header naming DERP, case-insensitively.
    static func isDERPUpgrade(_ head: String) -> Bool {
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: true)
        guard let requestLine = lines.first else { return false }
        let parts = requestLine.split(separator: " ")
        guard parts.count == 3, parts[0] == "GET", parts[1] == "/derp" || parts[1].hasPrefix("/derp?") else { return false }
        return lines.dropFirst().contains { line in
            guard let colon = line.firstIndex(of: ":") else { return false }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces).lowercased()
            return name == "upgrade" && value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == "derp" }
        }
    }
}
