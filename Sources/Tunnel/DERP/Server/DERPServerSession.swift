import NIOCore
import Synchronization

/// One connected client as the relay sees it: its key, its bounded send queue, whom it sent to.
final class DERPServerSession: Sendable {
    let key: NodePublicKey
    let isMeshPeer: Bool
    let queue: AsyncStream<DERPFrame>
    private let continuation: AsyncStream<DERPFrame>.Continuation
    private let closeTransport: @Sendable () -> Void
    let isPreferred = Atomic<Bool>(false)
    private let sentToKeys = Mutex<Set<NodePublicKey>>([])

    init(key: NodePublicKey, isMeshPeer: Bool, queueDepth: Int, close: @escaping @Sendable () -> Void) {
        self.key = key
        self.isMeshPeer = isMeshPeer
        self.closeTransport = close
        // bufferingNewest: when full, the oldest queued frame is dropped so fresher packets win.
        (queue, continuation) = AsyncStream.makeStream(of: DERPFrame.self, bufferingPolicy: .bufferingNewest(queueDepth))
    }

    /// Queues a frame; false if the session is gone. A full queue drops its oldest frame (counted).
    @discardableResult
    func enqueue(_ frame: DERPFrame, counters: DERPServerCounters) -> Bool {
        switch continuation.yield(frame) {
        case .enqueued:
            if case .recvPacket(_, let packet) = frame {
                counters.packetsSent.add(1, ordering: .relaxed)
                counters.bytesSent.add(packet.readableBytes, ordering: .relaxed)
            }
            return true
        case .dropped:
            counters.drop(.queueHead)
            return true
        case .terminated:
            return false
        @unknown default:
            return false
        }
    }

    func noteSentTo(_ key: NodePublicKey) { _ = sentToKeys.withLock { $0.insert(key) } }
    var sentTo: Set<NodePublicKey> { sentToKeys.withLock { $0 } }

    func finish() { continuation.finish() }

    func close() {
        continuation.finish()
        closeTransport()
    }
}
