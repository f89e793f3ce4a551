/// Round-trip time estimates of RFC 9002 §5: the minimum, an exponentially weighted average and its
/// variation, from which loss detection derives its probe timeout (§6.2). Pure: samples come in, no clock.
public struct RTTEstimator: Equatable, Sendable {
    /// Before any sample (RFC 9002 §6.2.2: kInitialRtt = 333 ms).
    public static let initialRTT: Duration = .milliseconds(333)
    /// Timer granularity (kGranularity = 1 ms).
    public static let granularity: Duration = .milliseconds(1)

    public private(set) var latest: Duration = .zero
    public private(set) var minimum: Duration = .zero
    public private(set) var smoothed: Duration = RTTEstimator.initialRTT
    public private(set) var variation: Duration = RTTEstimator.initialRTT / 2
    public private(set) var hasSample = false

    public init() {}

    /// Adds a sample measured from the largest newly acknowledged packet (§5.3). `ackDelay` is what the peer
    /// reported, capped by its max_ack_delay; it is only subtracted when that leaves at least the minimum.
    public mutating func add(sample: Duration, ackDelay: Duration, maxAckDelay: Duration) {
        latest = sample
        guard hasSample else {
            (hasSample, minimum, smoothed, variation) = (true, sample, sample, sample / 2)
            return
        }
        minimum = min(minimum, sample)
        let delay = min(ackDelay, maxAckDelay)
        let adjusted = sample >= minimum + delay ? sample - delay : sample
        let deviation = smoothed > adjusted ? smoothed - adjusted : adjusted - smoothed
        variation = (variation * 3 + deviation) / 4
        smoothed = (smoothed * 7 + adjusted) / 8
    }

    /// The probe timeout (§6.2.1): smoothed + max(4 × variation, granularity) + max_ack_delay, doubled per
    /// consecutive expiry (`backoff` = number of PTOs since the last acknowledgement).
    public func probeTimeout(maxAckDelay: Duration, backoff: Int = 0) -> Duration {
        let base = smoothed + max(variation * 4, Self.granularity) + maxAckDelay
        return base * (1 << min(backoff, 16))
    }

    /// How long after a later packet was acknowledged an earlier one counts as lost (§6.1.2: 9/8 of the larger
    /// of the latest and smoothed RTT, at least the granularity).
    public var lossDelay: Duration { max(max(latest, smoothed) * 9 / 8, Self.granularity) }
}
