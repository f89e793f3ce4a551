import AppProxy
import Foundation
import Testing
import Tunnel

@testable import Gateway

@Suite struct StoreAppResolverTests {
    /// A store with alice's workspace "dev" whose agent "main" reports two apps.
    func fixture(agents: [String] = ["main"]) async throws -> (StoreAppResolver, agentIDs: [UUID], Deployment) {
        let deployment = try Deployment()
        let store = deployment.store
        let alice = User(email: "alice@example.com", username: "alice", role: .owner, passwordHash: "x", createdAt: Date())
        try await store.insertFirstUser(alice)
        let workspace = Workspace(ownerID: alice.id, name: "dev", createdAt: Date())
        try await store.insertWorkspace(workspace)
        var ids: [UUID] = []
        for name in agents {
            let token = SecretToken.generate()
            let agent = Agent(workspaceID: workspace.id, name: name, tokenID: token.id, hashedTokenSecret: token.hashedSecret, createdAt: Date())
            try await store.insertAgent(agent)
            let apps = [
                AgentAppReport(slug: "code", displayName: "VS Code", url: "http://127.0.0.1:13337/ui/", sharingLevel: .authenticated, subdomain: true, healthcheck: nil, health: .healthy),
                AgentAppReport(slug: "docs", displayName: "Docs", url: "https://localhost:8443", sharingLevel: .owner, subdomain: false, healthcheck: nil, health: .disabled),
            ]
            _ = try await store.setAgentReport(AgentReport(version: "test", apps: apps), agentID: agent.id)
            ids.append(agent.id)
        }
        return (StoreAppResolver(store: store, coordinator: deployment.environment.coordinator), ids, deployment)
    }

    func request(_ method: AppRequest.AccessMethod, _ target: AppRequest.Target, user: String = "alice", workspace: String = "dev", agent: String? = nil) -> AppRequest {
        AppRequest(accessMethod: method, user: user, workspace: workspace, agent: agent, target: target, basePath: "/")
    }

    @Test func resolvesAppsAndPorts() async throws {
        let (resolver, ids, deployment) = try await fixture()
        defer { try? FileManager.default.removeItem(at: deployment.directory) }
        let code = try await resolver.resolve(request(.subdomain, .app(slug: "code"), user: "Alice", workspace: "DEV")).get()
        #expect(code.agentID == ids[0] && code.port == 13337 && !code.https && code.pathPrefix == "/ui" && code.sharingLevel == .authenticated)
        #expect(code.agentConnected == false && code.health == .healthy && code.displayName == "VS Code")
        let docs = try await resolver.resolve(request(.path, .app(slug: "docs"), agent: "main")).get()
        #expect(docs.port == 8443 && docs.https && docs.pathPrefix == "")
        let port = try await resolver.resolve(request(.subdomain, .port(3000, https: false))).get()
        #expect(port.port == 3000 && port.sharingLevel == .owner && port.health == nil)
    }

    @Test func oneNotFoundForEveryMissingPiece() async throws {
        let (resolver, _, deployment) = try await fixture()
        defer { try? FileManager.default.removeItem(at: deployment.directory) }
        for missing in [
            request(.subdomain, .app(slug: "code"), user: "bob"), request(.subdomain, .app(slug: "code"), workspace: "prod"),
            request(.subdomain, .app(slug: "code"), agent: "other"), request(.subdomain, .app(slug: "nope")),
            // Declared for a subdomain, asked for on a path (and the other way round).
            request(.path, .app(slug: "code")), request(.subdomain, .app(slug: "docs")),
        ] {
            #expect(try await resolver.resolve(missing) == .failure(.notFound), "\(missing)")
        }
    }

    @Test func severalAgentsNeedANamedOne() async throws {
        let (resolver, ids, deployment) = try await fixture(agents: ["main", "gpu"])
        defer { try? FileManager.default.removeItem(at: deployment.directory) }
        #expect(try await resolver.resolve(request(.subdomain, .app(slug: "code"))) == .failure(.ambiguousAgent(["gpu", "main"])))
        #expect(try await resolver.resolve(request(.subdomain, .app(slug: "code"), agent: "gpu")).get().agentID == ids[1])
    }

    @Test func upstreamURLs() {
        #expect(StoreAppResolver.upstream("http://127.0.0.1:8080")! == (8080, false, ""))
        #expect(StoreAppResolver.upstream("https://127.0.0.1/a/b/")! == (443, true, "/a/b"))
        #expect(StoreAppResolver.upstream("ftp://127.0.0.1") == nil)
    }
}
