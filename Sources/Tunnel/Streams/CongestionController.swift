/// How much a connection may have in flight (RFC 9002 §7). The connection reports what happens to its
/// ack-eliciting packets; the controller answers with a window. Pure values: instants come in, no clock.
public protocol CongestionController: Sendable {
    /// Bytes of ack-eliciting packets the sender may have in flight.
    var window: Int { get }
    /// An ack-eliciting packet of `bytes` left at `now`.
    mutating func sent(bytes: Int, now: ContinuousClock.Instant)
    /// One ack-eliciting packet, sent at `sentAt`, is newly acknowledged. `appLimited`: the sender did not fill
    /// the window lately, so the acknowledgement says nothing about spare capacity (§7.8) and must not grow it.
    mutating func acknowledged(bytes: Int, sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant, rtt: RTTEstimator, appLimited: Bool)
    /// Packets were declared lost; `sentAt` is when the newest of them was sent. One reduction per round trip:
    /// losses of packets sent before the current recovery period began are ignored (§7.3.2).
    mutating func congestionEvent(sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant)
    /// Every packet over a span longer than the persistent-congestion duration was lost (§7.6).
    mutating func persistentCongestion()
    /// One ack-eliciting packet of `bytes`, sent at `sentAt`, was declared lost at `now`. Called for each lost
    /// packet before the `congestionEvent` of the same ACK (or probe timeout), so a controller can weigh how
    /// much of a round trip was lost rather than only that something was.
    mutating func lost(bytes: Int, sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant)
    /// Bytes per second the pacer should send at; nil: derive it from the window and the smoothed RTT.
    var pacingRate: Double? { get }
}

extension CongestionController {
    /// Loss-based controllers react to `congestionEvent` alone.
    public mutating func lost(bytes: Int, sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant) {}
    /// Loss-based controllers pace at the pacer's own 1.25 × window / smoothed RTT.
    public var pacingRate: Double? { nil }
}

/// The window limits of RFC 9002 §7.2 for a given datagram size.
public struct CongestionLimits: Sendable, Equatable {
    public let maxDatagramSize: Int
    /// kInitialWindow: min(10 × size, max(14720, 2 × size)).
    public var initialWindow: Int { min(10 * maxDatagramSize, max(14_720, 2 * maxDatagramSize)) }
    /// kMinimumWindow: 2 × size.
    public var minimumWindow: Int { 2 * maxDatagramSize }

    public init(maxDatagramSize: Int) { self.maxDatagramSize = maxDatagramSize }
}

/// RFC 9002's NewReno (§7.3, Appendix B): slow start to the first loss, then one datagram per window per round
/// trip, halving on each congestion event.
public struct NewReno: CongestionController {
    public let limits: CongestionLimits
    public private(set) var window: Int
    public private(set) var slowStartThreshold = Int.max
    /// When the current recovery period began; packets sent before it do not grow or shrink the window.
    public private(set) var recoveryStart: ContinuousClock.Instant?
    /// kLossReductionFactor = 0.5.
    static let lossReduction = 0.5
    /// Bytes acknowledged in congestion avoidance not yet turned into window growth.
    private var acknowledgedInAvoidance = 0

    public init(limits: CongestionLimits) {
        self.limits = limits
        self.window = limits.initialWindow
    }

    public mutating func sent(bytes: Int, now: ContinuousClock.Instant) {}

    public mutating func acknowledged(bytes: Int, sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant, rtt: RTTEstimator, appLimited: Bool) {
        if let recoveryStart, sentAt <= recoveryStart { return }
        guard !appLimited else { return }
        if window < slowStartThreshold {
            window += bytes
        } else {
            // window += size × acked / window, without losing the remainder to integer division.
            acknowledgedInAvoidance += bytes
            if acknowledgedInAvoidance >= window {
                acknowledgedInAvoidance -= window
                window += limits.maxDatagramSize
            }
        }
    }

    public mutating func congestionEvent(sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant) {
        if let recoveryStart, sentAt <= recoveryStart { return }
        recoveryStart = now
        slowStartThreshold = max(Int(Double(window) * Self.lossReduction), limits.minimumWindow)
        window = slowStartThreshold
        acknowledgedInAvoidance = 0
    }

    public mutating func persistentCongestion() {
        window = limits.minimumWindow
        recoveryStart = nil
        acknowledgedInAvoidance = 0
    }
}

/// The congestion controllers a connection can run, by the name configuration uses.
public enum CongestionAlgorithm: String, Sendable, CaseIterable {
    case newReno = "newreno"
    case cubic
    case bbr

    public func makeController(limits: CongestionLimits) -> any CongestionController {
        switch self {
        case .newReno: NewReno(limits: limits)
        case .cubic: Cubic(limits: limits)
        case .bbr: BBR(limits: limits)
        }
    }
}
