/// BBR (Cardwell et al., draft-cardwell-iccrg-bbr, v1 state machine) with a BBRv2-style loss guard: a model-based
/// controller. It measures the bottleneck bandwidth (a windowed maximum of delivery-rate samples) and the
/// minimum RTT, paces at a gain × that bandwidth and keeps at most cwnd gain × their product in flight. Random
/// loss does not enter the model, so unlike NewReno and CUBIC it is not held to Mathis' bound; only a round
/// trip that loses more than `heavyLossFraction` of its bytes caps the inflight (v2's inflight_hi), so a queue
/// that really overflows still backs it off.
///
/// Deliberately left out: PROBE_RTT. The minimum RTT is `RTTEstimator.minimum`, the connection's lifetime
/// minimum, so a path whose propagation delay grows keeps the old, smaller BDP (the window then limits, and the
/// measured bandwidth follows the window down until the delivery rate and the window agree again).
///
/// Pure value: instants come in through the arguments, no clock.
public struct BBR: CongestionController {
    public enum State: Sendable, Equatable {
        /// Doubles the delivery rate every round trip until it stops growing.
        case startup
        /// Paces below the bandwidth until the queue STARTUP built is gone.
        case drain
        /// Cruises at the bandwidth, probing above it once per gain cycle.
        case probeBandwidth
    }

    public let limits: CongestionLimits
    public private(set) var state = State.startup
    /// The pacing gain cycle of PROBE_BW: one round trip above the bandwidth, one below to drain what that
    /// queued, six at it.
    public static let probeGains: [Double] = [1.25, 0.75, 1, 1, 1, 1, 1, 1]
    /// 2/ln 2: the smallest gain that still doubles the delivery rate each round trip in STARTUP.
    public static let startupGain = 2 / 0.693_147_180_559_945_3
    /// The cwnd gain of PROBE_BW: room for delayed and aggregated ACKs on top of one BDP.
    public static let probeWindowGain = 2.0
    /// Bandwidth must grow by 25 % a round trip, or STARTUP counts the round as flat; three flat rounds end it.
    static let fullBandwidthGrowth = 1.25
    static let fullBandwidthRounds = 3
    /// Round trips the bandwidth maximum remembers.
    public static let bandwidthWindowRounds = 10
    /// Paces 1 % under the estimate so a slightly high estimate does not build a standing queue (as Linux does).
    static let pacingMargin = 0.99
    /// A round trip losing more than 10 % of its bytes (and at least `heavyLossMinimumPackets` datagrams) is
    /// overflow, not random loss: 10× the 1 % random loss meshgate must ride through, well under what an
    /// overflowing drop-tail queue loses when probing at 1.25 or starting up at 2.885.
    public static let heavyLossFraction = 0.10
    /// Below three lost datagrams a round's loss fraction is noise (two of a ten-packet first flight is 20 %).
    static let heavyLossMinimumPackets = 3
    /// v2's β: after heavy loss the inflight is capped at 0.7 of what was in flight when it happened.
    static let inflightCapReduction = 0.7

    /// The bottleneck bandwidth estimate, bytes per second; 0 before the first delivery-rate sample.
    public private(set) var bandwidth: Double = 0
    /// The connection's minimum RTT, as of the last acknowledgement; nil before the first RTT sample.
    public private(set) var minimumRTT: Duration?
    /// Round trips counted by deliveries: one ends when a packet sent after the previous one ended is acknowledged.
    public private(set) var roundCount = 0
    /// STARTUP has ended (flat bandwidth or heavy loss); cleared by persistent congestion.
    public private(set) var filledPipe = false
    /// Index into `probeGains` while in PROBE_BW.
    public private(set) var cycleIndex = 0
    /// v2's inflight_hi: set by a round trip of heavy loss, raised again while rounds stay clean; nil when unset.
    public private(set) var inflightCap: Int?
    /// Bytes in flight implied by the latest acknowledgement: bytes sent after the acknowledged packet.
    public private(set) var impliedInflight = 0
    /// Total bytes acknowledged (the delivery counter rate samples are taken from).
    public private(set) var delivered = 0

    private var congestionWindow: Int
    /// Per-round maxima of the delivery rate: slot round % 10 holds the maximum of that round.
    private var bandwidthSlots: [(round: Int, rate: Double)]
    private var fullBandwidth: Double = 0
    private var flatRounds = 0
    private var cycleStart: ContinuousClock.Instant?
    private var capGrowth: Int
    // Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation).
    private var sentTotal = 0
    private var lostTotal = 0
    private var deliveredAt: ContinuousClock.Instant?
    private var firstSentAt: ContinuousClock.Instant?
    private var snapshots = SendSnapshots()
    // The current round trip.
    private var nextRoundDelivered = 0
    private var roundStartDelivered = 0
    private var lostInRound = 0
    private var maxInflightInRound = 0
    /// The latest instant any call has carried; losses of packets sent up to it when persistent congestion reset
    /// the model belong to the old model and are not counted again.
    private var latestInstant: ContinuousClock.Instant?
    private var resetAt: ContinuousClock.Instant?

    public init(limits: CongestionLimits) {
        self.limits = limits
        congestionWindow = limits.initialWindow
        capGrowth = limits.maxDatagramSize
        bandwidthSlots = Array(repeating: (round: -1, rate: 0), count: Self.bandwidthWindowRounds)
    }

    public var window: Int { max(min(congestionWindow, inflightCap ?? .max), limits.minimumWindow) }

    /// pacing gain × bandwidth (less the margin); nil before a bandwidth sample, so the pacer falls back on
    /// window / RTT for the first flight.
    public var pacingRate: Double? { bandwidth > 0 ? pacingGain * bandwidth * Self.pacingMargin : nil }

    public var pacingGain: Double {
        switch state {
        case .startup: Self.startupGain
        case .drain: 1 / Self.startupGain
        case .probeBandwidth: Self.probeGains[cycleIndex]
        }
    }

    /// Time's worth of bandwidth added to the window target for ACK aggregation (BBRv2's extra_acked, fixed).
    public static let aggregationAllowance: Duration = .milliseconds(2)

    /// STARTUP and DRAIN keep the startup gain, so DRAIN lowers the rate without cutting the window under it.
    public var windowGain: Double { state == .probeBandwidth ? Self.probeWindowGain : Self.startupGain }

    /// Bandwidth × minimum RTT in bytes; nil until both are known.
    public var estimatedBDP: Double? {
        guard bandwidth > 0, let minimumRTT, minimumRTT > .zero else { return nil }
        return bandwidth * minimumRTT.inSeconds
    }

    public mutating func sent(bytes: Int, now: ContinuousClock.Instant) {
        latestInstant = now
        // Nothing in flight: the next rate sample must not count the idle span as time spent delivering.
        if sentTotal - delivered - lostTotal <= 0 || deliveredAt == nil { (deliveredAt, firstSentAt) = (now, now) }
        sentTotal += bytes
        snapshots.record(SendSnapshot(sentAt: now, delivered: delivered, deliveredAt: deliveredAt ?? now, firstSentAt: firstSentAt ?? now, sentTotal: sentTotal))
    }

    public mutating func acknowledged(bytes: Int, sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant, rtt: RTTEstimator, appLimited: Bool) {
        latestInstant = now
        delivered += bytes
        deliveredAt = now
        if rtt.hasSample { minimumRTT = rtt.minimum }
        defer { updateWindow(acknowledged: bytes) }
        guard let snapshot = snapshots.find(sentAt: sentAt) else { return }
        firstSentAt = sentAt
        impliedInflight = max(sentTotal - snapshot.sentTotal, 0)
        maxInflightInRound = max(maxInflightInRound, impliedInflight)

        let roundStarted = snapshot.delivered >= nextRoundDelivered
        if roundStarted {
            endRound()
            nextRoundDelivered = delivered
        }
        // The rate over the longer of the send and the ACK spans: ACK compression cannot inflate it (§4.1.2).
        let interval = max(sentAt - snapshot.firstSentAt, now - snapshot.deliveredAt)
        if let minimumRTT, interval >= minimumRTT, interval > .zero {
            let rate = Double(delivered - snapshot.delivered) / interval.inSeconds
            // An app-limited sample only shows what the application offered: it may raise the estimate, never lower it.
            if !appLimited || rate > bandwidth { addBandwidthSample(rate) }
        }
        if roundStarted, !filledPipe, !appLimited { checkFullPipe() }
        advanceState(now: now)
    }

    /// Random loss carries no information for the model; the bytes are counted for the loss guard, which looks
    /// at whole round trips (see `lost(bytes:sentAt:now:)`).
    public mutating func congestionEvent(sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant) {
        latestInstant = now
    }

    public mutating func lost(bytes: Int, sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant) {
        latestInstant = now
        lostTotal += bytes
        if let resetAt, sentAt <= resetAt { return }
        lostInRound += bytes
    }

    /// Every packet for a while was lost: the model is stale. Back to the minimum window and a fresh STARTUP.
    public mutating func persistentCongestion() {
        congestionWindow = limits.minimumWindow
        state = .startup
        (filledPipe, fullBandwidth, flatRounds, bandwidth, inflightCap) = (false, 0, 0, 0, nil)
        for index in bandwidthSlots.indices { bandwidthSlots[index] = (round: -1, rate: 0) }
        (lostInRound, maxInflightInRound, capGrowth) = (0, 0, limits.maxDatagramSize)
        roundStartDelivered = delivered
        nextRoundDelivered = delivered
        resetAt = latestInstant
    }

    // MARK: Model

    private mutating func addBandwidthSample(_ rate: Double) {
        let slot = roundCount % Self.bandwidthWindowRounds
        if bandwidthSlots[slot].round != roundCount { bandwidthSlots[slot] = (round: roundCount, rate: 0) }
        bandwidthSlots[slot].rate = max(bandwidthSlots[slot].rate, rate)
        // The maximum over the slots of the last ten rounds. Rounds age out only as samples arrive (as in
        // Linux's minmax): an app-limited spell, which adds none, keeps the estimate it found.
        let oldest = roundCount - Self.bandwidthWindowRounds + 1
        bandwidth = bandwidthSlots.lazy.filter { $0.round >= oldest }.map(\.rate).max() ?? 0
    }

    /// The round trip that just ended: the loss guard looks at its bytes, then the bandwidth window moves on.
    private mutating func endRound() {
        let lostBytes = lostInRound
        let roundBytes = delivered - roundStartDelivered + lostBytes
        if lostBytes >= Self.heavyLossMinimumPackets * limits.maxDatagramSize,
            Double(lostBytes) > Self.heavyLossFraction * Double(roundBytes)
        {
            let cap = max(Int(Self.inflightCapReduction * Double(max(maxInflightInRound, limits.minimumWindow))), limits.minimumWindow)
            inflightCap = min(inflightCap ?? .max, cap)
            capGrowth = limits.maxDatagramSize
            // v2: STARTUP that overflows a queue has found the bandwidth, whatever the growth said.
            if !filledPipe { enterDrain() }
        } else if let cap = inflightCap, state == .probeBandwidth {
            // Clean round: probe the cap back up, 1, 2, 4 … datagrams a round, and drop it once the model's own
            // window is below it.
            let raised = cap + capGrowth
            capGrowth = min(capGrowth * 2, Int.max / 4)
            inflightCap = raised >= congestionWindow ? nil : raised
        }
        roundCount += 1
        roundStartDelivered = delivered
        (lostInRound, maxInflightInRound) = (0, 0)
    }

    private mutating func checkFullPipe() {
        if bandwidth >= fullBandwidth * Self.fullBandwidthGrowth {
            (fullBandwidth, flatRounds) = (bandwidth, 0)
            return
        }
        flatRounds += 1
        if flatRounds >= Self.fullBandwidthRounds { enterDrain() }
    }

    private mutating func enterDrain() {
        filledPipe = true
        state = .drain
    }

    private mutating func advanceState(now: ContinuousClock.Instant) {
        guard let bdp = estimatedBDP else { return }
        switch state {
        case .startup:
            break
        case .drain:
            if Double(impliedInflight) <= bdp {
                state = .probeBandwidth
                (cycleIndex, cycleStart) = (0, now)
            }
        case .probeBandwidth:
            guard let start = cycleStart, let minimumRTT else { return }
            let fullLength = now - start > minimumRTT
            // The 0.75 phase ends as soon as the 1.25 phase's queue has drained; the others last one min RTT.
            let drained = Self.probeGains[cycleIndex] < 1 && Double(impliedInflight) <= bdp
            if fullLength || drained {
                cycleIndex = (cycleIndex + 1) % Self.probeGains.count
                cycleStart = now
            }
        }
    }

    /// cwnd gain × BDP. After STARTUP the window moves to it at once when shrinking and by the bytes acknowledged
    /// when growing; in STARTUP it grows by every byte acknowledged while below it (or below the initial window).
    private mutating func updateWindow(acknowledged bytes: Int) {
        guard let bdp = estimatedBDP else { return }
        // Plus what `aggregationAllowance` delivers at the estimated rate: ACKs come in batches (two packets per
        // ACK, an event-loop turn per read burst), and on a sub-millisecond path gain × BDP alone is a handful of
        // packets that those batches, not the path, would keep idle (measured: 32 vs 82 MB/s on loopback).
        let target = Int(min(windowGain * bdp + bandwidth * Self.aggregationAllowance.inSeconds, Double(Int.max / 2)))
        if filledPipe {
            congestionWindow = min(congestionWindow + bytes, target)
        } else if congestionWindow < target || delivered < limits.initialWindow {
            congestionWindow += bytes
        }
        congestionWindow = max(congestionWindow, limits.minimumWindow)
    }
}

/// The delivery state when a packet left: a rate sample is what was delivered since over the time it took.
struct SendSnapshot {
    let sentAt: ContinuousClock.Instant
    let delivered: Int
    let deliveredAt: ContinuousClock.Instant
    let firstSentAt: ContinuousClock.Instant
    /// Bytes sent up to and including the packet.
    let sentTotal: Int
}

/// Snapshots by send instant, oldest first. Packets sent at one instant share the first one's snapshot (nothing
/// was delivered between them). Bounded: past `capacity` the oldest go, and their packets yield no rate sample.
struct SendSnapshots {
    static let capacity = 1 << 16
    private var entries: [SendSnapshot] = []
    private var head = 0

    mutating func record(_ snapshot: SendSnapshot) {
        if head < entries.count, entries[entries.count - 1].sentAt == snapshot.sentAt { return }
        entries.append(snapshot)
        if entries.count - head > Self.capacity { head += 1 }
        compact()
    }

    /// The snapshot of a packet sent at `sentAt`. Older ones are dropped: their packets were acknowledged or
    /// lost (acknowledgements arrive in send order but for reordering, whose late samples are skipped).
    mutating func find(sentAt: ContinuousClock.Instant) -> SendSnapshot? {
        while head < entries.count, entries[head].sentAt < sentAt { head += 1 }
        compact()
        guard head < entries.count, entries[head].sentAt == sentAt else { return nil }
        return entries[head]
    }

    /// Removes the dropped prefix once it is both long and most of the array, so each entry moves O(1) times.
    private mutating func compact() {
        guard head > 1024, head * 2 > entries.count else { return }
        entries.removeFirst(head)
        head = 0
    }
}
