/// Spreads a window's worth of packets over the round trip instead of sending it in one burst that the
/// bottleneck queue would have to absorb (RFC 9002 §7.7). A token bucket in bytes: it fills at
/// 1.25 × window / smoothed RTT, the extra quarter so pacing itself never keeps the window from being used,
/// and holds at most the initial window, so what a sender may burst after an idle spell stays bounded.
/// A controller with a rate of its own (BBR's pacing gain × bandwidth) passes it as `rate`, which replaces
/// 1.25 × window / RTT. Pure value, O(1) per call: instants come in, no clock.
public struct Pacer: Sendable {
    /// N = 1.25 (§7.7).
    public static let rateMultiplier = 1.25

    /// The most the bucket holds: the initial window (at least two datagrams).
    public let capacity: Int
    /// Bytes that may leave now, as of `updatedAt`.
    public private(set) var tokens: Double
    private var updatedAt: ContinuousClock.Instant?

    public init(limits: CongestionLimits) {
        capacity = max(limits.initialWindow, 2 * limits.maxDatagramSize)
        tokens = Double(capacity)
    }

    /// A packet of `bytes` left at `now`: it spends that many tokens. Before an RTT sample (and without a
    /// `rate`) there is no rate, so the bucket only drains; it refills once the first sample gives it one.
    public mutating func sent(bytes: Int, now: ContinuousClock.Instant, window: Int, rtt: RTTEstimator, rate: Double? = nil) {
        tokens = max(available(now: now, window: window, rtt: rtt, rate: rate) - Double(bytes), 0)
        updatedAt = now
    }

    /// When a packet of `bytes` may leave: nil for now, otherwise the instant the bucket will hold enough.
    /// Nothing is paced before the first RTT sample, unless `rate` gives one: there is no rate to pace at.
    public func nextSendTime(bytes: Int, now: ContinuousClock.Instant, window: Int, rtt: RTTEstimator, rate: Double? = nil) -> ContinuousClock.Instant? {
        guard let rate = Self.rate(window: window, rtt: rtt, override: rate) else { return nil }
        let missing = Double(min(bytes, capacity)) - available(now: now, window: window, rtt: rtt, rate: rate)
        // Half a byte of slack absorbs the rounding of the wait below, which is rounded up to a nanosecond.
        guard missing > 0.5 else { return nil }
        return now + .nanoseconds(Int64((missing / rate * 1e9).rounded(.up)))
    }

    /// Tokens at `now`: those left at the last send plus what the rate has added since, up to the capacity.
    private func available(now: ContinuousClock.Instant, window: Int, rtt: RTTEstimator, rate: Double?) -> Double {
        guard let updatedAt, now > updatedAt, let rate = Self.rate(window: window, rtt: rtt, override: rate) else { return tokens }
        return min(tokens + rate * (now - updatedAt).inSeconds, Double(capacity))
    }

    /// Bytes per second: `override` if positive, else derived from the window; nil before any RTT sample.
    private static func rate(window: Int, rtt: RTTEstimator, override: Double?) -> Double? {
        if let override, override > 0 { return override }
        guard rtt.hasSample, rtt.smoothed > .zero else { return nil }
        return rateMultiplier * Double(window) / rtt.smoothed.inSeconds
    }
}
