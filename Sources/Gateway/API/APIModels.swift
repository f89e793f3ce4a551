import Foundation
import Hummingbird
import Tunnel

// Request and response bodies of /api/v2. Keys are snake_case on the wire (see `APIJSON`).

struct CreateUserRequest: Decodable {
    let email: String
    let username: String
    let password: String

    func validate() throws {
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard email.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !email.contains(where: \.isWhitespace)
        else { throw APIError.badRequest("Invalid email.", detail: "email must look like name@example.com") }
        try NameRules.validate(username, field: "username")
        guard (PasswordHasher.minimumLength...PasswordHasher.maximumLength).contains(password.count) else {
            throw APIError.badRequest(
                "Invalid password.",
                detail: "password must be \(PasswordHasher.minimumLength) to \(PasswordHasher.maximumLength) characters"
            )
        }
    }
}

struct LoginRequest: Decodable {
    let email: String
    let password: String
}

struct LoginResponse: ResponseEncodable {
    let sessionToken: String
}

struct CreateTokenRequest: Decodable {
    var tokenName: String?
    var lifetimeSeconds: Int?
}

struct TokenResponse: ResponseEncodable {
    let key: String
}

struct NameRequest: Decodable {
    let name: String
}

struct MessageResponse: ResponseEncodable {
    let message: String
}

struct UserResponse: ResponseEncodable {
    let id: UUID
    let email: String
    let username: String
    let role: User.Role
    let createdAt: Date

    init(_ user: User) {
        (id, email, username, role, createdAt) = (user.id, user.email, user.username, user.role, user.createdAt)
    }
}

/// An agent with its state (see `AgentViews`). Every key is always present; what is unknown is null.
struct AgentResponse: ResponseEncodable {
    let id: UUID
    let name: String
    let workspaceID: UUID
    let status: AgentStatus
    let createdAt: Date
    @NullEncoded var firstConnectedAt: Date?
    @NullEncoded var lastConnectedAt: Date?
    @NullEncoded var disconnectedAt: Date?
    @NullEncoded var lastSeenAt: Date?
    /// From the agent's latest report, else from its coordinator node.
    @NullEncoded var version: String?
    /// As the agent's latest report lists them.
    let apps: [AgentAppReport]
    /// The gateway's own mesh node's path to the agent and round trip over it, while the agent is connected.
    @NullEncoded var path: AgentPath?
    @NullEncoded var rttMs: Double?
}

/// Encodes nil as null rather than leaving the key out, so clients see one shape.
@propertyWrapper
struct NullEncoded<Value: Encodable & Sendable>: Encodable, Sendable {
    var wrappedValue: Value?

    init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}

struct CreatedAgentResponse: ResponseEncodable {
    let id: UUID
    /// Shown once; only its hash is stored.
    let token: String
}

struct WorkspaceResponse: ResponseEncodable {
    let id: UUID
    let name: String
    let ownerID: UUID
    let ownerName: String
    let createdAt: Date
    let agents: [AgentResponse]

    /// Assembles the full view (owner name, agents with their state) from the store and what the gateway knows.
    static func load(_ workspace: Workspace, store: any Store, agentViews: AgentViews) async throws -> WorkspaceResponse {
        let owner = try await store.user(id: workspace.ownerID)
        let agents = try await store.agents(workspaceID: workspace.id)
        return WorkspaceResponse(
            id: workspace.id, name: workspace.name, ownerID: workspace.ownerID, ownerName: owner?.username ?? "",
            createdAt: workspace.createdAt, agents: await agentViews.responses(for: agents)
        )
    }
}

struct BuildInfoResponse: ResponseEncodable {
    let version: String
    let accessURL: String
}
