import Foundation
import Tunnel

extension AgentAppReport {
    /// The report for `app` in its current `health`.
    public init(app: AgentApp, health: AppHealth) {
        self.init(
            slug: app.slug, displayName: app.displayName, url: app.url.absoluteString, sharingLevel: app.sharingLevel, subdomain: app.subdomain,
            healthcheck: app.healthCheck.map { Healthcheck(url: $0.url.absoluteString, interval: $0.interval.components.seconds, threshold: $0.threshold) },
            health: health, cors: app.cors
        )
    }
}
