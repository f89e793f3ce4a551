import Foundation  // cbrt

/// CUBIC (RFC 9438) over RFC 9002's recovery rules: slow start to the first loss, then a window that follows a
/// cubic curve of the time since the last congestion event, concave up to the window where that loss happened
/// and convex past it, so long fat paths refill in seconds instead of NewReno's one datagram per round trip.
/// Where Reno would be faster (small window, short RTT) it follows Reno's estimate instead (§4.3).
///
/// The window is kept in bytes (segments of `limits.maxDatagramSize`); the curve is evaluated in segments, as
/// the RFC writes it. Time comes only from the instants passed in.
public struct Cubic: CongestionController {
    public let limits: CongestionLimits
    public private(set) var slowStartThreshold = Int.max
    /// When the current recovery period began; packets sent before it do not grow or shrink the window.
    public private(set) var recoveryStart: ContinuousClock.Instant?
    /// W_max in bytes: the window just before the last reduction, lowered by fast convergence (§4.7). Zero
    /// before the first loss and after persistent congestion (the next epoch then starts at K = 0, §4.8).
    public private(set) var maxWindow: Double = 0
    /// cwnd_prior: the window when ssthresh was last set; the Reno estimate grows at Reno's rate past it (§4.3).
    public private(set) var priorWindow: Double = 0
    /// K: how long the curve takes from the window after a reduction back to W_max (§4.2).
    public private(set) var timeToMaxWindow: Duration = .zero
    /// The current congestion-avoidance stage, from its first acknowledgement; nil in slow start and recovery.
    public private(set) var epoch: Epoch?
    /// The window with the fraction that integer bytes would drop: growth per ACK is often below one byte.
    private var exactWindow: Double
    /// When the last acknowledgement came in, to take app-limited spans out of the curve's clock.
    private var lastAcknowledgedAt: ContinuousClock.Instant?

    /// C = 0.4 segments/s³ (§5.1).
    public static let scalingConstant = 0.4
    /// β_cubic = 0.7 (§4.6).
    public static let lossReduction = 0.7
    /// α_cubic = 3(1 − β)/(1 + β): Reno's additive increase that matches its throughput at β = 0.7 (§4.3).
    static let renoFriendlyIncrease = 3 * (1 - lossReduction) / (1 + lossReduction)
    /// The target is at most 1.5 × cwnd one RTT ahead, so one ACK never grows the window by more than half
    /// the bytes it acknowledges (§4.2).
    static let maxTargetRatio = 1.5

    /// A congestion-avoidance stage: t = now − start (less app-limited spans), W_est starting at cwnd_epoch.
    public struct Epoch: Sendable, Equatable {
        public internal(set) var start: ContinuousClock.Instant
        /// cwnd_epoch, in bytes.
        public let startWindow: Double
        /// W_est, in bytes: what Reno would have by now with α_cubic and β_cubic (§4.3).
        public internal(set) var renoEstimate: Double
    }

    public var window: Int { Int(exactWindow) }

    public init(limits: CongestionLimits) {
        self.limits = limits
        self.exactWindow = Double(limits.initialWindow)
    }

    public mutating func sent(bytes: Int, now: ContinuousClock.Instant) {}

    public mutating func acknowledged(bytes: Int, sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant, rtt: RTTEstimator, appLimited: Bool) {
        if let recoveryStart, sentAt <= recoveryStart { return }
        defer { lastAcknowledgedAt = now }
        guard !appLimited else {
            // §5.8: t must not count time the sender was not using the window, or the curve would run ahead
            // and release a burst once the application sends again.
            if let last = lastAcknowledgedAt, now > last { epoch?.start += now - last }
            return
        }
        if exactWindow < Double(slowStartThreshold) {
            exactWindow += Double(bytes)
            return
        }
        var epoch = self.epoch ?? startEpoch(now: now)
        let segment = Double(limits.maxDatagramSize)
        // §4.3: W_est += α × segments acked / cwnd; α becomes 1 once W_est has regained cwnd_prior.
        let alpha = epoch.renoEstimate >= priorWindow ? 1 : Self.renoFriendlyIncrease
        epoch.renoEstimate += alpha * segment * Double(bytes) / exactWindow
        let elapsed = now - epoch.start
        if cubicWindow(after: elapsed) < epoch.renoEstimate {
            // Reno-friendly region: Reno would be ahead of the curve, so follow Reno. Never shrink on an ACK:
            // the window may already be past W_est on its way to W_cubic(t + RTT).
            exactWindow = max(exactWindow, epoch.renoEstimate)
        } else {
            // §4.4/§4.5: close the gap to W_cubic(t + RTT) over one RTT of ACKs: (target − cwnd)/cwnd per segment.
            let ahead = cubicWindow(after: elapsed + rtt.smoothed)
            let target = min(max(ahead, exactWindow), Self.maxTargetRatio * exactWindow)
            exactWindow += (target - exactWindow) * Double(bytes) / exactWindow
        }
        self.epoch = epoch
    }

    public mutating func congestionEvent(sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant) {
        if let recoveryStart, sentAt <= recoveryStart { return }
        recoveryStart = now
        // §4.7 fast convergence: a loss below the last W_max means a new flow is taking its share; release
        // some by aiming lower.
        maxWindow = exactWindow < maxWindow ? exactWindow * (1 + Self.lossReduction) / 2 : exactWindow
        priorWindow = exactWindow
        // §4.6 with cwnd in place of flight size, as RFC 9002's NewReno does.
        slowStartThreshold = max(Int(exactWindow * Self.lossReduction), limits.minimumWindow)
        exactWindow = Double(slowStartThreshold)
        timeToMaxWindow = timeToMaxWindow(from: exactWindow)
        epoch = nil
    }

    public mutating func persistentCongestion() {
        exactWindow = Double(limits.minimumWindow)
        recoveryStart = nil
        epoch = nil
        maxWindow = 0
        timeToMaxWindow = .zero
    }

    /// W_cubic(t) = C(t − K)³ + W_max (§4.2), in bytes, `elapsed` = t after the epoch began.
    public func cubicWindow(after elapsed: Duration) -> Double {
        let offset = elapsed.inSeconds - timeToMaxWindow.inSeconds
        let segments = Self.scalingConstant * offset * offset * offset
        return segments * Double(limits.maxDatagramSize) + maxWindow
    }

    /// Begins congestion avoidance at the first growing ACK after a reduction or slow start. Past W_max (never
    /// lost, or after persistent congestion) the curve starts at its inflection: K = 0, W_max = cwnd (§4.8).
    private mutating func startEpoch(now: ContinuousClock.Instant) -> Epoch {
        if maxWindow <= exactWindow { maxWindow = exactWindow }
        timeToMaxWindow = timeToMaxWindow(from: exactWindow)
        return Epoch(start: now, startWindow: exactWindow, renoEstimate: exactWindow)
    }

    /// K = ∛((W_max − cwnd_epoch) / C), with the windows in segments (§4.2).
    private func timeToMaxWindow(from startWindow: Double) -> Duration {
        let segments = max(maxWindow - startWindow, 0) / Double(limits.maxDatagramSize)
        return .nanoseconds(Int64((cbrt(segments / Self.scalingConstant) * 1e9).rounded()))
    }
}
