import Logging
import NIOCore
import NIOWebSocket
import Synchronization

/// A node's session with the coordinator (`GET /api/v2/coordinate`, `CoordinatorWire`): it keeps the socket up,
/// reconnecting with backoff for as long as it runs, and after every connect says again who this node is
/// (`update_self`) and which tunnels it wants, so a restarted server learns everything back without a gap.
public final class CoordinatorClient: Sendable {
    public enum Event: Sendable {
        case connected
        case disconnected(reason: String)
        /// Peers to add, replace, keep (lost) or drop (gone).
        case updates([PeerUpdate])
        /// The coordinator refused a request (a tunnel this node may not have, say); the socket stays open.
        case refused(String)
    }

    public static let path = "/api/v2/coordinate"
    public var initialBackoff: Duration { .milliseconds(250) }
    public var maximumBackoff: Duration { .seconds(10) }

    private let control: ControlClient
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var me: CoordinatorNode?
        var tunnels: Set<TunnelPeer> = []
        var channel: (any Channel)?
        var leaving = false
    }

    public init(control: ControlClient, logger: Logger) { (self.control, self.logger) = (control, logger) }

    /// This node as peers should see it; sent now if connected, and after every reconnect.
    public func update(_ node: CoordinatorNode) {
        let channel = state.withLock { state in
            state.me = node
            return state.channel
        }
        if let channel { write(.updateSelf(node), on: channel) }
    }

    /// Asks for a tunnel to `peer` (kept and asked again after a reconnect).
    public func addTunnel(_ peer: TunnelPeer) {
        let channel = state.withLock { state in
            state.tunnels.insert(peer)
            return state.channel
        }
        if let channel { write(.addTunnel(peer), on: channel) }
    }

    public func removeTunnel(_ peer: TunnelPeer) {
        let channel = state.withLock { state in
            state.tunnels.remove(peer)
            return state.channel
        }
        if let channel { write(.removeTunnel(peer), on: channel) }
    }

    /// Leaving for good: peers hear "gone" now instead of "lost". `run` returns once the socket closes.
    public func disconnect() async {
        let channel = state.withLock { state in
            state.leaving = true
            return state.channel
        }
        guard let channel else { return }
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: CoordinatorWire.encode(CoordinatorRequest.disconnect)))
        try? await channel.writeAndFlush(frame)
        // The coordinator answers `disconnect` by closing; don't wait on it for long.
        let deadline = channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        _ = try? await channel.closeFuture.get()
        deadline.cancel()
    }

    /// Keeps the session until cancelled (or `disconnect`), delivering events in order.
    public func run(_ onEvent: @escaping @Sendable (Event) async -> Void) async {
        var backoff = initialBackoff
        while !Task.isCancelled, !state.withLock({ $0.leaving }) {
            do {
                let socket = try await control.webSocket(Self.path, maxMessageSize: CoordinatorWire.maxMessageBytes * 64)
                backoff = initialBackoff
                try await serve(socket, onEvent)
                if !state.withLock({ $0.leaving }) { await onEvent(.disconnected(reason: "the coordinator closed the socket")) }
            } catch is CancellationError {
                break
            } catch {
                await onEvent(.disconnected(reason: "\(error)"))
                if let error = error as? ControlError, error.isPermanent {
                    logger.error("The coordinator refused this node", metadata: ["error": "\(error)"])
                }
            }
            state.withLock { $0.channel = nil }
            guard !state.withLock({ $0.leaving }) else { break }
            let delay = backoff.jittered()
            backoff = min(backoff * 2, maximumBackoff)
            do { try await Task.sleep(for: delay) } catch { break }
        }
        state.withLock { $0.channel = nil }
    }

    private func serve(_ socket: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, _ onEvent: @escaping @Sendable (Event) async -> Void) async throws {
        let channel = socket.channel
        try await withTaskCancellationHandler {
            try await socket.executeThenClose { inbound, outbound in
                // Who we are and what we want go first, before anything else can be written.
                let (me, tunnels) = state.withLock { state in
                    state.channel = channel
                    return (state.me, state.tunnels)
                }
                if let me { write(.updateSelf(me), on: channel) }
                for peer in tunnels { write(.addTunnel(peer), on: channel) }
                await onEvent(.connected)
                for try await frame in inbound {
                    switch frame.opcode {
                    case .text:
                        switch try CoordinatorWire.decodeResponse(frame.unmaskedData.readableBytesView) {
                        case .peerUpdates(let updates): await onEvent(.updates(updates))
                        case .error(let message): await onEvent(.refused(message))
                        }
                    case .ping:
                        try await outbound.write(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData))
                    case .connectionClose:
                        let reason = frame.unmaskedData.readableBytes > 2 ? String(buffer: frame.unmaskedData.getSlice(at: frame.unmaskedData.readerIndex + 2, length: frame.unmaskedData.readableBytes - 2)!) : ""
                        logger.info("The coordinator closed the socket", metadata: ["reason": "\(reason)"])
                        return
                    default:
                        break
                    }
                }
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    private func write(_ request: CoordinatorRequest, on channel: any Channel) {
        let data = ByteBuffer(string: CoordinatorWire.encode(request))
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: data), promise: nil)
    }
}
