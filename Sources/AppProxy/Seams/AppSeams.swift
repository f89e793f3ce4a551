import Foundation
import Tunnel

/// Who asks for an app, as the deployment's session layer proved it. Nil (anonymous) reaches public apps only.
public struct AppRequester: Sendable, Equatable {
    public var userID: UUID
    public var username: String
    /// Site owners may open every app; sharing levels do not bind them.
    public var isSiteOwner: Bool

    public init(userID: UUID, username: String, isSiteOwner: Bool) { (self.userID, self.username, self.isSiteOwner) = (userID, username, isSiteOwner) }
}

/// An app found for an `AppRequest`: everything authorizing and proxying need, and nothing they must look up.
public struct ResolvedApp: Sendable, Equatable {
    public var request: AppRequest
    public var ownerID: UUID
    public var workspaceID: UUID
    public var agentID: UUID
    public var agentName: String
    /// Whether the agent has a live coordinator session; proxying to one without is a "workspace offline" page.
    public var agentConnected: Bool
    /// Where the agent finds the app: a port on its 127.0.0.1, TLS or not, and the app URL's own path prefix
    /// (an app declared as `http://127.0.0.1:8080/ui` gets `/ui` before every request path).
    public var port: UInt16
    public var https: Bool
    public var pathPrefix: String
    public var sharingLevel: SharingLevel
    public var displayName: String
    /// The agent's last word on the app's health (nil for port URLs, which have none).
    public var health: AppHealth?
    /// Who answers cross-origin requests (subdomain apps only; port URLs are `simple`).
    public var cors: AppCORSBehavior

    public init(
        request: AppRequest, ownerID: UUID, workspaceID: UUID, agentID: UUID, agentName: String, agentConnected: Bool, port: UInt16, https: Bool,
        pathPrefix: String, sharingLevel: SharingLevel, displayName: String, health: AppHealth?, cors: AppCORSBehavior = .simple
    ) {
        self.cors = cors
        (self.request, self.ownerID, self.workspaceID, self.agentID, self.agentName) = (request, ownerID, workspaceID, agentID, agentName)
        (self.agentConnected, self.port, self.https, self.pathPrefix) = (agentConnected, port, https, pathPrefix)
        (self.sharingLevel, self.displayName, self.health) = (sharingLevel, displayName, health)
    }
}

/// Why an `AppRequest` names no app; each becomes a page a person can act on.
public enum AppResolutionFailure: Error, Sendable, Equatable {
    /// No such user, workspace, agent or app (one answer for all, so names are not probed).
    case notFound
    /// The workspace has several agents and the URL names none.
    case ambiguousAgent([String])
}

/// Step one: which app an `AppRequest` names. The primary answers from its store and the coordinator.
public protocol AppResolver: Sendable {
    func resolve(_ request: AppRequest) async throws -> Result<ResolvedApp, AppResolutionFailure>
}

/// The session behind a credential (cookie or header), for requests that carry no valid signed app token.
public protocol AppSessionAuthenticator: Sendable {
    func requester(presenting credential: String) async throws -> AppRequester?
}
