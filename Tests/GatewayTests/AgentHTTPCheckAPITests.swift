import Foundation
import Gateway
import HTTPTypes
import HummingbirdTesting
import Testing
import Tunnel

/// `GET /api/v2/workspaceagents/{id}/http-check` through the in-process API, with the pool over a real agent
/// node on loopback UDP and a real HTTP server behind it.
@Suite(.timeLimit(.minutes(1))) struct AgentHTTPCheckAPITests {
    /// A deployment whose agent streams reach `mesh`'s agent node, with an owner's workspace holding agent
    /// "main" (connected) and agent "spare" (not connected). `body` gets the API, the owner's token and the ids.
    func withAgents(
        _ body: @escaping @Sendable (APIClient, String, _ main: String, _ spare: String, KeepAliveTestServer) async throws -> Void
    ) async throws {
        let mesh = try await LoopbackAgent.start()
        let server = try await KeepAliveTestServer.start()
        var deployment = try Deployment()
        deployment.environment.agentStreams = AgentStreamPool(dialer: mesh.dialer)
        try await deployment.test { api in
            let token = try await api.signInOwner()
            let created = try await api.request(.post, "/api/v2/workspaces", json: ["name": "dev"], token: token)
            let workspace = try #require(try created.object()["id"] as? String)
            var ids: [String] = []
            for name in ["main", "spare"] {
                let agent = try await api.request(.post, "/api/v2/workspaces/\(workspace)/agents", json: ["name": name], token: token)
                ids.append(try #require(try agent.object()["id"] as? String))
            }
            mesh.dialer.connect(UUID(uuidString: ids[0])!)
            try await body(api, token, ids[0], ids[1], server)
        }
        try await server.close()
        await mesh.close()
    }

    @Test func reportsTheResponseAndReusesTheStream() async throws {
        try await withAgents { api, token, main, _, server in
            let url = "/api/v2/workspaceagents/\(main)/http-check?port=\(server.port)&path=/hello%3Fname%3Dx"
            let first = try await api.request(.get, url, token: token)
            #expect(first.status == .ok)
            let report = try first.object()
            #expect(report["port"] as? Int == Int(server.port))
            #expect(report["path"] as? String == "/hello?name=x")
            #expect(report["status"] as? Int == 200)
            #expect(report["body"] as? String == "hello from /hello?name=x")
            #expect(report["body_bytes"] as? Int == "hello from /hello?name=x".utf8.count)
            #expect((report["headers"] as? [String: String])?["X-Test"] == "yes")
            #expect(report["reused_stream"] as? Bool == false)
            #expect((report["elapsed_ms"] as? Double ?? -1) >= 0)
            let second = try await api.request(.get, url, token: token).object()
            #expect(second["reused_stream"] as? Bool == true)
            #expect(server.accepted == 1)
        }
    }

    /// Failures to reach the port are the gateway's: 502 naming the agent, with the agent's reason.
    @Test func unreachablePortsAnswer502() async throws {
        try await withAgents { api, token, main, spare, _ in
            let closedPort = try await unusedLocalPort()
            let refused = try await api.request(.get, "/api/v2/workspaceagents/\(main)/http-check?port=\(closedPort)", token: token)
            #expect(refused.status == .badGateway)
            #expect(refused.message == "Agent main refused port \(closedPort).")
            #expect((try refused.object()["detail"] as? String)?.contains("connect to 127.0.0.1:\(closedPort) failed") == true)

            let offline = try await api.request(.get, "/api/v2/workspaceagents/\(spare)/http-check?port=80", token: token)
            #expect(offline.status == .badGateway)
            #expect(offline.message == "Agent spare is not connected.")
        }
    }

    @Test func badTargetsAnswer400() async throws {
        try await withAgents { api, token, main, _, server in
            let base = "/api/v2/workspaceagents/\(main)/http-check"
            let long = "/" + String(repeating: "a", count: 2048)
            let queries = [
                "", "?port=0", "?port=65536", "?port=http", "?port=80&path=nope", "?port=80&path=/a%20b", "?port=80&path=/a%0D%0AX:%201",
                "?port=80&path=\(long)",
            ]
            for query in queries {
                let response = try await api.request(.get, base + query, token: token)
                #expect(response.status == .badRequest, "\(query)")
            }
            let longest = try await api.request(.get, "\(base)?port=\(server.port)&path=/\(String(repeating: "a", count: 2047))", token: token)
            #expect(longest.status == .ok)
        }
    }

    /// Only who may see the workspace may check its agents; to others the agent does not exist.
    @Test func onlyForThoseWhoSeeTheWorkspace() async throws {
        try await withAgents { api, owner, main, _, server in
            let url = "/api/v2/workspaceagents/\(main)/http-check?port=\(server.port)"
            #expect(try await api.request(.get, url).status == .unauthorized)
            try await api.request(.post, "/api/v2/users", json: ["email": "m@example.com", "username": "m", "password": "member password"], token: owner)
            let member = try await api.login("m@example.com", "member password")
            let hidden = try await api.request(.get, url, token: member)
            #expect(hidden.status == .notFound && hidden.message == "Agent not found.")
            #expect(try await api.request(.get, "/api/v2/workspaceagents/\(UUID())/http-check?port=80", token: owner).status == .notFound)
            #expect(server.accepted == 0)
        }
    }
}
