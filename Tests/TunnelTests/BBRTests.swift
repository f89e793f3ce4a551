import Testing
import Tunnel

/// An open-loop sender for BBR's model: one 1200-byte datagram every 1200 / `rate` seconds whatever the
/// controller says, each acknowledged one `roundTrip` later unless `lose` picks it, in which case it is declared
/// lost when the next surviving one is acknowledged (as the packet threshold would). The controller only
/// observes, so what it estimates can be checked against the rate and RTT that were set.
struct SteadySender {
    var controller = BBR(limits: limits1200)
    var rtt = RTTEstimator()
    var now = ContinuousClock.now
    /// Datagrams sent so far: `lose` is asked by this index.
    var sentCount = 0
    var lostCount = 0

    mutating func run(
        rate: Double, roundTrip: Duration, for duration: Duration, appLimited: Bool = false,
        lose: (Int) -> Bool = { _ in false }
    ) {
        let gap = Duration.seconds(Double(limits1200.maxDatagramSize) / rate)
        let end = now + duration
        var inFlight: [(sentAt: ContinuousClock.Instant, lost: Bool)] = []
        var cursor = 0
        var lossCursor = 0
        var nextSend = now
        while nextSend < end || cursor < inFlight.count {
            let nextAck = cursor < inFlight.count ? inFlight[cursor].sentAt + roundTrip : nil
            if nextSend < end, nextAck.map({ nextSend < $0 }) ?? true {
                now = nextSend
                controller.sent(bytes: 1200, now: now)
                inFlight.append((now, lose(sentCount)))
                sentCount += 1
                nextSend = now + gap
                continue
            }
            now = nextAck!
            let packet = inFlight[cursor]
            cursor += 1
            guard !packet.lost else { continue }
            rtt.add(sample: roundTrip, ackDelay: .zero, maxAckDelay: .zero)
            controller.acknowledged(bytes: 1200, sentAt: packet.sentAt, now: now, rtt: rtt, appLimited: appLimited)
            let lost = inFlight[lossCursor..<(cursor - 1)]
            lossCursor = cursor
            for packet in lost { controller.lost(bytes: 1200, sentAt: packet.sentAt, now: now) }
            if let newest = lost.last {
                lostCount += lost.count
                controller.congestionEvent(sentAt: newest.sentAt, now: now)
            }
        }
    }
}

@Suite struct BBRTests {
    /// 1 MB/s at 40 ms: a 40 kB BDP.
    static let rate = 1_000_000.0
    static let roundTrip = Duration.milliseconds(40)
    static let bdp = rate * 0.04

    static func steady(seconds: Double = 2) -> SteadySender {
        var sender = SteadySender()
        sender.run(rate: rate, roundTrip: roundTrip, for: .seconds(seconds))
        return sender
    }

    /// Before any sample: the initial window and no rate of its own (the pacer derives one).
    @Test func beforeSamples() {
        let bbr = BBR(limits: limits1200)
        #expect(bbr.window == limits1200.initialWindow && bbr.pacingRate == nil && bbr.state == .startup)
        #expect(CongestionAlgorithm(rawValue: "bbr") == .bbr && CongestionAlgorithm.bbr.makeController(limits: limits1200) is BBR)
    }

    /// Delivery-rate samples from a constant-rate sender find its rate, and the minimum RTT is the path's.
    /// Delivery at a constant rate is flat from the first round, so STARTUP ends after three flat rounds and,
    /// the pipe holding exactly one BDP, DRAIN at once: the window is 2 × BDP.
    @Test func estimatesBandwidthAndMinimumRTT() {
        let sender = Self.steady()
        let bbr = sender.controller
        #expect(abs(bbr.bandwidth - Self.rate) / Self.rate < 0.04, "bandwidth \(bbr.bandwidth)")
        #expect(bbr.minimumRTT == Self.roundTrip && bbr.state == .probeBandwidth && bbr.filledPipe)
        #expect(abs(Double(bbr.window) - 2 * Self.bdp) / (2 * Self.bdp) < 0.05, "window \(bbr.window)")
        #expect(abs(bbr.pacingRate! - bbr.pacingGain * 0.99 * bbr.bandwidth) < 1e-6)
    }

    /// App-limited samples (a tenth of the rate) for 20 round trips, twice the bandwidth window, leave the
    /// estimate where it was; the same samples not marked app-limited age it out and bring it down.
    @Test func appLimitedSamplesDoNotLowerBandwidth() {
        var limited = Self.steady()
        limited.run(rate: Self.rate / 10, roundTrip: Self.roundTrip, for: Self.roundTrip * 20, appLimited: true)
        #expect(abs(limited.controller.bandwidth - Self.rate) / Self.rate < 0.04, "\(limited.controller.bandwidth)")
        var unlimited = Self.steady()
        unlimited.run(rate: Self.rate / 10, roundTrip: Self.roundTrip, for: Self.roundTrip * 20)
        #expect(unlimited.controller.bandwidth < Self.rate / 5, "\(unlimited.controller.bandwidth)")
    }

    /// 1 % random loss (every 100th datagram) for 5 s: the window and the bandwidth stay, no cap is set.
    @Test func randomLossDoesNotShrinkTheWindow() {
        var sender = Self.steady()
        let before = sender.controller.window
        sender.run(rate: Self.rate, roundTrip: Self.roundTrip, for: .seconds(5)) { $0 % 100 == 37 }
        #expect(sender.lostCount >= 40)
        #expect(sender.controller.inflightCap == nil && sender.controller.window >= before, "\(before) → \(sender.controller.window)")
    }

    /// 20 % loss (every fifth datagram), twice the guard's threshold: the inflight is capped below the
    /// window it had, at 0.7 of what was in flight (one BDP here), within a round trip or two.
    @Test func heavyLossCapsTheInflight() {
        var sender = Self.steady()
        let before = sender.controller.window
        sender.run(rate: Self.rate, roundTrip: Self.roundTrip, for: Self.roundTrip * 3) { $0 % 5 == 0 }
        let cap = sender.controller.inflightCap
        #expect(cap != nil && sender.controller.window < before)
        #expect(cap.map { Double($0) <= 0.75 * Self.bdp } ?? false, "cap \(String(describing: cap))")
    }

    /// Clean round trips after heavy loss raise the cap by 1, 2, 4 … datagrams a round until the model's
    /// window is below it again.
    @Test func capIsProbedBackUp() {
        var sender = Self.steady()
        let before = sender.controller.window
        sender.run(rate: Self.rate, roundTrip: Self.roundTrip, for: Self.roundTrip * 3) { $0 % 5 == 0 }
        let capped = sender.controller.window
        sender.run(rate: Self.rate, roundTrip: Self.roundTrip, for: Self.roundTrip * 3)
        #expect(sender.controller.window > capped)
        sender.run(rate: Self.rate, roundTrip: Self.roundTrip, for: Self.roundTrip * 12)
        #expect(sender.controller.inflightCap == nil && sender.controller.window >= before)
    }

    /// Persistent congestion: the minimum window, the model forgotten, STARTUP again; losses of packets sent
    /// before it do not count against the new round trips.
    @Test func persistentCongestion() {
        var sender = Self.steady()
        sender.controller.persistentCongestion()
        #expect(sender.controller.window == limits1200.minimumWindow && sender.controller.state == .startup)
        #expect(sender.controller.bandwidth == 0 && sender.controller.pacingRate == nil && !sender.controller.filledPipe)
        for _ in 0..<10 { sender.controller.lost(bytes: 1200, sentAt: sender.now - .milliseconds(1), now: sender.now) }
        sender.run(rate: Self.rate, roundTrip: Self.roundTrip, for: .seconds(1))
        #expect(sender.controller.inflightCap == nil && sender.controller.state == .probeBandwidth)
        #expect(abs(sender.controller.bandwidth - Self.rate) / Self.rate < 0.04)
    }

    /// Invariants under any events: never below the minimum window, a loss never grows the window, persistent
    /// congestion is exactly the minimum window, the pacing rate is positive when set.
    @Test func invariants() {
        var rng = SplitMix(seed: 7)
        for _ in 0..<200 {
            var bbr = BBR(limits: limits1200)
            var now = ContinuousClock.now
            var rtt = RTTEstimator()
            rtt.add(sample: .milliseconds(40), ackDelay: .zero, maxAckDelay: .zero)
            var sent: [ContinuousClock.Instant] = []
            for _ in 0..<400 {
                let event = Int(truncatingIfNeeded: rng.next() >> 1)
                now += .microseconds(event >> 20 & 0xFFFF)
                let before = bbr.window
                switch event % 8 {
                case 0:
                    bbr.lost(bytes: 1200, sentAt: sent.first ?? now, now: now)
                    bbr.congestionEvent(sentAt: sent.first ?? now, now: now)
                    #expect(bbr.window <= before)
                case 1:
                    bbr.persistentCongestion()
                    #expect(bbr.window == limits1200.minimumWindow)
                case 2, 3, 4:
                    bbr.sent(bytes: 1200, now: now)
                    sent.append(now)
                default:
                    guard !sent.isEmpty else { continue }
                    let sentAt = sent.removeFirst()
                    bbr.acknowledged(bytes: 1200, sentAt: sentAt, now: now, rtt: rtt, appLimited: event & 0x10 != 0)
                }
                #expect(bbr.window >= limits1200.minimumWindow)
                #expect(bbr.pacingRate.map { $0 > 0 && $0.isFinite } ?? true)
            }
        }
    }
}

/// STARTUP, DRAIN and the PROBE_BW gain cycle, closed loop through the simulated 100 Mbit/s, 50 ms bottleneck.
@Suite struct BBRStateTests {
    struct Transition {
        let state: BBR.State
        let at: ContinuousClock.Instant
        let round: Int
        let bandwidth: Double
        let impliedInflight: Int
        let bdp: Double?
    }

    static func transitions(seconds: Int64 = 3) -> (states: [Transition], gains: [(Double, ContinuousClock.Instant)], windows: [Int: Int]) {
        var states: [Transition] = []
        var gains: [(Double, ContinuousClock.Instant)] = []
        var windows: [Int: Int] = [:]  // window at the end of each STARTUP round
        let link = CongestionSimulationTests.link(bufferPackets: CongestionSimulationTests.bdpPackets, randomLoss: 0)
        _ = BulkTransfer.run(BBR(limits: limits1200), over: link, for: .seconds(seconds)) { bbr, now, _ in
            if states.last?.state != bbr.state {
                states.append(Transition(state: bbr.state, at: now, round: bbr.roundCount, bandwidth: bbr.bandwidth, impliedInflight: bbr.impliedInflight, bdp: bbr.estimatedBDP))
            }
            if bbr.state == .startup { windows[bbr.roundCount] = bbr.window }
            if bbr.state == .probeBandwidth, gains.last?.0 != bbr.pacingGain {
                gains.append((bbr.pacingGain, now))
            }
        }
        return (states, gains, windows)
    }

    /// STARTUP doubles the window per round trip at first, ends within a dozen round trips with the bandwidth
    /// near the link's, DRAIN then lasts until the implied inflight is down to one BDP.
    @Test func startupGrowthExitAndDrain() {
        let (states, _, windows) = Self.transitions()
        #expect(states.map(\.state) == [.startup, .drain, .probeBandwidth], "\(states.map(\.state))")
        guard states.count == 3 else { return }
        // Rounds 1…4 are window-limited slow-start-like: each at least 1.8× the one before.
        for round in 2...4 {
            let (earlier, later) = (windows[round - 1] ?? 0, windows[round] ?? 0)
            #expect(Double(later) >= 1.8 * Double(earlier), "round \(round): \(earlier) → \(later)")
        }
        let drain = states[1]
        #expect(drain.round <= 14, "STARTUP lasted \(drain.round) rounds")
        #expect(abs(drain.bandwidth - CongestionSimulationTests.bandwidth) / CongestionSimulationTests.bandwidth < 0.1)
        let probe = states[2]
        #expect(probe.bdp.map { Double(probe.impliedInflight) <= $0 } ?? false)
        #expect(probe.at > drain.at && probe.round - drain.round <= 3, "DRAIN lasted \(probe.round - drain.round) rounds")
    }

    /// PROBE_BW cycles 1.25, 0.75, then 1 for six round trips; the 1.25 phase lasts a minimum RTT.
    @Test func gainCycling() {
        let (_, gains, _) = Self.transitions(seconds: 4)
        #expect(gains.count >= 6)
        let pattern = gains.map(\.0)
        for (index, gain) in pattern.enumerated().dropLast() {
            let next = pattern[index + 1]
            let expected: Double = gain == 1.25 ? 0.75 : gain == 0.75 ? 1 : 1.25
            #expect(next == expected, "gain \(gain) followed by \(next) in \(pattern)")
        }
        let probes = gains.indices.dropLast().filter { gains[$0].0 == 1.25 }
        for index in probes {
            let length = gains[index + 1].1 - gains[index].1
            #expect(length > .milliseconds(50) && length < .milliseconds(60), "1.25 phase lasted \(length)")
        }
        // Six cruise round trips: from the end of a 0.75 phase to the next probe, about 6 minimum RTTs.
        let cruises = gains.indices.dropLast().filter { gains[$0].0 == 1 }
        for index in cruises {
            let length = gains[index + 1].1 - gains[index].1
            #expect(length > .milliseconds(300) && length < .milliseconds(330), "cruise lasted \(length)")
        }
    }
}
