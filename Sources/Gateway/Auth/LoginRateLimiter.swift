import Foundation
import Synchronization

/// Sliding-window limit on login attempts per client address.
///
/// Checked before any password work, so a flood costs the server a dictionary lookup, not argon2.
public final class LoginRateLimiter: Sendable {
    public let limit: Int
    public let window: TimeInterval
    private let clock: any WallClock
    private let attempts = Mutex<[String: [Date]]>([:])
    /// Bounds memory under a spray of distinct addresses: past this, stale entries are swept first.
    private let maximumTrackedClients = 100_000

    /// - Parameter limit: attempts allowed per `window`; 0 disables limiting.
    public init(limit: Int, window: TimeInterval = 60, clock: any WallClock) {
        (self.limit, self.window, self.clock) = (limit, window, clock)
    }

    /// Records an attempt; returns false when `client` is over its limit (the attempt is not counted).
    public func allow(_ client: String) -> Bool {
        guard limit > 0 else { return true }
        let now = clock.now
        let horizon = now.addingTimeInterval(-window)
        return attempts.withLock { table in
            if table.count >= maximumTrackedClients {
                table = table.filter { $0.value.last.map { $0 > horizon } ?? false }
            }
            var recent = (table[client] ?? []).filter { $0 > horizon }
            guard recent.count < limit else {
                table[client] = recent
                return false
            }
            recent.append(now)
            table[client] = recent
            return true
        }
    }
}
