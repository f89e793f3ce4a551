import Foundation
import Tunnel

/// Proof, for one minute, that a user may open one app: the fast path of app requests. While the token in the app
/// cookie is valid, neither the session nor the app is looked up again; `upstream` says where the agent serves it.
///
/// It is bound to the exact `AppRequest` it was issued for (access method, base path, user, workspace, agent,
/// target), so a token for one app never opens another, even under the same cookie path.
public struct SignedAppToken: Sendable, Equatable {
    /// Where the agent finds the app: the `ResolvedApp` fields proxying needs.
    public struct Upstream: Sendable, Equatable {
        public var port: UInt16
        public var https: Bool
        public var pathPrefix: String
        /// In the token because the fast path must know it without the store; absent in the claim means simple.
        public var cors: AppCORSBehavior

        public init(port: UInt16, https: Bool, pathPrefix: String, cors: AppCORSBehavior = .simple) {
            (self.port, self.https, self.pathPrefix, self.cors) = (port, https, pathPrefix, cors)
        }
    }

    public var request: AppRequest
    /// The user who was allowed in (public apps need no token, so there always is one).
    public var userID: UUID
    public var workspaceID: UUID
    public var agentID: UUID
    public var upstream: Upstream
    /// Whole seconds: JWT's NumericDate.
    public var expiry: Date

    public static let lifetime: TimeInterval = 60

    public init(request: AppRequest, userID: UUID, workspaceID: UUID, agentID: UUID, upstream: Upstream, expiry: Date) {
        (self.request, self.userID, self.workspaceID, self.agentID, self.upstream) = (request, userID, workspaceID, agentID, upstream)
        self.expiry = Date(timeIntervalSince1970: expiry.timeIntervalSince1970.rounded(.down))
    }

    /// The token for `app` after `AppAccess` allowed `userID` in, expiring `lifetime` after `now`.
    public init(app: ResolvedApp, userID: UUID, now: Date) {
        self.init(
            request: app.request, userID: userID, workspaceID: app.workspaceID, agentID: app.agentID,
            upstream: Upstream(port: app.port, https: app.https, pathPrefix: app.pathPrefix, cors: app.cors), expiry: now.addingTimeInterval(Self.lifetime)
        )
    }
}

// The JWS payload. Snake-case keys like the rest of the API; UUIDs in lower case; the target as a tagged object so a
// slug that looks like a number is never read as a port.
extension SignedAppToken: Codable {
    private enum CodingKeys: String, CodingKey {
        case request, upstream, userID = "user_id", workspaceID = "workspace_id", agentID = "agent_id", expiry = "exp"
    }
    private enum RequestKeys: String, CodingKey {
        case accessMethod = "access_method", basePath = "base_path", user, workspace, agent, target
    }
    private enum TargetKeys: String, CodingKey { case kind, slug, port, https }
    private enum UpstreamKeys: String, CodingKey { case port, https, pathPrefix = "path_prefix", cors }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let request = try container.nestedContainer(keyedBy: RequestKeys.self, forKey: .request)
        let target = try request.nestedContainer(keyedBy: TargetKeys.self, forKey: .target)
        let decodedTarget: AppRequest.Target
        switch try target.decode(String.self, forKey: .kind) {
        case "app": decodedTarget = .app(slug: try target.decode(String.self, forKey: .slug))
        case "port": decodedTarget = .port(try target.decode(UInt16.self, forKey: .port), https: try target.decode(Bool.self, forKey: .https))
        default: throw DecodingError.dataCorruptedError(forKey: .kind, in: target, debugDescription: "unknown target kind")
        }
        let upstream = try container.nestedContainer(keyedBy: UpstreamKeys.self, forKey: .upstream)
        self.init(
            request: AppRequest(
                accessMethod: try request.decode(AppRequest.AccessMethod.self, forKey: .accessMethod),
                user: try request.decode(String.self, forKey: .user), workspace: try request.decode(String.self, forKey: .workspace),
                agent: try request.decodeIfPresent(String.self, forKey: .agent), target: decodedTarget,
                basePath: try request.decode(String.self, forKey: .basePath)
            ),
            userID: try Self.uuid(container, .userID), workspaceID: try Self.uuid(container, .workspaceID), agentID: try Self.uuid(container, .agentID),
            upstream: Upstream(
                port: try upstream.decode(UInt16.self, forKey: .port), https: try upstream.decode(Bool.self, forKey: .https),
                pathPrefix: try upstream.decode(String.self, forKey: .pathPrefix),
                cors: try upstream.decodeIfPresent(AppCORSBehavior.self, forKey: .cors) ?? .simple
            ),
            expiry: Date(timeIntervalSince1970: TimeInterval(try container.decode(Int64.self, forKey: .expiry)))
        )
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        var request = container.nestedContainer(keyedBy: RequestKeys.self, forKey: .request)
        try request.encode(self.request.accessMethod, forKey: .accessMethod)
        try request.encode(self.request.basePath, forKey: .basePath)
        try request.encode(self.request.user, forKey: .user)
        try request.encode(self.request.workspace, forKey: .workspace)
        try request.encodeIfPresent(self.request.agent, forKey: .agent)
        var target = request.nestedContainer(keyedBy: TargetKeys.self, forKey: .target)
        switch self.request.target {
        case .app(let slug):
            try target.encode("app", forKey: .kind)
            try target.encode(slug, forKey: .slug)
        case .port(let port, let https):
            try target.encode("port", forKey: .kind)
            try target.encode(port, forKey: .port)
            try target.encode(https, forKey: .https)
        }
        var upstream = container.nestedContainer(keyedBy: UpstreamKeys.self, forKey: .upstream)
        try upstream.encode(self.upstream.port, forKey: .port)
        try upstream.encode(self.upstream.https, forKey: .https)
        try upstream.encode(self.upstream.pathPrefix, forKey: .pathPrefix)
        if self.upstream.cors != .simple { try upstream.encode(self.upstream.cors, forKey: .cors) }
        try container.encode(userID.uuidString.lowercased(), forKey: .userID)
        try container.encode(workspaceID.uuidString.lowercased(), forKey: .workspaceID)
        try container.encode(agentID.uuidString.lowercased(), forKey: .agentID)
        // Clamped so no expiry, however odd, can trap the conversion.
        let seconds = expiry.timeIntervalSince1970
        try container.encode(seconds.isFinite ? Int64(max(min(seconds, 1e15), -1e15)) : 0, forKey: .expiry)
    }

    private static func uuid(_ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> UUID {
        guard let uuid = UUID(uuidString: try container.decode(String.self, forKey: key)) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "not a UUID")
        }
        return uuid
    }
}
