import NIOCore
import Synchronization

/// One connected client as the relay sees it: its key, its send queue, whom it sent to.
///
/// The queue has two lanes. Packets are bounded (`queueDepth`) and drop their oldest when full, so fresh
/// packets win and one slow reader never holds up the relay. Control frames (PeerGone, PeerPresent, Pong,
/// KeepAlive, Restarting) are never dropped for packets: a lost PeerGone would leave a sibling routing to a
/// key that left. They go first, and are bounded only as a guard (`maximumControlFrames`).
final class DERPServerSession: Sendable {
    let key: NodePublicKey
    let isMeshPeer: Bool
    let isPreferred = Atomic<Bool>(false)
    private let closeTransport: @Sendable () -> Void
    private let queueDepth: Int
    private let state = Mutex(State())
    private let sentToKeys = Mutex<Set<NodePublicKey>>([])
    private let notHereReported = Mutex<[NodePublicKey: ContinuousClock.Instant]>([:])
    /// A watchdog's view of the writer: when the write in progress started (nil: idle).
    private let writingSince = Mutex<ContinuousClock.Instant?>(nil)

    /// Far above what a region's PeerPresent snapshot needs; past it the client is not reading at all.
    static let maximumControlFrames = 65_536
    /// Frames handed to the transport in one write (one flush).
    static let batchSize = 64

    private struct State {
        var control = CircularBuffer<DERPFrame>()
        var packets = CircularBuffer<DERPFrame>()
        var finished = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    init(key: NodePublicKey, isMeshPeer: Bool, queueDepth: Int, close: @escaping @Sendable () -> Void) {
        (self.key, self.isMeshPeer, self.queueDepth, self.closeTransport) = (key, isMeshPeer, queueDepth, close)
    }

    /// Queues a frame; false if the session is gone. A full packet lane drops its oldest packet (counted).
    @discardableResult
    func enqueue(_ frame: DERPFrame, counters: DERPServerCounters) -> Bool {
        var dropped: DERPDropReason?
        let (accepted, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
            guard !state.finished else { return (false, nil) }
            if case .recvPacket = frame {
                if state.packets.count >= queueDepth {
                    state.packets.removeFirst()
                    dropped = .queueHead
                }
                state.packets.append(frame)
            } else {
                if state.control.count >= Self.maximumControlFrames {
                    state.control.removeFirst()
                    dropped = .controlOverflow
                }
                state.control.append(frame)
            }
            defer { state.waiter = nil }
            return (true, state.waiter)
        }
        waiter?.resume()
        if let dropped { counters.drop(dropped) }
        return accepted
    }

    /// The next frames to write, control first; nil once finished and drained.
    func nextBatch() async -> [DERPFrame]? {
        while true {
            let batch = state.withLock { state -> [DERPFrame]? in
                var batch: [DERPFrame] = []
                while batch.count < Self.batchSize, let frame = state.control.popFirst() ?? state.packets.popFirst() { batch.append(frame) }
                return batch.isEmpty && state.finished ? nil : batch
            }
            guard let batch else { return nil }
            if !batch.isEmpty { return batch }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = state.withLock { state -> Bool in
                        if !state.control.isEmpty || !state.packets.isEmpty || state.finished { return true }
                        state.waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                finish()
            }
        }
    }

    func noteSentTo(_ key: NodePublicKey) { _ = sentToKeys.withLock { $0.insert(key) } }

    /// At most one PeerGone(notHere) per destination per second: a client sending a stream of packets to an
    /// offline peer would otherwise get a stream of PeerGone frames back.
    func shouldReportNotHere(_ key: NodePublicKey, now: ContinuousClock.Instant) -> Bool {
        notHereReported.withLock { reported in
            if let last = reported[key], now - last < .seconds(1) { return false }
            if reported.count >= 1024 { reported.removeAll() }  // bounded: forgetting only allows one more report
            reported[key] = now
            return true
        }
    }
    var sentTo: Set<NodePublicKey> { sentToKeys.withLock { $0 } }

    func beginWrite(at instant: ContinuousClock.Instant) { writingSince.withLock { $0 = instant } }
    func endWrite() { writingSince.withLock { $0 = nil } }
    /// Whether the write in progress has taken longer than `limit`.
    func isWriteStalled(now: ContinuousClock.Instant, limit: Duration) -> Bool {
        writingSince.withLock { $0.map { now - $0 > limit } ?? false }
    }

    /// No more frames are accepted; what is queued is still written.
    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func close() {
        finish()
        closeTransport()
    }
}
