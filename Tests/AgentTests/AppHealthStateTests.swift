import MeshgateTesting
import Testing
import Tunnel

@testable import Agent

@Suite struct AppHealthStateTests {
    struct ProbeFailed: Error, CustomStringConvertible { var description: String { "connection refused" } }

    /// One check: a status code, or nil for an error; then the health expected and whether it changed.
    typealias Step = (status: Int?, health: AppHealth, changed: Bool)

    static let cases: [(name: String, threshold: Int, steps: [Step])] = [
        ("first success", 3, [(200, .healthy, true)]),
        ("answers below 500 are healthy", 3, [(404, .healthy, true), (302, .healthy, false), (499, .healthy, false)]),
        ("failures before the threshold keep initializing", 3, [(503, .initializing, false), (nil, .initializing, false), (500, .unhealthy, true)]),
        ("a success resets the count", 2, [(200, .healthy, true), (503, .healthy, false), (200, .healthy, false), (503, .healthy, false), (503, .unhealthy, true)]),
        ("one success recovers", 1, [(nil, .unhealthy, true), (200, .healthy, true), (599, .unhealthy, true)]),
        ("unhealthy is reported once", 2, [(500, .initializing, false), (500, .unhealthy, true), (500, .unhealthy, false), (nil, .unhealthy, false)]),
        ("success after initializing failures", 3, [(nil, .initializing, false), (nil, .initializing, false), (204, .healthy, true)]),
    ]

    /// Results in order, one second apart: the health after each and whether `record` said it changed.
    @Test(arguments: cases)
    func transitions(_ name: String, _ threshold: Int, _ steps: [Step]) {
        var state = AppHealthState<MockClock.Instant>(threshold: threshold)
        #expect(state.health == .initializing)
        for (index, step) in steps.enumerated() {
            let at = MockClock.Instant(offset: .seconds(index))
            let result: Result<Int, any Error> = step.status.map { .success($0) } ?? .failure(ProbeFailed())
            let changed = state.record(result, at: at)
            #expect(state.health == step.health, "\(name), step \(index)")
            #expect(changed == step.changed, "\(name), step \(index)")
            if changed { #expect(state.since == at) }
        }
    }

    @Test func failureDetailAndCount() {
        var state = AppHealthState<MockClock.Instant>(threshold: 3)
        state.record(.success(503), at: MockClock.Instant(offset: .seconds(1)))
        state.record(.failure(ProbeFailed()), at: MockClock.Instant(offset: .seconds(2)))
        #expect(state.consecutiveFailures == 2 && state.lastFailure == "connection refused")
        state.record(.success(200), at: MockClock.Instant(offset: .seconds(3)))
        #expect(state.consecutiveFailures == 0 && state.lastFailure == nil && state.lastResultAt == MockClock.Instant(offset: .seconds(3)))
    }

    /// No health check: disabled whatever comes in.
    @Test func disabled() {
        var state = AppHealthState<MockClock.Instant>(threshold: nil)
        #expect(state.health == .disabled)
        let changed = state.record(.success(200), at: MockClock.Instant(offset: .zero))
        #expect(!changed)
        #expect(state.health == .disabled)
    }

    /// A result older than the newest one is ignored rather than undoing it.
    @Test func staleResultIgnored() {
        var state = AppHealthState<MockClock.Instant>(threshold: 1)
        let fresh = state.record(.success(200), at: MockClock.Instant(offset: .seconds(10)))
        let stale = state.record(.success(500), at: MockClock.Instant(offset: .seconds(9)))
        #expect(fresh && !stale)
        #expect(state.health == .healthy)
    }
}
