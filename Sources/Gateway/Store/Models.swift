import Foundation
import Tunnel

/// A person who signs in. The first user created is the deployment's owner.
public struct User: Sendable, Equatable, Codable {
    public enum Role: String, Sendable, Codable { case owner, member }
    public var id: UUID
    public var email: String
    public var username: String
    public var role: Role
    /// argon2id string in libsodium's encoded form (algorithm, parameters and salt included).
    public var passwordHash: String
    public var createdAt: Date

    public init(id: UUID = UUID(), email: String, username: String, role: Role, passwordHash: String, createdAt: Date) {
        (self.id, self.email, self.username, self.role, self.passwordHash, self.createdAt) =
            (id, email, username, role, passwordHash, createdAt)
    }
}

/// A session or API token. Only the SHA-256 of the secret half is stored; see `SecretToken`.
public struct APIKey: Sendable, Equatable {
    public enum LoginType: String, Sendable, Codable {
        case password, token
        /// Minted by the cross-domain app login (`/api/v2/applications/auth-redirect`): opens workspace apps, never the API.
        case appConnect = "app_connect"
    }
    public var id: String
    public var hashedSecret: Data
    public var userID: UUID
    public var loginType: LoginType
    public var name: String?
    public var createdAt: Date
    public var expiresAt: Date

    public init(id: String, hashedSecret: Data, userID: UUID, loginType: LoginType, name: String?, createdAt: Date, expiresAt: Date) {
        (self.id, self.hashedSecret, self.userID, self.loginType, self.name, self.createdAt, self.expiresAt) =
            (id, hashedSecret, userID, loginType, name, createdAt, expiresAt)
    }
}

/// A developer's workspace, owned by one user.
public struct Workspace: Sendable, Equatable {
    public var id: UUID
    public var ownerID: UUID
    public var name: String
    public var createdAt: Date

    public init(id: UUID = UUID(), ownerID: UUID, name: String, createdAt: Date) {
        (self.id, self.ownerID, self.name, self.createdAt) = (id, ownerID, name, createdAt)
    }
}

/// The process inside a workspace that dials out to the gateway. Authenticates with its own token.
public struct Agent: Sendable, Equatable {
    public var id: UUID
    public var workspaceID: UUID
    public var name: String
    /// SHA-256 of the agent token's secret half; the token id is the agent's `tokenID`.
    public var tokenID: String
    public var hashedTokenSecret: Data
    public var createdAt: Date
    /// When its coordinator sockets came and went; recorded by `AgentPresence`.
    public var connection: AgentConnectionTimes
    /// The latest `POST /api/v2/workspaceagents/me/report`; nil until the agent sends one.
    public var report: AgentReport?

    public init(
        id: UUID = UUID(), workspaceID: UUID, name: String, tokenID: String, hashedTokenSecret: Data, createdAt: Date,
        connection: AgentConnectionTimes = .init(), report: AgentReport? = nil
    ) {
        (self.id, self.workspaceID, self.name, self.tokenID, self.hashedTokenSecret, self.createdAt) =
            (id, workspaceID, name, tokenID, hashedTokenSecret, createdAt)
        (self.connection, self.report) = (connection, report)
    }
}

/// When an agent's coordinator sockets came and went, as this deployment saw them; nil: not yet.
public struct AgentConnectionTimes: Sendable, Equatable {
    public var firstConnectedAt: Date?
    public var lastConnectedAt: Date?
    /// When its last socket ended; kept while it is connected again (the previous disconnection).
    public var disconnectedAt: Date?

    public init(firstConnectedAt: Date? = nil, lastConnectedAt: Date? = nil, disconnectedAt: Date? = nil) {
        (self.firstConnectedAt, self.lastConnectedAt, self.disconnectedAt) = (firstConnectedAt, lastConnectedAt, disconnectedAt)
    }
}
