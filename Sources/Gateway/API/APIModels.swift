import Foundation
import Hummingbird

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

struct AgentResponse: ResponseEncodable {
    /// Connection state of the agent. Until the coordinator exists, an agent has never connected.
    enum Status: String, Encodable { case connecting, connected, disconnected, timeout }
    let id: UUID
    let name: String
    let workspaceID: UUID
    let status: Status
    let createdAt: Date

    init(_ agent: Agent) {
        (id, name, workspaceID, status, createdAt) = (agent.id, agent.name, agent.workspaceID, .connecting, agent.createdAt)
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

    /// Assembles the full view (owner name, agents) from the store.
    static func load(_ workspace: Workspace, store: any Store) async throws -> WorkspaceResponse {
        let owner = try await store.user(id: workspace.ownerID)
        let agents = try await store.agents(workspaceID: workspace.id)
        return WorkspaceResponse(
            id: workspace.id, name: workspace.name, ownerID: workspace.ownerID, ownerName: owner?.username ?? "",
            createdAt: workspace.createdAt, agents: agents.map(AgentResponse.init)
        )
    }
}

struct BuildInfoResponse: ResponseEncodable {
    let version: String
    let accessURL: String
}
