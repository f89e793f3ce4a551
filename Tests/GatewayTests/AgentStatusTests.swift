import Foundation
import Gateway
import Testing

/// The status is a pure function of the agent's creation, its connection times, a live socket, now and the timeout.
@Suite struct AgentStatusTests {
    let clock = ManualWallClock()
    let timeout: TimeInterval = 120

    func status(createdAgo age: TimeInterval, _ times: AgentConnectionTimes = .init(), live: Bool = false) -> AgentStatus {
        AgentStatus(createdAt: clock.now - age, connection: times, live: live, now: clock.now, timeout: timeout)
    }

    @Test func neverConnectedIsConnectingUntilTheTimeout() {
        #expect(status(createdAgo: 0) == .connecting)
        #expect(status(createdAgo: 119.9) == .connecting)
        #expect(status(createdAgo: 120) == .timeout)
        #expect(status(createdAgo: 86_400) == .timeout)
    }

    @Test func aLiveSocketIsConnectedWhateverTheHistory() {
        #expect(status(createdAgo: 1, live: true) == .connected)
        #expect(status(createdAgo: 500, live: true) == .connected)
        let reconnected = AgentConnectionTimes(firstConnectedAt: clock.now - 400, lastConnectedAt: clock.now - 10, disconnectedAt: clock.now - 20)
        #expect(status(createdAgo: 500, reconnected, live: true) == .connected)
    }

    /// Once connected, an agent never goes back to connecting or timeout, however long ago that was.
    @Test func connectedBeforeAndNoSocketNowIsDisconnected() {
        let times = AgentConnectionTimes(firstConnectedAt: clock.now - 400, lastConnectedAt: clock.now - 300, disconnectedAt: clock.now - 200)
        #expect(status(createdAgo: 500, times) == .disconnected)
        // A restart of the server missed the end of the socket: no disconnection time, still disconnected.
        #expect(status(createdAgo: 10, AgentConnectionTimes(firstConnectedAt: clock.now - 5, lastConnectedAt: clock.now - 5)) == .disconnected)
    }

    @Test func lastSeenIsNowWhileConnectedElseTheLatestTimeKnown() {
        let now = clock.now
        let times = AgentConnectionTimes(firstConnectedAt: now - 400, lastConnectedAt: now - 300, disconnectedAt: now - 200)
        #expect(times.lastSeen(live: true, now: now) == now)
        #expect(times.lastSeen(live: false, now: now) == now - 200)
        #expect(AgentConnectionTimes(firstConnectedAt: now - 5, lastConnectedAt: now - 5).lastSeen(live: false, now: now) == now - 5)
        #expect(AgentConnectionTimes().lastSeen(live: false, now: now) == nil)
    }
}
