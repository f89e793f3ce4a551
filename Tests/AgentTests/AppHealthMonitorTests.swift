import Foundation
import Logging
import MeshgateTesting
import Synchronization
import Testing
import Tunnel

@testable import Agent

/// Answers each URL from a script (the last answer repeats) and records when and how it was asked.
final class ScriptedProbe: HealthProbe {
    struct Call: Equatable { var url: String; var timeout: Duration; var at: MockClock.Instant }
    struct Refused: Error, CustomStringConvertible { var description: String { "connection refused" } }

    private let clock: MockClock
    private let scripts: Mutex<[String: [Int?]]>
    private let recorded = Mutex<[Call]>([])

    /// Status codes per URL; nil is an error.
    init(clock: MockClock, scripts: [String: [Int?]]) {
        self.clock = clock
        self.scripts = Mutex(scripts)
    }

    var calls: [Call] { recorded.withLock { $0 } }
    func calls(to url: String) -> [Call] { calls.filter { $0.url == url } }

    func check(url: URL, timeout: Duration) async -> Result<Int, any Error> {
        recorded.withLock { $0.append(Call(url: url.absoluteString, timeout: timeout, at: clock.now)) }
        let status = scripts.withLock { scripts -> Int?? in
            guard var script = scripts[url.absoluteString], let first = script.first else { return .none }
            if script.count > 1 { script.removeFirst() }
            scripts[url.absoluteString] = script
            return .some(first)
        }
        guard let status, let code = status else { return .failure(Refused()) }
        return .success(code)
    }
}

@Suite final class AppHealthMonitorTests: Sendable {
    let clock = MockClock()
    let changes = Mutex<[AppHealthChange]>([])

    func changes(of slug: String) -> [AppHealthChange] { changes.withLock { $0.filter { $0.slug == slug } } }

    /// Polls (real time, bounded) for a condition the code under test makes true without sleeping on `clock`.
    func eventually(within limit: Duration = .seconds(60), _ condition: () -> Bool) async -> Bool {
        let giveUp = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < giveUp else { return false }
            do { try await Task.sleep(for: .milliseconds(1)) } catch { return condition() }
        }
        return true
    }

    /// Advances the clock and waits until every watched app has checked and gone back to sleep.
    func tick(_ seconds: Int, sleepers: Int) async {
        clock.advance(by: .seconds(seconds))
        #expect(await clock.waitForSleepers(sleepers), "apps back asleep after t+\(seconds)s")
    }

    /// Threshold, recovery and only changes reported, on a fixed schedule with the interval as timeout; an app
    /// without a health check is never probed and reports `disabled`.
    @Test func thresholdRecoveryAndOnlyChanges() async throws {
        let apps = try [
            AgentApp(flag: "code=http://127.0.0.1:8080,health=/healthz,interval=5s,threshold=2"),
            AgentApp(flag: "docs=http://127.0.0.1:9000"),
            AgentApp(flag: "db=http://127.0.0.1:7000,health=/ping,interval=10s,threshold=1"),
        ]
        let code = "http://127.0.0.1:8080/healthz", db = "http://127.0.0.1:7000/ping"
        let probe = ScriptedProbe(clock: clock, scripts: [code: [200, 503, 503, 503, 200], db: [nil]])
        let monitor = AppHealthMonitor(apps: apps, probe: probe, clock: clock, logger: Logger(label: "test"))
        #expect(monitor.reports.map(\.health) == [.initializing, .disabled, .initializing])

        let running = Task { await monitor.run { change in self.changes.withLock { $0.append(change) } } }
        #expect(await clock.waitForSleepers(2), "first checks done at once")
        #expect(changes(of: "code") == [AppHealthChange(slug: "code", from: .initializing, to: .healthy)])
        #expect(changes(of: "db") == [AppHealthChange(slug: "db", from: .initializing, to: .unhealthy, detail: "connection refused")])

        await tick(5, sleepers: 2)  // code: 503, one failure of two
        #expect(changes(of: "code").count == 1)
        await tick(5, sleepers: 2)  // code: 503 again → unhealthy; db fails again, already unhealthy
        #expect(changes(of: "code").last == AppHealthChange(slug: "code", from: .healthy, to: .unhealthy, detail: "status 503"))
        await tick(5, sleepers: 2)  // code: 503, still unhealthy: nothing new
        #expect(changes(of: "code").count == 2)
        await tick(5, sleepers: 2)  // code: 200 → healthy
        #expect(changes(of: "code").last == AppHealthChange(slug: "code", from: .unhealthy, to: .healthy))
        #expect(changes(of: "db").count == 1)
        #expect(changes.withLock { $0.count } == 4)

        #expect(probe.calls(to: code).map(\.at.offset) == [0, 5, 10, 15, 20].map { Duration.seconds($0) })
        #expect(probe.calls(to: db).map(\.at.offset) == [0, 10, 20].map { Duration.seconds($0) })
        #expect(Set(probe.calls.map(\.timeout)) == [.seconds(5), .seconds(10)])
        #expect(probe.calls.allSatisfy { $0.url != "http://127.0.0.1:9000" })
        #expect(monitor.reports.map(\.health) == [.healthy, .disabled, .unhealthy])

        running.cancel()
        await running.value
        #expect(clock.sleepers == 0)
    }

    /// A consumer that has not returned holds back that app's next check instead of queueing changes.
    @Test func slowConsumerDelaysChecks() async throws {
        let apps = try [AgentApp(flag: "code=http://127.0.0.1:8080,health=/healthz,interval=5s,threshold=1")]
        let probe = ScriptedProbe(clock: clock, scripts: ["http://127.0.0.1:8080/healthz": [200, 500]])
        let monitor = AppHealthMonitor(apps: apps, probe: probe, clock: clock, logger: Logger(label: "test"))
        let (gate, release) = AsyncStream.makeStream(of: Void.self)
        let running = Task {
            await monitor.run { change in
                self.changes.withLock { $0.append(change) }
                for await _ in gate { break }
            }
        }
        #expect(await eventually { changes.withLock { $0.count } == 1 }, "first change delivered")
        #expect(clock.sleepers == 0, "still in onChange, not yet asleep")
        release.yield()
        #expect(await clock.waitForSleepers(1))
        #expect(probe.calls.count == 1)
        running.cancel()
        await running.value
    }
}
