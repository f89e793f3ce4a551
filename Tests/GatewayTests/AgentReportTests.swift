import Foundation
import Gateway
import HTTPTypes
import HummingbirdTesting
import Testing
import Tunnel

/// An app as an agent reports it, in JSON.
func reportedApp(_ slug: String, health: String = "healthy") -> [String: Any] {
    [
        "slug": slug, "display_name": "VS Code", "url": "http://127.0.0.1:8080", "sharing_level": "owner", "subdomain": false,
        "healthcheck": ["url": "http://127.0.0.1:8080/healthz", "interval": 5, "threshold": 3], "health": health,
    ]
}

extension APIClient {
    /// `POST /api/v2/workspaceagents/me/report` as the agent with `agentToken`.
    @discardableResult
    func report(_ body: Any? = nil, raw: String? = nil, agentToken: String?, session: String? = nil) async throws -> TestResponse {
        let headers: HTTPFields = agentToken.map { [SessionCredential.agentTokenHeaderName: $0] } ?? [:]
        return try await request(.post, "/api/v2/workspaceagents/me/report", json: body, raw: raw, token: session, headers: headers)
    }

    /// The agent as `GET /api/v2/workspaceagents/{id}` shows it to `session`.
    func agent(_ id: UUID, session: String) async throws -> [String: Any] {
        try await request(.get, "/api/v2/workspaceagents/\(id)", token: session).object()
    }
}

@Suite struct AgentReportTests {
    /// The latest report is kept whole and shown wherever the agent is: by id, in its workspace, to itself.
    @Test func showsTheLatestReport() async throws {
        let deployment = try Deployment()
        try await deployment.test { api in
            let (session, agentID, agentToken) = try await api.ownerWithAgent()
            let before = try await api.agent(agentID, session: session)
            #expect(before["version"] is NSNull && (before["apps"] as? [Any])?.isEmpty == true)

            let sent = try await api.report(["version": "1.2.3", "apps": [reportedApp("code"), reportedApp("jupyter", health: "unhealthy")]], agentToken: agentToken)
            #expect(sent.status == .noContent)
            let agent = try await api.agent(agentID, session: session)
            #expect(agent["version"] as? String == "1.2.3")
            let apps = try #require(agent["apps"] as? [[String: Any]])
            #expect(apps.map { $0["slug"] as? String } == ["code", "jupyter"])
            #expect(apps[0]["display_name"] as? String == "VS Code" && apps[0]["sharing_level"] as? String == "owner")
            #expect(apps[0]["subdomain"] as? Bool == false && apps[1]["health"] as? String == "unhealthy")
            #expect((apps[0]["healthcheck"] as? [String: Any])?["interval"] as? Int == 5)

            let workspaceID = try #require(agent["workspace_id"] as? String)
            let workspace = try await api.request(.get, "/api/v2/workspaces/\(workspaceID)", token: session).object()
            #expect(((workspace["agents"] as? [[String: Any]])?.first?["apps"] as? [Any])?.count == 2)
            let me = try await api.request(.get, "/api/v2/workspaceagents/me", headers: [SessionCredential.agentTokenHeaderName: agentToken]).object()
            #expect(me["version"] as? String == "1.2.3")

            // A later report replaces the earlier one, apps and all; the store keeps it across a restart.
            #expect(try await api.report(["version": "1.2.4", "apps": []], agentToken: agentToken).status == .noContent)
            let reopened = try SQLiteStore(path: deployment.directory.appendingPathComponent("meshgate.db").path)
            #expect(try await reopened.agent(id: agentID)?.report == AgentReport(version: "1.2.4", apps: []))
        }
    }

    /// Malformed JSON, unknown values and reports beyond the limits are refused with the cause; nothing is kept.
    @Test func refusesBadReports() async throws {
        try await Deployment().test { api in
            let (session, agentID, agentToken) = try await api.ownerWithAgent()
            let malformed = try await api.report(raw: "{\"version\": ", agentToken: agentToken)
            #expect(malformed.status == .badRequest)
            #expect(try malformed.object()["detail"] as? String == "malformed JSON")
            let missing = try await api.report(["apps": []], agentToken: agentToken)
            #expect(try missing.object()["detail"] as? String == "missing field version")
            var unknownLevel = reportedApp("code")
            unknownLevel["sharing_level"] = "everyone"
            let wrongValue = try await api.report(["version": "1", "apps": [unknownLevel]], agentToken: agentToken)
            #expect(wrongValue.status == .badRequest)
            #expect((try wrongValue.object()["detail"] as? String)?.contains("sharing_level") == true)

            let tooMany = (0...AgentReport.maxApps).map { reportedApp("app\($0)") }
            let refused = try await api.report(["version": "1", "apps": tooMany], agentToken: agentToken)
            #expect(refused.status == .badRequest)
            #expect(try refused.object()["detail"] as? String == "at most 64 apps, got 65")
            let longVersion = String(repeating: "9", count: AgentReport.maxVersionLength + 1)
            #expect(try await api.report(["version": longVersion, "apps": []], agentToken: agentToken).status == .badRequest)
            let twice = try await api.report(["version": "1", "apps": [reportedApp("code"), reportedApp("code")]], agentToken: agentToken)
            #expect(try twice.object()["detail"] as? String == "app slug \"code\" appears more than once")
            let huge = try await api.report(["version": "1", "apps": [], "padding": String(repeating: "x", count: 300_000)], agentToken: agentToken)
            #expect(huge.status == .contentTooLarge)

            #expect(try await api.agent(agentID, session: session)["version"] is NSNull)
        }
    }

    /// Only the agent's own token reports: none, a wrong one, or a user's session (alone or as the agent token) is 401.
    @Test func onlyTheAgentReports() async throws {
        try await Deployment().test { api in
            let (session, agentID, agentToken) = try await api.ownerWithAgent()
            let body = ["version": "1", "apps": [] as [Any]] as [String: Any]
            #expect(try await api.report(body, agentToken: nil).status == .unauthorized)
            let tampered = String(agentToken.dropLast()) + (agentToken.hasSuffix("a") ? "b" : "a")
            #expect(try await api.report(body, agentToken: tampered).status == .unauthorized)
            #expect(try await api.report(body, agentToken: nil, session: session).status == .unauthorized)
            #expect(try await api.report(body, agentToken: session).status == .unauthorized)
            #expect(try await api.agent(agentID, session: session)["version"] is NSNull)
        }
    }
}
