import PropertyBased
import Testing
import Tunnel

/// A sender that acknowledges whole windows of 1200-byte datagrams, one round trip at a time, with the
/// acknowledgements spread evenly over the round trip (an ACK clock). Shared by the NewReno and CUBIC tests.
struct AckClock<Controller: CongestionController> {
    static var datagram: Int { 1200 }
    var controller: Controller
    var now: ContinuousClock.Instant
    var rtt = RTTEstimator()
    let roundTrip: Duration

    init(_ controller: Controller, roundTrip: Duration, start: ContinuousClock.Instant = .now) {
        self.controller = controller
        self.now = start
        self.roundTrip = roundTrip
        rtt.add(sample: roundTrip, ackDelay: .zero, maxAckDelay: .zero)
    }

    /// One round trip: every datagram of the window at its start is acknowledged, each one RTT after it left.
    mutating func round(appLimited: Bool = false) {
        let count = max(controller.window / Self.datagram, 1)
        let roundStart = now
        for index in 1...count {
            now = roundStart + roundTrip * index / count
            controller.acknowledged(bytes: Self.datagram, sentAt: now - roundTrip, now: now, rtt: rtt, appLimited: appLimited)
        }
    }

    /// A loss of a packet sent just now, which starts a recovery period.
    mutating func loss() {
        now += .microseconds(1)
        controller.congestionEvent(sentAt: now - .microseconds(1), now: now)
    }

    /// Slow start until the window reaches `bytes`, acknowledging one datagram at a time.
    mutating func grow(to bytes: Int) {
        while controller.window < bytes {
            now += .microseconds(1)
            controller.acknowledged(bytes: Self.datagram, sentAt: now - .microseconds(1), now: now, rtt: rtt, appLimited: false)
        }
    }
}

let limits1200 = CongestionLimits(maxDatagramSize: 1200)

@Suite struct NewRenoTests {
    /// RFC 9002 §7.2: kInitialWindow = min(10 × size, max(14720, 2 × size)); kMinimumWindow = 2 × size.
    @Test(arguments: [(1200, 12_000), (1500, 14_720), (1472, 14_720), (9000, 18_000), (500, 5000)])
    func initialWindow(size: Int, expected: Int) {
        let limits = CongestionLimits(maxDatagramSize: size)
        #expect(limits.initialWindow == expected && limits.minimumWindow == 2 * size)
        #expect(NewReno(limits: limits).window == expected)
    }

    /// Slow start: the window grows by every byte acknowledged, so it doubles each round trip.
    @Test func slowStartDoublesPerRoundTrip() {
        var clock = AckClock(NewReno(limits: limits1200), roundTrip: .milliseconds(50))
        for expected in [24_000, 48_000, 96_000, 192_000] {
            clock.round()
            #expect(clock.controller.window == expected)
        }
    }

    /// One halving per recovery period: losses and ACKs of packets sent before it began change nothing; a loss
    /// of a packet sent after it starts the next period. Then one datagram per window per round trip.
    @Test func recoveryPeriod() {
        var clock = AckClock(NewReno(limits: limits1200), roundTrip: .milliseconds(50))
        clock.round()
        let beforeLoss = clock.now
        clock.loss()
        let recoveryStart = clock.now
        #expect(clock.controller.window == 12_000 && clock.controller.slowStartThreshold == 12_000)
        clock.controller.congestionEvent(sentAt: beforeLoss, now: recoveryStart + .milliseconds(10))
        clock.controller.congestionEvent(sentAt: recoveryStart, now: recoveryStart + .milliseconds(20))
        clock.controller.acknowledged(bytes: 1200, sentAt: recoveryStart, now: recoveryStart + .milliseconds(30), rtt: clock.rtt, appLimited: false)
        #expect(clock.controller.window == 12_000 && clock.controller.recoveryStart == recoveryStart)
        // The round trip after the loss acknowledges packets sent before it: no growth.
        clock.round()
        #expect(clock.controller.window == 12_000)
        // Congestion avoidance: +1 datagram per window acknowledged.
        clock.round()
        #expect(clock.controller.window == 13_200)
        clock.round()
        #expect(clock.controller.window == 14_400)
        clock.loss()
        #expect(clock.controller.window == 7200)
    }

    /// App-limited ACKs say nothing about spare capacity: the window stays.
    @Test func appLimitedAcksDoNotGrow() {
        var clock = AckClock(NewReno(limits: limits1200), roundTrip: .milliseconds(50))
        clock.round(appLimited: true)
        #expect(clock.controller.window == 12_000)
    }

    /// Persistent congestion drops to the minimum window and ends recovery, so the next loss counts.
    @Test func persistentCongestionAndFloor() {
        var clock = AckClock(NewReno(limits: limits1200), roundTrip: .milliseconds(50))
        clock.round()
        clock.loss()
        clock.controller.persistentCongestion()
        #expect(clock.controller.window == 2400 && clock.controller.recoveryStart == nil)
        for _ in 0..<5 { clock.loss() }
        #expect(clock.controller.window == 2400)
        // ssthresh stays where the last loss put it (no lower than the minimum): slow start up to it.
        #expect(clock.controller.slowStartThreshold == 2400)
    }
}

@Suite struct CubicTests {
    static let segment = 1200.0

    /// After a loss the window is β × W_max, and K = ∛((W_max − cwnd_epoch)/C) brings the curve back to W_max.
    @Test func reductionAndK() {
        var clock = AckClock(Cubic(limits: limits1200), roundTrip: .milliseconds(100))
        clock.grow(to: 96_000)
        clock.loss()
        let cubic = clock.controller
        #expect(cubic.maxWindow == 96_000 && cubic.window == 67_200 && cubic.slowStartThreshold == 67_200)
        // (80 − 56 segments) / 0.4 = 60; ∛60 = 3.914867641… s.
        #expect(abs(cubic.timeToMaxWindow.inSeconds - 3.914_867_641) < 1e-6)
        #expect(abs(cubic.cubicWindow(after: .zero) - 67_200) < 0.01)
        #expect(abs(cubic.cubicWindow(after: cubic.timeToMaxWindow) - 96_000) < 0.01)
        // The epoch starts at the first ACK after the event, not at the event.
        #expect(cubic.epoch == nil)
        clock.now += .seconds(1)
        clock.round()
        #expect(clock.controller.epoch?.start == clock.now - .milliseconds(100) + .milliseconds(100) / 56)
        #expect(clock.controller.epoch?.startWindow == 67_200)
    }

    /// A large window and long RTT (so the curve, not Reno, leads): growth is fast just after the loss, flat
    /// near W_max at t ≈ K, and fast again past it; the window is then within a few percent of W_max.
    @Test func concaveThenConvex() {
        var clock = AckClock(Cubic(limits: limits1200), roundTrip: .milliseconds(100))
        clock.grow(to: 1_200_000)  // 1000 segments
        clock.loss()
        let k = clock.controller.timeToMaxWindow  // ∛(300/0.4) ≈ 9.09 s
        #expect(abs(k.inSeconds - 9.085_602_964) < 1e-6)
        clock.round()  // packets sent before the loss
        var samples: [(at: ContinuousClock.Instant, window: Double)] = []
        while samples.isEmpty || samples.last!.at - clock.controller.epoch!.start < k * 2 {
            clock.round()
            samples.append((clock.now, Double(clock.controller.window)))
            #expect(clock.controller.epoch!.renoEstimate < Double(clock.controller.window))
        }
        let epochStart = clock.controller.epoch!.start
        func window(at t: Double) -> Double { samples.first { ($0.at - epochStart).inSeconds >= t }!.window }
        let kSeconds = k.inSeconds
        // Concave before K: the first half gains more than the second.
        let firstHalf = window(at: kSeconds / 2) - window(at: 0)
        let secondHalf = window(at: kSeconds) - window(at: kSeconds / 2)
        #expect(firstHalf > 3 * secondHalf)
        // Plateau: one RTT ahead of the curve, the window sits at W_max around K.
        #expect(abs(window(at: kSeconds - 0.1) - 1_200_000) < 0.01 * 1_200_000)
        // Convex after K: each further second gains more than the one before.
        let gains = (0..<4).map { window(at: kSeconds + Double($0 + 1)) - window(at: kSeconds + Double($0)) }
        #expect(zip(gains, gains.dropFirst()).allSatisfy { $0 < $1 })
        #expect(window(at: kSeconds * 2 - 0.2) > 1_300_000)
    }

    /// A small window on a short RTT: the curve would take K ≈ 2.5 s to regain 20 segments, while Reno gains
    /// one per 10 ms round trip, so the window follows the Reno estimate, like NewReno's.
    @Test func renoFriendlyAtSmallBDP() {
        var cubic = AckClock(Cubic(limits: limits1200), roundTrip: .milliseconds(10))
        cubic.grow(to: 24_000)
        cubic.loss()
        var reno = AckClock(NewReno(limits: limits1200), roundTrip: .milliseconds(10))
        reno.grow(to: 24_000)
        reno.loss()
        for _ in 0..<100 {
            cubic.round()
            reno.round()
        }
        let window = Double(cubic.controller.window)
        let estimate = cubic.controller.epoch!.renoEstimate
        #expect(abs(window - estimate) < 1)
        #expect(window > cubic.controller.cubicWindow(after: .seconds(1)) + 60 * Self.segment)
        // NewReno from 10 segments gains 100; CUBIC from 14 gains ~6 at α = 0.53 to cwnd_prior, then 1 per round.
        #expect(abs(window - Double(reno.controller.window)) < 6 * Self.segment)
    }

    /// §4.7: a loss below the previous W_max means another flow is taking bandwidth; W_max drops to
    /// cwnd × (1 + β)/2. A loss above it just records the new maximum.
    @Test func fastConvergence() {
        var clock = AckClock(Cubic(limits: limits1200), roundTrip: .milliseconds(50))
        clock.grow(to: 120_000)
        clock.loss()
        #expect(clock.controller.maxWindow == 120_000 && clock.controller.window == 84_000)
        clock.round()  // packets sent before the loss
        clock.round()
        let below = Double(clock.controller.window)
        clock.loss()
        #expect(below < 120_000)
        // `window` is whole bytes; the controller keeps the fraction.
        #expect(abs(clock.controller.maxWindow - below * 0.85) < 1)
        #expect(abs(clock.controller.priorWindow - below) < 1)
        // Long enough to pass the (lowered) W_max, then a loss above it.
        for _ in 0..<120 { clock.round() }
        let above = Double(clock.controller.window)
        #expect(above > 120_000)
        clock.loss()
        #expect(abs(clock.controller.maxWindow - above) < 1)
    }

    /// §4.2: the target is at most 1.5 × cwnd, so even far out on the convex side, where W_cubic(t + RTT) is
    /// enormous, acknowledging a whole window adds at most half of it.
    @Test func increasePerAckBounded() {
        var clock = AckClock(Cubic(limits: limits1200), roundTrip: .milliseconds(50))
        clock.grow(to: 120_000)
        clock.loss()
        clock.round()  // packets sent before the loss
        clock.round()  // starts the epoch
        clock.now += .seconds(60)
        let before = clock.controller.window
        clock.controller.acknowledged(bytes: 1200, sentAt: clock.now, now: clock.now, rtt: clock.rtt, appLimited: false)
        #expect(abs(clock.controller.window - before - 600) <= 1)
        let window = clock.controller.window
        clock.controller.acknowledged(bytes: window, sentAt: clock.now, now: clock.now, rtt: clock.rtt, appLimited: false)
        #expect(abs(clock.controller.window - (window + window / 2)) <= 1)
    }

    /// App-limited spans are taken out of t (§5.8): after a long app-limited spell the curve resumes where
    /// it was instead of jumping ahead.
    @Test func appLimitedTimeDoesNotAdvanceTheCurve() {
        var clock = AckClock(Cubic(limits: limits1200), roundTrip: .milliseconds(100))
        clock.grow(to: 1_200_000)
        clock.loss()
        clock.round()
        clock.round()
        let start = clock.controller.epoch!.start
        let window = clock.controller.window
        for _ in 0..<50 { clock.round(appLimited: true) }
        #expect(clock.controller.window == window)
        #expect(clock.controller.epoch!.start - start > .seconds(4))
    }

    /// Persistent congestion: minimum window, new epoch. Slow start back to ssthresh, then the curve starts at
    /// its inflection point (K = 0, W_max = cwnd_epoch: §4.8).
    @Test func persistentCongestionResetsEpoch() {
        var clock = AckClock(Cubic(limits: limits1200), roundTrip: .milliseconds(50))
        clock.grow(to: 120_000)
        clock.loss()
        clock.round()
        clock.controller.persistentCongestion()
        #expect(clock.controller.window == 2400 && clock.controller.epoch == nil && clock.controller.recoveryStart == nil)
        clock.grow(to: 84_000)
        clock.round()
        #expect(clock.controller.timeToMaxWindow == .zero)
        #expect(clock.controller.epoch!.startWindow >= 84_000 && clock.controller.maxWindow == clock.controller.epoch!.startWindow)
    }
}

/// Invariants of both controllers under any sequence of events, against a model of RFC 9002's recovery
/// period: never below the minimum window, never shrinking on an ACK, never growing on a loss, an app-limited
/// ACK or an ACK of a packet sent before the recovery period began. BBR is model-based (its window follows the
/// bandwidth estimate, up or down, on any ACK) and has invariants of its own in `BBRTests`.
@Suite struct CongestionInvariantTests {
    @Test(arguments: [CongestionAlgorithm.newReno, .cubic])
    func invariants(algorithm: CongestionAlgorithm) async {
        await propertyCheck(count: 200, input: Gen.int(in: 0...(1 << 40)).array(of: 1...400)) { events in
            var controller = algorithm.makeController(limits: limits1200)
            var now = ContinuousClock.now
            var rtt = RTTEstimator()
            rtt.add(sample: .milliseconds(40), ackDelay: .zero, maxAckDelay: .zero)
            var recoveryStart: ContinuousClock.Instant?
            for event in events {
                now += .microseconds(event >> 20 & 0xFFFF)
                let sentAt = now - .microseconds(event >> 4 & 0xFFFF)
                let bytes = (event >> 8 & 0x3FF) + 1
                let before = controller.window
                switch event % 8 {
                case 0, 1:
                    controller.congestionEvent(sentAt: sentAt, now: now)
                    #expect(controller.window <= before)
                    if recoveryStart.map({ sentAt > $0 }) ?? true { recoveryStart = now }
                case 2:
                    controller.persistentCongestion()
                    recoveryStart = nil
                    #expect(controller.window == limits1200.minimumWindow)
                case 3:
                    controller.acknowledged(bytes: bytes, sentAt: sentAt, now: now, rtt: rtt, appLimited: true)
                    #expect(controller.window == before)
                default:
                    controller.acknowledged(bytes: bytes, sentAt: sentAt, now: now, rtt: rtt, appLimited: false)
                    #expect(controller.window >= before)
                    if let recoveryStart, sentAt <= recoveryStart { #expect(controller.window == before) }
                }
                #expect(controller.window >= limits1200.minimumWindow)
            }
        }
    }

    @Test func algorithmNames() {
        #expect(CongestionAlgorithm(rawValue: "newreno") == .newReno && CongestionAlgorithm(rawValue: "cubic") == .cubic)
        #expect(CongestionAlgorithm.newReno.makeController(limits: limits1200) is NewReno)
        #expect(CongestionAlgorithm.cubic.makeController(limits: limits1200) is Cubic)
    }
}

@Suite struct PacerTests {
    static func rtt(_ sample: Duration) -> RTTEstimator {
        var rtt = RTTEstimator()
        rtt.add(sample: sample, ackDelay: .zero, maxAckDelay: .zero)
        return rtt
    }

    /// Before any RTT sample there is no rate: nothing waits, however much is sent.
    @Test func noPacingWithoutRTTSample() {
        var pacer = Pacer(limits: limits1200)
        let now = ContinuousClock.now
        for _ in 0..<100 {
            #expect(pacer.nextSendTime(bytes: 1200, now: now, window: 12_000, rtt: RTTEstimator()) == nil)
            pacer.sent(bytes: 1200, now: now, window: 12_000, rtt: RTTEstimator())
        }
    }

    /// A full bucket (the initial window, 10 datagrams) goes at once; then one datagram per
    /// 1200 / (1.25 × 120000 / 0.1 s) = 0.8 ms.
    @Test func spacing() {
        var pacer = Pacer(limits: limits1200)
        let rtt = Self.rtt(.milliseconds(100))
        let start = ContinuousClock.now
        var now = start
        var sendTimes: [ContinuousClock.Instant] = []
        for _ in 0..<110 {
            if let next = pacer.nextSendTime(bytes: 1200, now: now, window: 120_000, rtt: rtt) { now = next }
            pacer.sent(bytes: 1200, now: now, window: 120_000, rtt: rtt)
            sendTimes.append(now)
        }
        #expect(sendTimes.prefix(10).allSatisfy { $0 == start })
        #expect(abs((sendTimes[10] - start).inSeconds - 0.000_8) < 1e-8)
        // 99 gaps of 0.8 ms.
        let paced = sendTimes.last! - sendTimes[10]
        #expect(paced >= .microseconds(79_190) && paced <= .microseconds(79_210))
    }

    /// A controller's own rate replaces 1.25 × window / RTT, even before an RTT sample: after the bucket,
    /// one datagram per 1200 / 1.2 MB/s = 1 ms, whatever the window.
    @Test func rateOverride() {
        var pacer = Pacer(limits: limits1200)
        let start = ContinuousClock.now
        var now = start
        for _ in 0..<20 {
            if let next = pacer.nextSendTime(bytes: 1200, now: now, window: 1_000_000, rtt: RTTEstimator(), rate: 1_200_000) { now = next }
            pacer.sent(bytes: 1200, now: now, window: 1_000_000, rtt: RTTEstimator(), rate: 1_200_000)
        }
        #expect(abs((now - start).inSeconds - 0.010) < 1e-8)
    }

    /// After an idle spell, however long and however large the window, only the bucket (the initial window)
    /// may go at once.
    @Test(arguments: [12_000, 1_000_000, 100_000_000])
    func burstAfterIdleIsBounded(window: Int) {
        var pacer = Pacer(limits: limits1200)
        let rtt = Self.rtt(.milliseconds(20))
        var now = ContinuousClock.now
        for _ in 0..<50 {
            now = pacer.nextSendTime(bytes: 1200, now: now, window: window, rtt: rtt) ?? now
            pacer.sent(bytes: 1200, now: now, window: window, rtt: rtt)
        }
        now += .seconds(10)
        var burst = 0
        while pacer.nextSendTime(bytes: 1200, now: now, window: window, rtt: rtt) == nil {
            pacer.sent(bytes: 1200, now: now, window: window, rtt: rtt)
            burst += 1
        }
        #expect(burst == 10 && pacer.capacity == 12_000)
        #expect(Pacer(limits: CongestionLimits(maxDatagramSize: 9000)).capacity == 18_000)
    }

    /// The token-bucket bound for a sender that obeys `nextSendTime`, whatever its packet sizes and pauses:
    /// between any two sends no more than capacity + rate × elapsed bytes leave.
    @Test func tokenBucketBound() async {
        await propertyCheck(count: 100, input: Gen.int(in: 1...1200).array(of: 2...150), Gen.int(in: 0...3000).array(of: 1...150)) { sizes, pauses in
            var pacer = Pacer(limits: limits1200)
            let rtt = Self.rtt(.milliseconds(30))
            let window = 60_000
            let rate = 1.25 * Double(window) / 0.030
            var now = ContinuousClock.now
            var sends: [(at: ContinuousClock.Instant, bytes: Int)] = []
            for (index, size) in sizes.enumerated() {
                now += .microseconds(pauses[index % pauses.count])
                now = pacer.nextSendTime(bytes: size, now: now, window: window, rtt: rtt) ?? now
                pacer.sent(bytes: size, now: now, window: window, rtt: rtt)
                sends.append((now, size))
            }
            for first in sends.indices {
                var total = 0
                for last in first..<sends.count {
                    total += sends[last].bytes
                    let allowed = Double(pacer.capacity) + rate * (sends[last].at - sends[first].at).inSeconds
                    #expect(Double(total) <= allowed + 0.5 * Double(last - first + 1))
                }
            }
        }
    }
}
