import AppProxy
import Foundation
import Gateway

/// `--dev`'s demo workspace "demo" with agent "main", owned by the development account. An agent token is
/// shown once and stored hashed, so the token is kept in the dev data directory (mode 0600) beside the
/// account's password; a stale or missing one is replaced by a fresh agent.
struct DevelopmentWorkspace: Codable {
    static let workspaceName = "demo"
    static let agentName = "main"

    let workspaceID: UUID
    let agentID: UUID
    let agentToken: String
    /// The owner's user name, for the demo app's path URL.
    let ownerName: String

    /// Where the demo app opens (a path app: `--dev` has no wildcard host).
    var appPath: String { AppURL.path(user: ownerName, workspace: Self.workspaceName, agent: nil, slug: DemoApp.slug) }

    static func ensure(store: any Store, ownerEmail: String, dataDirectory: String) async throws -> DevelopmentWorkspace {
        guard let owner = try await store.user(email: ownerEmail) else { throw StartupError("the development account \(ownerEmail) is missing") }
        let path = dataDirectory + "/dev-agent.json"
        if let data = FileManager.default.contents(atPath: path), let saved = try? JSONDecoder().decode(DevelopmentWorkspace.self, from: data),
            let agent = try await store.agent(id: saved.agentID), let token = SecretToken(saved.agentToken),
            token.id == agent.tokenID, token.matches(hashedSecret: agent.hashedTokenSecret), saved.ownerName == owner.username
        {
            return saved
        }
        let workspace: Workspace
        if let existing = try await store.workspaces(ownerID: owner.id).first(where: { $0.name == workspaceName }) {
            workspace = existing
        } else {
            workspace = Workspace(ownerID: owner.id, name: workspaceName, createdAt: Date())
            try await store.insertWorkspace(workspace)
        }
        for stale in try await store.agents(workspaceID: workspace.id) where stale.name == agentName {
            try await store.deleteAgent(id: stale.id)
        }
        let token = SecretToken.generate()
        let agent = Agent(workspaceID: workspace.id, name: agentName, tokenID: token.id, hashedTokenSecret: token.hashedSecret, createdAt: Date())
        try await store.insertAgent(agent)
        let saved = DevelopmentWorkspace(workspaceID: workspace.id, agentID: agent.id, agentToken: token.value, ownerName: owner.username)
        guard FileManager.default.createFile(atPath: path, contents: try JSONEncoder().encode(saved), attributes: [.posixPermissions: 0o600]) else {
            throw StartupError("cannot write \(path)")
        }
        return saved
    }
}
