/// Which app a request names, as parsed from its URL, before anything is looked up (the resolve → authorize →
/// proxy split: this is the input to resolve).
public struct AppRequest: Sendable, Equatable {
    public enum AccessMethod: String, Sendable, Equatable, Codable {
        /// `/@{user}/{workspace}[.{agent}]/apps/{slug}/…` on the access URL's host.
        case path
        /// `{slug}--{agent}--{workspace}--{user}` or `{port}[s]--…` under the wildcard host.
        case subdomain
    }

    /// What the request names inside the agent: an app by slug, or a port (HTTPS upstream with `s`).
    public enum Target: Sendable, Equatable, Hashable {
        case app(slug: String)
        case port(UInt16, https: Bool)
    }

    public var accessMethod: AccessMethod
    public var user: String
    public var workspace: String
    /// Absent when the workspace's only agent is meant.
    public var agent: String?
    public var target: Target
    /// The path prefix every URL of this app shares (`/@alice/dev/apps/code/`, or `/` for subdomain apps): the
    /// app cookie's Path, and what is stripped before the request goes upstream.
    public var basePath: String

    public init(accessMethod: AccessMethod, user: String, workspace: String, agent: String?, target: Target, basePath: String) {
        (self.accessMethod, self.user, self.workspace, self.agent, self.target, self.basePath) = (accessMethod, user, workspace, agent, target, basePath)
    }

    /// Ports below this are meshgate's own services in Coder's numbering (ssh, pty, speed test, API): never an app.
    public static let minimumPort: UInt16 = 9
}
