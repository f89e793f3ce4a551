import Tunnel

/// One app's health as a pure value: check results in, health out. No I/O and no clock reads; the caller passes
/// the instant of each result, so tests drive it with plain numbers.
///
/// - `initializing` until the first result decides otherwise;
/// - any status < 500 (redirects and 4xx included: the app answered) → `healthy` at once, failures reset;
/// - a status ≥ 500 or an error is a failure; `threshold` failures in a row → `unhealthy`. Fewer keep the current
///   health, so a single blip neither flaps a healthy app nor ends `initializing` early.
public struct AppHealthState<Instant: InstantProtocol>: Sendable {
    /// nil: the app has no health check and stays `disabled`.
    public let threshold: Int?
    public private(set) var health: AppHealth
    public private(set) var consecutiveFailures = 0
    /// When the newest result was taken; older results arriving later are ignored.
    public private(set) var lastResultAt: Instant?
    /// When `health` last changed.
    public private(set) var since: Instant?
    /// The newest failure in words ("status 503", the error), for logs; nil after a success.
    public private(set) var lastFailure: String?

    public init(threshold: Int?) {
        assert(threshold.map { $0 > 0 } ?? true, "AgentApp validates thresholds")
        self.threshold = threshold
        self.health = threshold == nil ? .disabled : .initializing
    }

    public static func isHealthy(status: Int) -> Bool { status < 500 }

    /// Records one check's result; returns whether `health` changed, so only changes are reported.
    @discardableResult
    public mutating func record(_ result: Result<Int, any Error>, at instant: Instant) -> Bool {
        guard let threshold else { return false }
        if let lastResultAt, instant < lastResultAt { return false }
        lastResultAt = instant
        let next: AppHealth
        switch result {
        case .success(let status) where Self.isHealthy(status: status):
            (consecutiveFailures, lastFailure) = (0, nil)
            next = .healthy
        case .success(let status):
            (consecutiveFailures, lastFailure) = (consecutiveFailures + 1, "status \(status)")
            next = consecutiveFailures >= threshold ? .unhealthy : health
        case .failure(let error):
            (consecutiveFailures, lastFailure) = (consecutiveFailures + 1, String(describing: error))
            next = consecutiveFailures >= threshold ? .unhealthy : health
        }
        guard next != health else { return false }
        (health, since) = (next, instant)
        return true
    }
}
