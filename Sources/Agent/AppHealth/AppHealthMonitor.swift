import Foundation
import Logging
import Synchronization
import Tunnel

/// One app's health changed; the agent sends the server only these (after one full `reports` list).
public struct AppHealthChange: Sendable, Equatable {
    public let slug: String
    public let from: AppHealth
    public let to: AppHealth
    /// Why it is unhealthy ("status 503", the error); nil for other changes.
    public let detail: String?

    public init(slug: String, from: AppHealth, to: AppHealth, detail: String? = nil) {
        (self.slug, self.from, self.to, self.detail) = (slug, from, to, detail)
    }
}

/// Runs every app's health check on `clock`: the first check at once, then one per interval, each bounded by the
/// interval as its timeout, results through `AppHealthState`. Tests inject a clock they advance by hand and a
/// fake `HealthProbe`, so no test waits out a real interval.
///
/// Each app has its own task and its own state; the only shared state is the health snapshot behind a lock,
/// never held across an `await`.
public final class AppHealthMonitor<C: Clock>: Sendable where C.Duration == Duration {
    public let apps: [AgentApp]
    private let probe: any HealthProbe
    private let clock: C
    private let logger: Logger
    private let health: Mutex<[String: AppHealth]>

    /// `apps` must have unique slugs (`AgentApp.unique`).
    public init(apps: [AgentApp], probe: any HealthProbe, clock: C, logger: Logger) {
        assert(Set(apps.map(\.slug)).count == apps.count, "slugs must be unique")
        (self.apps, self.probe, self.clock, self.logger) = (apps, probe, clock, logger)
        health = Mutex(Dictionary(apps.map { ($0.slug, $0.healthCheck == nil ? AppHealth.disabled : .initializing) }, uniquingKeysWith: { first, _ in first }))
    }

    /// Every app with its health now: what the agent reports in full when it (re)connects.
    public var reports: [AgentAppReport] {
        let now = health.withLock { $0 }
        return apps.map { AgentAppReport(app: $0, health: now[$0.slug] ?? .disabled) }
    }

    /// Checks until the calling task is cancelled, then returns. `onChange` is awaited before that app's next
    /// check: a slow consumer delays checks instead of filling a queue.
    public func run(onChange: @escaping @Sendable (AppHealthChange) async -> Void) async {
        await withDiscardingTaskGroup { group in
            for app in apps {
                guard let check = app.healthCheck else { continue }
                group.addTask { await self.watch(app.slug, check, onChange) }
            }
        }
    }

    private func watch(_ slug: String, _ check: AgentApp.HealthCheck, _ onChange: @Sendable (AppHealthChange) async -> Void) async {
        var logger = logger
        logger[metadataKey: LogKeys.appSlug] = "\(slug)"
        var state = AppHealthState<C.Instant>(threshold: check.threshold)
        var deadline = clock.now
        while true {
            let result = await probe.check(url: check.url, timeout: check.interval)
            // A check cut short by shutdown says nothing about the app.
            if Task.isCancelled { return }
            let previous = state.health
            if state.record(result, at: clock.now) {
                let change = AppHealthChange(slug: slug, from: previous, to: state.health, detail: state.health == .unhealthy ? state.lastFailure : nil)
                health.withLock { $0[slug] = change.to }
                logger.log(
                    level: change.to == .unhealthy ? .warning : .info, "app health changed",
                    metadata: [LogKeys.appHealth: "\(change.to.rawValue)", LogKeys.appHealthDetail: "\(change.detail ?? "")"]
                )
                await onChange(change)
            }
            // A fixed schedule; after a slow check, the next one starts at once rather than bunching several.
            deadline = deadline.advanced(by: check.interval)
            let now = clock.now
            if deadline < now { deadline = now }
            do { try await clock.sleep(until: deadline, tolerance: nil) } catch { return }
        }
    }
}
