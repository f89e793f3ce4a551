import Foundation
import NIOCore
import Synchronization

/// A node's way into one DERP region: relays packets to node keys and reports what the relay says.
/// `DERPClient` goes over the network; `DERPInProcessClient` talks to a relay in the same process.
public protocol DERPLink: Sendable {
    /// Relays `packet` to `destination`; false when it was dropped (not connected, or backed up).
    @discardableResult
    func send(_ packet: ByteBuffer, to destination: NodePublicKey) -> Bool
    /// Relays several packets at once; a link that writes to a socket flushes once for all of them.
    func send(_ packets: [(packet: ByteBuffer, destination: NodePublicKey)])
    /// Keeps the link up until the task is cancelled, handing every event to `onEvent` in order.
    func run(_ onEvent: @escaping @Sendable (DERPClient.Event) -> Void) async
}

extension DERPLink {
    public func send(_ packets: [(packet: ByteBuffer, destination: NodePublicKey)]) {
        for (packet, destination) in packets { send(packet, to: destination) }
    }
}

extension DERPClient: DERPLink {}

/// The gateway's own node on its own relay: the same `DERPServer.serve` as any client (login, queue,
/// PeerGone), but frames are handed over as values, with no TLS, TCP or encoding in between.
public final class DERPInProcessClient: DERPLink {
    public let server: DERPServer
    public let privateKey: NodePrivateKey
    /// Frames from this node to the relay; nil while not running.
    private let input = Mutex<AsyncStream<DERPFrame>.Continuation?>(nil)
    private let queueDepth: Int

    public init(server: DERPServer, privateKey: NodePrivateKey, queueDepth: Int = 256) {
        (self.server, self.privateKey, self.queueDepth) = (server, privateKey, queueDepth)
    }

    @discardableResult
    public func send(_ packet: ByteBuffer, to destination: NodePublicKey) -> Bool {
        guard let input = input.withLock({ $0 }) else { return false }
        if case .enqueued = input.yield(.sendPacket(destination: destination, packet: packet)) { return true }
        return false
    }

    public func run(_ onEvent: @escaping @Sendable (DERPClient.Event) -> Void) async {
        // Bounded like a socket buffer: a relay that falls behind drops this node's oldest packets.
        let (frames, continuation) = AsyncStream.makeStream(of: DERPFrame.self, bufferingPolicy: .bufferingNewest(queueDepth))
        let privateKey = self.privateKey
        await withTaskCancellationHandler {
            do {
                try await server.serve(
                    frames: frames,
                    write: { frames in
                        for frame in frames {
                            switch frame {
                            case .serverKey(let key):
                                continuation.yield(try .clientInfo(DERPClientInfo(), from: privateKey, to: key))
                            case .serverInfo:
                                self.input.withLock { $0 = continuation }
                                onEvent(.connected(serverKey: self.server.publicKey, transport: .inProcess))
                            case .recvPacket(let source, let packet): onEvent(.packet(source: source, packet))
                            case .peerGone(let key, let reason): onEvent(.peerGone(key, reason: reason))
                            case .health(let problem): onEvent(.health(problem))
                            default: break
                            }
                        }
                    },
                    close: { continuation.finish() }
                )
                onEvent(.disconnected(reason: "relay closed the connection"))
            } catch {
                onEvent(.disconnected(reason: "\(error)"))
            }
        } onCancel: {
            continuation.finish()
        }
        input.withLock { $0 = nil }
    }
}
