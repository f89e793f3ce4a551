import Foundation

/// An app's health as the agent reports it (Coder's `disabled | initializing | healthy | unhealthy`).
public enum AppHealth: String, Sendable, Codable, CaseIterable {
    /// No health check declared.
    case disabled
    /// Declared, no result yet.
    case initializing
    case healthy
    case unhealthy
}

/// The JSON an agent sends the server for one app. Keys are snake_case, spelled out here rather than left to an
/// encoder's key strategy, so the wire shape cannot change with the encoder's settings:
///
///     {"slug": "code", "display_name": "VS Code", "url": "http://127.0.0.1:8080", "sharing_level": "owner",
///      "subdomain": false, "healthcheck": {"url": "http://127.0.0.1:8080/healthz", "interval": 5, "threshold": 3},
///      "health": "initializing"}
///
/// `healthcheck` is absent (and `health` is `disabled`) for an app without one; `interval` is whole seconds.
public struct AgentAppReport: Sendable, Equatable, Codable {
    public var slug: String
    public var displayName: String
    public var url: String
    public var sharingLevel: SharingLevel
    public var subdomain: Bool
    public var healthcheck: Healthcheck?
    public var health: AppHealth

    public struct Healthcheck: Sendable, Equatable, Codable {
        public var url: String
        public var interval: Int64
        public var threshold: Int
    }

    enum CodingKeys: String, CodingKey {
        case slug, url, subdomain, healthcheck, health
        case displayName = "display_name"
        case sharingLevel = "sharing_level"
    }

    public init(app: AgentApp, health: AppHealth) {
        (slug, displayName, url) = (app.slug, app.displayName, app.url.absoluteString)
        (sharingLevel, subdomain, self.health) = (app.sharingLevel, app.subdomain, health)
        healthcheck = app.healthCheck.map {
            Healthcheck(url: $0.url.absoluteString, interval: $0.interval.components.seconds, threshold: $0.threshold)
        }
    }
}
