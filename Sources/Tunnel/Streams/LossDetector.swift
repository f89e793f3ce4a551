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

    /// Sent packets in number order; acknowledged or lost ones become holes until they reach the front, so an
    /// ACK costs O(ranges × log n + acknowledged) rather than a pass over everything in flight.
    private var slots: [Slot] = []
    /// Index of the first live slot in `slots` (the prefix before it is dropped in batches).
    private var head = 0

    private struct Slot {
        let number: UInt64
        var packet: SentPacket?
    }

    /// Unacknowledged packets, ascending by number.
    public var outstanding: [SentPacket] { slots[head...].compactMap(\.packet) }
    public private(set) var largestAcknowledged: UInt64?
    public private(set) var bytesInFlight = 0

    public init() {}

    public mutating func sent(_ number: UInt64, at instant: ContinuousClock.Instant, bytes: Int, ackEliciting: Bool, payload: Payload) {
        precondition(slots.last.map { $0.number < number } ?? true, "packet numbers only grow")  // the connection's counter
        slots.append(Slot(number: number, packet: SentPacket(number: number, sentAt: instant, bytes: bytes, ackEliciting: ackEliciting, payload: payload)))
        if ackEliciting { bytesInFlight += bytes }
    }

    public struct AckResult: Sendable {
        /// Ascending by number.
        public var acknowledged: [SentPacket] = []
        public var lost: [SentPacket] = []
        /// An RTT sample, when the largest acknowledged packet is newly acknowledged and ack-eliciting (§5.1).
        public var rttSample: Duration?
    }

    /// Processes an ACK frame: removes what it covers, then declares lost what the new state implies. A caller
    /// that first feeds the RTT sample to its estimator passes `detectLoss: false` and calls `detectLost` with the
    /// updated loss delay (RFC 9002 §6.1.2 uses the RTT including this sample).
    public mutating func acknowledge(_ ack: AckFrame, now: ContinuousClock.Instant, rtt: RTTEstimator, detectLoss: Bool = true) -> AckResult {
        var result = AckResult()
        for range in ack.ranges.reversed() {
            var index = firstIndex(atLeast: range.lowerBound)
            while index < slots.count, slots[index].number <= range.upperBound {
                if let packet = slots[index].packet {
                    result.acknowledged.append(packet)
                    if packet.ackEliciting { bytesInFlight -= packet.bytes }
                    slots[index].packet = nil
                }
                index += 1
            }
        }
        if let newest = result.acknowledged.last, newest.number == ack.largest, newest.ackEliciting {
            result.rttSample = now - newest.sentAt
        }
        largestAcknowledged = max(largestAcknowledged ?? 0, ack.largest)
        if detectLoss { result.lost = detectLost(now: now, lossDelay: rtt.lossDelay) }
        compact()
        return result
    }

    /// Declares lost (and removes) packets below the largest acknowledged that are 3 packets or `lossDelay`
    /// older than it (§6.1). Also call when the timer from `lossTime` fires.
    public mutating func detectLost(now: ContinuousClock.Instant, lossDelay: Duration) -> [SentPacket] {
        guard let largest = largestAcknowledged else { return [] }
        var lost: [SentPacket] = []
        var index = head
        while index < slots.count, slots[index].number < largest {
            if let packet = slots[index].packet, largest - packet.number >= Self.packetThreshold || now - packet.sentAt >= lossDelay {
                lost.append(packet)
                if packet.ackEliciting { bytesInFlight -= packet.bytes }
                slots[index].packet = nil
            }
            index += 1
        }
        compact()
        return lost
    }

    /// Removes every outstanding packet (the connection is closing), returning them.
    public mutating func removeAll() -> [SentPacket] {
        let all = outstanding
        (slots, head, bytesInFlight) = ([], 0, 0)
        return all
    }

    /// The oldest outstanding ack-eliciting packet's send time (for the probe timeout).
    public var oldestAckElicitingSentAt: ContinuousClock.Instant? {
        slots[head...].first { $0.packet?.ackEliciting == true }?.packet?.sentAt
    }

    private func firstIndex(atLeast number: UInt64) -> Int {
        var (low, high) = (head, slots.count)
        while low < high {
            let middle = (low + high) / 2
            if slots[middle].number < number { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Drops holes at the front; reclaims the dropped prefix once it is half the array.
    private mutating func compact() {
        while head < slots.count, slots[head].packet == nil { head += 1 }
        if head > 64, head * 2 > slots.count {
            slots.removeFirst(head)
            head = 0
        }
    }

    /// When the oldest packet below the largest acknowledged will count as lost by time (§6.1.2), if any.
    public func lossTime(lossDelay: Duration) -> ContinuousClock.Instant? {
        guard let largest = largestAcknowledged else { return nil }
        // After compaction the head slot is live and the oldest: nothing older can be waiting.
        guard head < slots.count, slots[head].number < largest, let packet = slots[head].packet else { return nil }
        return packet.sentAt + lossDelay
    }
}
