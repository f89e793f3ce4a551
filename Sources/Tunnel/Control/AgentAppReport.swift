import Foundation

/// Who may open an app through the gateway (DESIGN.md, "Workspace apps").
public enum SharingLevel: String, Sendable, Codable, CaseIterable {
    case owner, authenticated, `public`
}

/// Who answers cross-origin requests to a subdomain app (Coder's `simple | passthru`).
public enum AppCORSBehavior: String, Sendable, Codable, CaseIterable {
    /// meshgate: only the same user's app origins may call the app, with credentials; the app's own CORS headers
    /// are dropped and preflights never reach it.
    case simple
    /// The app: its CORS headers pass through untouched, and preflights (which carry no credentials) reach it
    /// unauthenticated. For apps that serve other origins on purpose.
    case passthru
}

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
/// `cors` is present only as `"passthru"` (absent means `simple`, which older agents imply too). `healthcheck` is absent (and `health` is `disabled`) for an app without one; `interval` is whole seconds.
public struct AgentAppReport: Sendable, Equatable, Codable {
    public var slug: String
    public var displayName: String
    public var url: String
    public var sharingLevel: SharingLevel
    public var subdomain: Bool
    public var healthcheck: Healthcheck?
    public var health: AppHealth
    /// nil: `simple`.
    public var cors: AppCORSBehavior?

    public struct Healthcheck: Sendable, Equatable, Codable {
        public var url: String
        public var interval: Int64
        public var threshold: Int

        public init(url: String, interval: Int64, threshold: Int) { (self.url, self.interval, self.threshold) = (url, interval, threshold) }
    }

    enum CodingKeys: String, CodingKey {
        case slug, url, subdomain, healthcheck, health, cors
        case displayName = "display_name"
        case sharingLevel = "sharing_level"
    }

    public init(
        slug: String, displayName: String, url: String, sharingLevel: SharingLevel, subdomain: Bool, healthcheck: Healthcheck?, health: AppHealth,
        cors: AppCORSBehavior = .simple
    ) {
        (self.slug, self.displayName, self.url, self.sharingLevel) = (slug, displayName, url, sharingLevel)
        (self.subdomain, self.healthcheck, self.health) = (subdomain, healthcheck, health)
        self.cors = cors == .simple ? nil : cors
    }
}

/// What an agent tells the server about itself: `POST /api/v2/workspaceagents/me/report` (agent token), sent on
/// start and again whenever an app's health changes. The server keeps the latest one.
///
///     {"version": "0.1.0", "apps": [<AgentAppReport>, …]}
public struct AgentReport: Sendable, Equatable, Codable {
    /// The agent software's version, ≤ 64 characters.
    public var version: String
    public var apps: [AgentAppReport]

    public static let maxVersionLength = 64
    /// Far more than any workspace declares; bounds what one agent can make the server store.
    public static let maxApps = 64

    public init(version: String, apps: [AgentAppReport]) { (self.version, self.apps) = (version, apps) }
}
