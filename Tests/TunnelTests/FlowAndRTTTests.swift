import Testing
import Tunnel

@Suite struct RTTEstimatorTests {
    /// RFC 9002 §5.3 by hand: the first sample sets everything; later ones move the averages by 1/8 and 1/4,
    /// with the peer's ACK delay subtracted only when that stays above the minimum.
    @Test func followsRFC9002() {
        var rtt = RTTEstimator()
        #expect(rtt.smoothed == .milliseconds(333) && !rtt.hasSample)
        rtt.add(sample: .milliseconds(100), ackDelay: .milliseconds(10), maxAckDelay: .milliseconds(25))
        #expect(rtt.minimum == .milliseconds(100) && rtt.smoothed == .milliseconds(100) && rtt.variation == .milliseconds(50))
        rtt.add(sample: .milliseconds(120), ackDelay: .milliseconds(10), maxAckDelay: .milliseconds(25))
        // adjusted 110: variation (3·50 + 10)/4 = 40, smoothed (7·100 + 110)/8 = 101.25
        #expect(rtt.variation == .milliseconds(40) && rtt.smoothed == .microseconds(101_250))
        // PTO = 101.25 + 4·40 + 25 = 286.25 ms; doubled per backoff.
        #expect(rtt.probeTimeout(maxAckDelay: .milliseconds(25)) == .microseconds(286_250))
        #expect(rtt.probeTimeout(maxAckDelay: .milliseconds(25), backoff: 2) == .microseconds(1_145_000))
        // A delay that would take the sample below the minimum is not subtracted.
        rtt.add(sample: .milliseconds(105), ackDelay: .milliseconds(20), maxAckDelay: .milliseconds(25))
        #expect(rtt.minimum == .milliseconds(100) && rtt.latest == .milliseconds(105))
        // Loss delay: 9/8 of the larger of latest (105) and smoothed (101.72) = 118.125 ms.
        #expect(rtt.lossDelay == .microseconds(118_125))
    }
}

@Suite struct FlowControlTests {
    /// The sender stops at the limit, reports blocked once per limit, and only ever raises the limit.
    @Test func sendCredit() {
        var credit = SendCredit(limit: 1000)
        credit.consume(1000)
        #expect(credit.available == 0)
        #expect(credit.shouldReportBlocked() && !credit.shouldReportBlocked())
        credit.raise(to: 500)  // stale
        #expect(credit.limit == 1000)
        credit.raise(to: 3000)
        #expect(credit.available == 2000 && !credit.shouldReportBlocked())
    }

    /// The receiver refuses data past its limit and advertises more once half the window is read.
    @Test func receiveCredit() throws {
        var credit = ReceiveCredit(window: 1000)
        try credit.received(upTo: 1000)
        #expect(throws: FlowControlError.limitExceeded(offset: 1001, limit: 1000)) { try credit.received(upTo: 1001) }
        #expect(credit.consume(400) == nil)
        #expect(credit.consume(100) == 1500)
        try credit.received(upTo: 1500)
        #expect(credit.consume(100) == nil)
    }
}
