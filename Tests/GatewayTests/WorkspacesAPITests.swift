import Foundation
import Logging
import NIOCore
import NIOFoundationEssentialsCompat
import Gateway
import HTTPTypes
import HummingbirdTesting
import Testing

@Suite struct WorkspacesAPITests {
    /// Workspaces and agents can be created, listed, read and deleted; agent tokens are shown once and work.
    @Test func workspaceAndAgentLifecycle() async throws {
        try await Deployment().test { api in
            let token = try await api.signInOwner()
            let created = try await api.request(.post, "/api/v2/workspaces", json: ["name": "dev"], token: token)
            #expect(created.status == .created)
            let workspaceID = try #require(try created.object()["id"] as? String)
            #expect(try created.object()["owner_name"] as? String == "owner")
            #expect(try await api.request(.post, "/api/v2/workspaces", json: ["name": "dev"], token: token).status == .conflict)
            #expect(try await api.request(.post, "/api/v2/workspaces", json: ["name": "-bad"], token: token).status == .badRequest)

            let agent = try await api.request(.post, "/api/v2/workspaces/\(workspaceID)/agents", json: ["name": "main"], token: token)
            #expect(agent.status == .created)
            let agentID = try #require(try agent.object()["id"] as? String)
            let agentToken = try #require(try agent.object()["token"] as? String)

            let fetched = try await api.request(.get, "/api/v2/workspaceagents/\(agentID)", token: token)
            #expect(try fetched.object()["status"] as? String == "connecting")
            #expect(try fetched.object()["token"] == nil)
            let workspace = try await api.request(.get, "/api/v2/workspaces/\(workspaceID)", token: token).object()
            #expect((workspace["agents"] as? [[String: Any]])?.first?["name"] as? String == "main")

            let agentToken_ = HTTPField.Name("Meshgate-Agent-Token")!
            let me = try await api.request(.get, "/api/v2/workspaceagents/me", headers: [agentToken_: agentToken])
            #expect(try me.object()["id"] as? String == agentID)
            let tampered = String(agentToken.dropLast()) + (agentToken.hasSuffix("a") ? "b" : "a")
            #expect(try await api.request(.get, "/api/v2/workspaceagents/me", headers: [agentToken_: tampered]).status == .unauthorized)

            #expect(try await api.request(.get, "/api/v2/workspaces", token: token).array().count == 1)
            #expect(try await api.request(.delete, "/api/v2/workspaces/\(workspaceID)", token: token).status == .noContent)
            #expect(try await api.request(.get, "/api/v2/workspaces/\(workspaceID)", token: token).status == .notFound)
            // Deleting the workspace deleted its agent, and with it the agent's credential.
            #expect(try await api.request(.get, "/api/v2/workspaceagents/me", headers: [agentToken_: agentToken]).status == .unauthorized)
        }
    }

    /// A member sees only their own workspaces; others' ids answer 404, never 403.
    @Test func membersSeeOnlyTheirOwn() async throws {
        try await Deployment().test { api in
            let owner = try await api.signInOwner()
            try await api.request(.post, "/api/v2/users", json: ["email": "m@example.com", "username": "m", "password": "member password"], token: owner)
            let member = try await api.login("m@example.com", "member password")
            let ownersWorkspace = try await api.request(.post, "/api/v2/workspaces", json: ["name": "ops"], token: owner).object()["id"] as! String
            let membersWorkspace = try await api.request(.post, "/api/v2/workspaces", json: ["name": "ops"], token: member).object()["id"] as! String

            #expect(try await api.request(.get, "/api/v2/workspaces", token: member).array().map { $0["id"] as? String } == [membersWorkspace])
            #expect(try await api.request(.get, "/api/v2/workspaces", token: owner).array().count == 2)
            #expect(try await api.request(.get, "/api/v2/workspaces/\(ownersWorkspace)", token: member).status == .notFound)
            #expect(try await api.request(.delete, "/api/v2/workspaces/\(ownersWorkspace)", token: member).status == .notFound)
            #expect(try await api.request(.post, "/api/v2/workspaces/\(ownersWorkspace)/agents", json: ["name": "x"], token: member).status == .notFound)
            #expect(try await api.request(.get, "/api/v2/workspaces/\(membersWorkspace)", token: owner).status == .ok)
        }
    }
}
