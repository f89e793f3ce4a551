import Testing
import Tunnel

/// One bottleneck link: a drop-tail FIFO served at a fixed rate, a fixed propagation delay, and random loss
/// on the wire. Every datagram is the same size, so the queue is a count.
struct Bottleneck {
    /// Time to put one datagram on the wire.
    let serviceTime: Duration
    /// The round trip without queueing.
    let propagation: Duration
    let bufferPackets: Int
    let randomLoss: Double
    /// The test target's SplitMix: the same losses on every run, platform and Swift version.
    var rng: SplitMix
    /// When the last accepted datagram finishes leaving the queue.
    var freeAt: ContinuousClock.Instant

    /// When the ACK of a datagram sent at `now` reaches the sender; nil if it is dropped (queue full or lost).
    mutating func send(at now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        let backlog = freeAt > now ? ((freeAt - now) / serviceTime).rounded(.up) : 0
        let uniform = Double(rng.next() >> 11) / Double(UInt64(1) << 53)  // [0, 1) from the top 53 bits
        guard backlog < Double(bufferPackets), uniform >= randomLoss else { return nil }
        freeAt = max(freeAt, now) + serviceTime
        return freeAt + propagation
    }
}

/// A sender with unlimited data over a `Bottleneck`, paced, with an ACK per datagram and RFC 9002's
/// packet and time thresholds for loss (the link never reorders, so every gap below an ACK is a drop).
struct BulkTransfer {
    struct Packet {
        let sentAt: ContinuousClock.Instant
        let ackAt: ContinuousClock.Instant?
        var resolved = false
    }

    struct Report {
        var deliveredBytes = 0
        /// Congestion events that lowered the window (one per recovery period).
        var reductions = 0
        var timeouts = 0
        var lostPackets = 0
        var sentPackets = 0
    }

    static let datagram = 1200

    static func run(_ algorithm: CongestionAlgorithm, over link: Bottleneck, for duration: Duration) -> Report {
        run(algorithm.makeController(limits: CongestionLimits(maxDatagramSize: datagram)), over: link, for: duration)
    }

    /// `observe` sees the controller after every ACK, with the report so far.
    static func run<Controller: CongestionController>(
        _ controller: Controller, over link: Bottleneck, for duration: Duration,
        observe: (Controller, ContinuousClock.Instant, Report) -> Void = { _, _, _ in }
    ) -> Report {
        var link = link
        var controller = controller
        var pacer = Pacer(limits: CongestionLimits(maxDatagramSize: datagram))
        var rtt = RTTEstimator()
        var report = Report()
        var packets: [Packet] = []
        var ackCursor = 0  // the next packet whose ACK may come (dropped ones are skipped)
        var lossCursor = 0  // the oldest packet neither acknowledged nor declared lost
        var bytesInFlight = 0
        var now = link.freeAt
        var lastProgress = now
        let end = now + duration

        while now < end {
            while ackCursor < packets.count, packets[ackCursor].ackAt == nil { ackCursor += 1 }
            let nextAck = ackCursor < packets.count ? packets[ackCursor].ackAt : nil
            let canSend = bytesInFlight + datagram <= controller.window
            let sendAt = canSend ? pacer.nextSendTime(bytes: datagram, now: now, window: controller.window, rtt: rtt, rate: controller.pacingRate) ?? now : nil

            if let nextAck, sendAt.map({ nextAck <= $0 }) ?? true {
                now = nextAck
                packets[ackCursor].resolved = true
                let sentAt = packets[ackCursor].sentAt
                bytesInFlight -= datagram
                report.deliveredBytes += datagram
                lastProgress = now
                rtt.add(sample: now - sentAt, ackDelay: .zero, maxAckDelay: .zero)
                controller.acknowledged(bytes: datagram, sentAt: sentAt, now: now, rtt: rtt, appLimited: false)
                // Anything unresolved below the acknowledged packet was dropped; declare it lost once 3 packets
                // or 9/8 RTT behind (RFC 9002 §6.1), oldest first.
                var newestLost: ContinuousClock.Instant?
                while lossCursor < ackCursor {
                    if packets[lossCursor].resolved {
                        lossCursor += 1
                        continue
                    }
                    guard ackCursor - lossCursor >= 3 || now - packets[lossCursor].sentAt >= rtt.lossDelay else { break }
                    packets[lossCursor].resolved = true
                    bytesInFlight -= datagram
                    newestLost = packets[lossCursor].sentAt
                    controller.lost(bytes: datagram, sentAt: packets[lossCursor].sentAt, now: now)
                    report.lostPackets += 1
                    lossCursor += 1
                }
                if let newestLost {
                    let before = controller.window
                    controller.congestionEvent(sentAt: newestLost, now: now)
                    if controller.window < before { report.reductions += 1 }
                }
                ackCursor += 1
                observe(controller, now, report)
            } else if let sendAt {
                now = sendAt
                controller.sent(bytes: datagram, now: now)
                pacer.sent(bytes: datagram, now: now, window: controller.window, rtt: rtt, rate: controller.pacingRate)
                report.sentPackets += 1
                packets.append(Packet(sentAt: now, ackAt: link.send(at: now)))
                bytesInFlight += datagram
            } else {
                // The window is full and every packet in it was dropped: a probe timeout finds them lost.
                now = max(now, lastProgress + rtt.probeTimeout(maxAckDelay: .zero))
                lastProgress = now
                report.timeouts += 1
                let newest = packets.last!.sentAt
                for index in lossCursor..<packets.count where !packets[index].resolved {
                    packets[index].resolved = true
                    controller.lost(bytes: datagram, sentAt: packets[index].sentAt, now: now)
                    report.lostPackets += 1
                }
                (lossCursor, ackCursor, bytesInFlight) = (packets.count, packets.count, 0)
                controller.congestionEvent(sentAt: newest, now: now)
            }
        }
        return report
    }
}

@Suite struct CongestionSimulationTests {
    /// 100 Mbit/s in bytes per second.
    static let bandwidth = 100_000_000.0 / 8
    /// One bandwidth-delay product at 50 ms: 520 datagrams.
    static let bdpPackets = Int(bandwidth * 0.05) / BulkTransfer.datagram

    static func link(bufferPackets: Int, randomLoss: Double) -> Bottleneck {
        Bottleneck(
            serviceTime: .seconds(Double(BulkTransfer.datagram) / bandwidth), propagation: .milliseconds(50),
            bufferPackets: bufferPackets, randomLoss: randomLoss, rng: SplitMix(seed: 42), freeAt: .now)
    }

    /// 100 Mbit/s, 50 ms, a BDP-sized buffer (520 datagrams), random loss, 30 simulated seconds.
    ///
    /// Random loss caps any loss-based controller near Mathis' bound, MSS/RTT × √(3/2)/√p: at 0.1 % that is
    /// 7.4 % of this link, so "keeps the link busy" is only asked at 0.001 % (bound 74 %). There CUBIC,
    /// which regains its window in seconds instead of one datagram per round trip, must fill the link and
    /// deliver at least as much as NewReno; at higher loss it sits in its Reno-friendly region and both must
    /// still reach the bound.
    @Test(arguments: [(0.000_01, 0.75, 0.95), (0.000_1, 0.30, 0.40), (0.001, 0.08, 0.08)])
    func bulkTransferOverABottleneck(loss: Double, newRenoAtLeast: Double, cubicAtLeast: Double) {
        let bandwidth = Self.bandwidth
        let link = Self.link(bufferPackets: Self.bdpPackets, randomLoss: loss)
        let capacity = bandwidth * 30
        let mathis = Double(BulkTransfer.datagram) / 0.05 * (1.5 / loss).squareRoot() / bandwidth
        let newReno = BulkTransfer.run(.newReno, over: link, for: .seconds(30))
        let cubic = BulkTransfer.run(.cubic, over: link, for: .seconds(30))
        let (newRenoShare, cubicShare) = (Double(newReno.deliveredBytes) / capacity, Double(cubic.deliveredBytes) / capacity)
        #expect(newRenoShare >= newRenoAtLeast && newRenoShare >= 0.8 * min(mathis, 1), "NewReno: \(newReno)")
        #expect(cubicShare >= cubicAtLeast && cubicShare >= 0.8 * min(mathis, 1), "CUBIC: \(cubic)")
        #expect(cubic.deliveredBytes >= newReno.deliveredBytes)
        // Losses did happen and were recovered from by ACKs, not by timeouts.
        #expect(newReno.reductions >= 3 && cubic.reductions >= 3 && newReno.timeouts == 0 && cubic.timeouts == 0)
    }

    /// The case: 1 % random loss at 50 ms. CUBIC sits at Mathis' bound (2.4 Mbit/s here); BBR keeps
    /// the link busy because loss is not in its model. The loss guard may cap STARTUP's real overflow of the
    /// buffer (2.885 × BDP in flight against BDP + buffer = 2 × BDP), but once that has been probed away the
    /// random loss (1 % ≪ 10 %) never sets it again.
    @Test func bbrThroughOnePercentRandomLoss() {
        let link = Self.link(bufferPackets: Self.bdpPackets, randomLoss: 0.01)
        let cubic = BulkTransfer.run(.cubic, over: link, for: .seconds(30))
        let start = link.freeAt
        var cappedLate = 0
        let bbr = BulkTransfer.run(BBR(limits: limits1200), over: link, for: .seconds(30)) { controller, now, _ in
            if now - start > .seconds(3), controller.inflightCap != nil { cappedLate += 1 }
        }
        let share = Double(bbr.deliveredBytes) / (Self.bandwidth * 30)
        #expect(bbr.deliveredBytes >= 5 * cubic.deliveredBytes, "BBR \(bbr), CUBIC \(cubic)")
        #expect(share >= 0.5, "BBR delivered \(share) of the link: \(bbr)")
        #expect(cappedLate == 0 && bbr.timeouts == 0, "capped at \(cappedLate) ACKs after 3 s")
    }

    /// A shallow buffer (30 datagrams, 6 % of the BDP) and no random loss: STARTUP and the 1.25 probes overflow
    /// it, but after the first 5 s the flow must not run the queue into overflow round after round.
    @Test func bbrShallowBufferKeepsLossLow() {
        let link = Self.link(bufferPackets: 30, randomLoss: 0)
        var atFiveSeconds: BulkTransfer.Report?
        let start = link.freeAt
        let bbr = BulkTransfer.run(BBR(limits: limits1200), over: link, for: .seconds(30)) { _, now, report in
            if atFiveSeconds == nil, now - start >= .seconds(5) { atFiveSeconds = report }
        }
        let early = atFiveSeconds ?? BulkTransfer.Report()
        let steadyLoss = Double(bbr.lostPackets - early.lostPackets) / Double(bbr.sentPackets - early.sentPackets)
        let share = Double(bbr.deliveredBytes) / (Self.bandwidth * 30)
        #expect(steadyLoss <= 0.02, "steady-state loss \(steadyLoss): \(bbr), first 5 s \(early)")
        #expect(share >= 0.7, "BBR delivered \(share) of the link: \(bbr)")
    }
}
