/// Which sent packets were acknowledged and which are lost (RFC 9002 §6), as a pure value: the connection
/// tells it what it sent and what the peer acknowledged, with the current instant, and retransmits the
/// payloads of what comes back lost. `Payload` is whatever the connection needs to resend (its frames).
public struct LossDetector<Payload: Sendable>: Sendable {
    /// kPacketThreshold: a packet is lost once a packet sent 3 later is acknowledged (§6.1.1).
    public static var packetThreshold: UInt64 { 3 }

    public struct SentPacket: Sendable {
        public let number: UInt64
        public let sentAt: ContinuousClock.Instant
        public let bytes: Int
        /// Packets with anything but ACK/PADDING elicit an acknowledgement and count for loss and congestion.
        public let ackEliciting: Bool
        public let payload: Payload
    }

    /// Unacknowledged packets, ascending by number (numbers are sent in increasing order).
    public private(set) var outstanding: [SentPacket] = []
    public private(set) var largestAcknowledged: UInt64?
    public private(set) var bytesInFlight = 0

    public init() {}

    public mutating func sent(_ number: UInt64, at instant: ContinuousClock.Instant, bytes: Int, ackEliciting: Bool, payload: Payload) {
        precondition(outstanding.last.map { $0.number < number } ?? true, "packet numbers only grow")  // the connection's counter
        outstanding.append(SentPacket(number: number, sentAt: instant, bytes: bytes, ackEliciting: ackEliciting, payload: payload))
        if ackEliciting { bytesInFlight += bytes }
    }

    public struct AckResult: Sendable {
        public var acknowledged: [SentPacket] = []
        public var lost: [SentPacket] = []
        /// An RTT sample, when the largest acknowledged packet is newly acknowledged and ack-eliciting (§5.1).
        public var rttSample: Duration?
    }

    /// Processes an ACK frame: removes what it covers, then declares lost what the new state implies.
    public mutating func acknowledge(_ ack: AckFrame, now: ContinuousClock.Instant, rtt: RTTEstimator) -> AckResult {
        var result = AckResult()
        var remaining: [SentPacket] = []
        remaining.reserveCapacity(outstanding.count)
        for packet in outstanding {
            if ack.ranges.contains(where: { $0.contains(packet.number) }) {
                result.acknowledged.append(packet)
                if packet.ackEliciting { bytesInFlight -= packet.bytes }
            } else {
                remaining.append(packet)
            }
        }
        outstanding = remaining
        if let newest = result.acknowledged.last, newest.number == ack.largest, newest.ackEliciting {
            result.rttSample = now - newest.sentAt
        }
        largestAcknowledged = max(largestAcknowledged ?? 0, ack.largest)
        result.lost = detectLost(now: now, lossDelay: rtt.lossDelay)
        return result
    }

    /// Declares lost (and removes) packets below the largest acknowledged that are 3 packets or `lossDelay`
    /// older than it (§6.1). Also call when the timer from `lossTime` fires.
    public mutating func detectLost(now: ContinuousClock.Instant, lossDelay: Duration) -> [SentPacket] {
        guard let largest = largestAcknowledged else { return [] }
        var lost: [SentPacket] = []
        outstanding.removeAll { packet in
            guard packet.number < largest else { return false }
            let isLost = largest - packet.number >= Self.packetThreshold || now - packet.sentAt >= lossDelay
            if isLost {
                lost.append(packet)
                if packet.ackEliciting { bytesInFlight -= packet.bytes }
            }
            return isLost
        }
        return lost
    }

    /// When the oldest packet below the largest acknowledged will count as lost by time (§6.1.2), if any.
    public func lossTime(lossDelay: Duration) -> ContinuousClock.Instant? {
        guard let largest = largestAcknowledged else { return nil }
        return outstanding.first(where: { $0.number < largest }).map { $0.sentAt + lossDelay }
    }
}
