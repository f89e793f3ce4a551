import Testing
import Tunnel

@Suite struct LossDetectorTests {
    let start = ContinuousClock.now

    func detector(sending count: UInt64, every gap: Duration = .milliseconds(1)) -> LossDetector<String> {
        var detector = LossDetector<String>()
        for number in 0..<count {
            detector.sent(number, at: start + gap * Int(number), bytes: 1200, ackEliciting: true, payload: "p\(number)")
        }
        return detector
    }

    /// Packet threshold: acknowledging packet 5 makes 0-2 lost (3 or more behind) but not 3 or 4, which are
    /// lost later by time; the RTT sample comes from the largest acknowledged.
    @Test func packetThenTimeThreshold() {
        var detector = detector(sending: 6)
        var rtt = RTTEstimator()
        rtt.add(sample: .milliseconds(20), ackDelay: .zero, maxAckDelay: .zero)
        let now = start + .milliseconds(25)
        let result = detector.acknowledge(AckFrame(ranges: [5...5], delay: 0), now: now, rtt: rtt)
        #expect(result.acknowledged.map(\.number) == [5])
        #expect(result.lost.map(\.payload) == ["p0", "p1", "p2"])
        #expect(result.rttSample == .milliseconds(20))
        #expect(detector.bytesInFlight == 2 * 1200)
        // 3 and 4 go once 9/8 × 20 ms = 22.5 ms have passed since they were sent.
        let deadline = detector.lossTime(lossDelay: rtt.lossDelay)
        #expect(deadline == start + .milliseconds(3) + .microseconds(22_500))
        #expect(detector.detectLost(now: deadline! - .microseconds(1), lossDelay: rtt.lossDelay).isEmpty)
        #expect(detector.detectLost(now: deadline!, lossDelay: rtt.lossDelay).map(\.number) == [3])
        #expect(detector.outstanding.map(\.number) == [4] && detector.bytesInFlight == 1200)
    }

    /// Acknowledging with gaps removes exactly the ranges; no RTT sample when the largest was acked before.
    @Test func rangesAndRepeatedAcks() {
        var detector = detector(sending: 10)
        let rtt = RTTEstimator()
        let first = detector.acknowledge(AckFrame(ranges: [8...9, 4...5], delay: 0), now: start + .milliseconds(10), rtt: rtt)
        #expect(first.acknowledged.map(\.number) == [4, 5, 8, 9])
        #expect(first.lost.map(\.number) == [0, 1, 2, 3, 6, 7].filter { 9 - $0 >= 3 })
        let again = detector.acknowledge(AckFrame(ranges: [8...9], delay: 0), now: start + .milliseconds(11), rtt: rtt)
        #expect(again.acknowledged.isEmpty && again.rttSample == nil)
    }
}
