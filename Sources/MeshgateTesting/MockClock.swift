import Synchronization

/// A `Clock` that moves only when a test calls `advance(by:)`, so code that sleeps for intervals runs its
/// schedule in microseconds. `sleepers` and `waitForSleepers` let a test see that the code under test has
/// finished its step and is waiting, instead of guessing with a real sleep.
public final class MockClock: Clock, Sendable {
    public struct Instant: InstantProtocol, CustomStringConvertible {
        /// Time since the clock was made.
        public var offset: Duration
        public init(offset: Duration) { self.offset = offset }
        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
        public var description: String { "t+\(offset)" }
    }

    private struct State {
        var now = Instant(offset: .zero)
        var nextID = 0
        var waiting: [Int: (deadline: Instant, continuation: CheckedContinuation<Void, any Error>)] = [:]
        /// Sleeps cancelled before they were registered.
        var cancelled: Set<Int> = []
    }

    private let state = Mutex(State())

    public init() {}

    public var now: Instant { state.withLock { $0.now } }
    public var minimumResolution: Duration { .zero }

    /// How many sleeps are waiting for the clock to reach their deadline.
    public var sleepers: Int { state.withLock { $0.waiting.count } }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try Task.checkCancellation()
        let id = state.withLock { state -> Int? in
            guard deadline > state.now else { return nil }
            defer { state.nextID += 1 }
            return state.nextID
        }
        guard let id else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let early = state.withLock { state -> Bool in
                    if state.cancelled.remove(id) != nil { return true }
                    state.waiting[id] = (deadline, continuation)
                    return false
                }
                if early { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let continuation = state.withLock { state in
                guard let entry = state.waiting.removeValue(forKey: id) else {
                    state.cancelled.insert(id)
                    return CheckedContinuation<Void, any Error>?.none
                }
                return entry.continuation
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleep whose deadline has come, in deadline order.
    public func advance(by duration: Duration) {
        precondition(duration >= .zero, "a clock does not run backwards")
        let due = state.withLock { state in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.waiting.filter { $0.value.deadline <= now }.sorted { $0.value.deadline < $1.value.deadline }
            for (id, _) in due { state.waiting.removeValue(forKey: id) }
            return due.map(\.value.continuation)
        }
        for continuation in due { continuation.resume() }
    }

    /// Waits (in real time, up to `timeout`) until exactly `count` sleeps are waiting; false if that never happened.
    /// The timeout is real time and only an upper bound: generous, because a loaded test run may leave the
    /// sleepers' tasks waiting seconds for a thread.
    public func waitForSleepers(_ count: Int, timeout: Duration = .seconds(60)) async -> Bool {
        let giveUp = ContinuousClock.now + timeout
        while ContinuousClock.now < giveUp {
            if sleepers == count { return true }
            do { try await Task.sleep(for: .milliseconds(1)) } catch { break }  // cancelled: answer now
        }
        return sleepers == count
    }
}
