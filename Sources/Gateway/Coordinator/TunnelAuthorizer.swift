import Foundation

/// Whether a node may open a tunnel; the reason of a refusal is shown to the node.
public enum TunnelDecision: Equatable, Sendable {
    case allowed
    case denied(String)

    static let agentsOpenNoTunnels = "Agents open no tunnels."
    /// The same answer for a missing agent and another user's, so agent ids cannot be probed.
    static let agentNotFound = "Agent not found."
}

/// Decides `add_tunnel` before `CoordinatorState` records it. A seam so HA replicas and tests can swap the lookup.
public protocol TunnelAuthorizer: Sendable {
    func authorize(_ source: NodeIdentity, toAgent agent: UUID) async throws -> TunnelDecision
}

/// meshgate's rules: the gateway and proxies may reach any agent, a user's client only agents of workspaces
/// that user may access, an agent none.
public struct TunnelPolicy: TunnelAuthorizer {
    /// Whether `user` may access `agent`'s workspace; false also when either does not exist.
    let userCanAccess: @Sendable (_ user: UUID, _ agent: UUID) async throws -> Bool

    public init(userCanAccess: @escaping @Sendable (_ user: UUID, _ agent: UUID) async throws -> Bool) {
        self.userCanAccess = userCanAccess
    }

    /// Access as the workspace routes grant it: the workspace's owner, or the deployment owner.
    public init(store: any Store) {
        self.init { userID, agentID in
            guard let user = try await store.user(id: userID), let agent = try await store.agent(id: agentID),
                let workspace = try await store.workspace(id: agent.workspaceID)
            else { return false }
            return WorkspacesRoutes.canSee(workspace, user)
        }
    }

    public func authorize(_ source: NodeIdentity, toAgent agent: UUID) async throws -> TunnelDecision {
        switch source {
        case .gateway, .proxy: .allowed
        case .agent: .denied(TunnelDecision.agentsOpenNoTunnels)
        case .client(let user, _): try await userCanAccess(user, agent) ? .allowed : .denied(TunnelDecision.agentNotFound)
        }
    }
}
