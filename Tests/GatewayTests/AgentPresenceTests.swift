import Foundation
import Gateway
import HTTPTypes
import HummingbirdWSTesting
import HummingbirdWebSocket
import NIOWebSocket
import Testing
import WSClient

func iso(_ date: Date) -> String { date.formatted(.iso8601) }

extension APIClient {
    /// Polls the agent until its status is `status`: a socket's end reaches the server a moment after the client's.
    func agent(_ id: UUID, session: String, becomes status: String) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            let agent = try await agent(id, session: session)
            if agent["status"] as? String == status { return agent }
            guard ContinuousClock.now < deadline else { throw TestFailure("agent is \(agent["status"] ?? "?"), not \(status)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The ids of the agent's workspace and its owner, for a coordinator identity.
    func workspaceAndOwner(of agent: UUID, session: String) async throws -> (workspace: UUID, owner: UUID) {
        let workspaceID = try #require(UUID(uuidString: try await self.agent(agent, session: session)["workspace_id"] as? String ?? ""))
        let workspace = try await request(.get, "/api/v2/workspaces/\(workspaceID)", token: session).object()
        return (workspaceID, try #require(UUID(uuidString: workspace["owner_id"] as? String ?? "")))
    }
}

@Suite(.timeLimit(.minutes(1))) struct AgentPresenceTests {
    /// Through a real coordinator socket: connected while it is open (last seen: now), disconnected with the time
    /// it closed; the first connection time stays.
    @Test func connectedWhileItsSocketIsOpen() async throws {
        let deployment = try Deployment()
        let clock = deployment.clock
        try await deployment.testLive { api in
            let (session, agentID, agentToken) = try await api.ownerWithAgent()
            let opened = clock.now
            let asAgent = WebSocketClientConfiguration(additionalHeaders: [SessionCredential.agentTokenHeaderName: agentToken])
            try await api.client.ws("/api/v2/coordinate", configuration: asAgent) { _, _, _ in
                let connected = try await api.agent(agentID, session: session, becomes: "connected")
                #expect(connected["first_connected_at"] as? String == iso(opened))
                #expect(connected["last_connected_at"] as? String == iso(opened))
                #expect(connected["disconnected_at"] is NSNull)
                clock.advance(by: 30)
                #expect(try await api.agent(agentID, session: session)["last_seen_at"] as? String == iso(opened + 30))
            }
            let disconnected = try await api.agent(agentID, session: session, becomes: "disconnected")
            #expect(disconnected["disconnected_at"] as? String == iso(opened + 30))
            #expect(disconnected["last_seen_at"] as? String == iso(opened + 30))
            #expect(disconnected["first_connected_at"] as? String == iso(opened))
            // Long after, it is still disconnected: timeout is only for agents that never connected.
            clock.advance(by: 1800)  // (sessions last an hour here)
            let later = try await api.agent(agentID, session: session)
            #expect(later["status"] as? String == "disconnected", "\(later)")
        }
    }

    /// An agent that never connects is connecting until --agent-connection-timeout after its creation, then timeout.
    @Test func neverConnectedTimesOut() async throws {
        var deployment = try Deployment()
        deployment.environment.configuration.agentConnectionTimeout = 90
        let clock = deployment.clock
        try await deployment.test { api in
            let (session, agentID, _) = try await api.ownerWithAgent()
            let fresh = try await api.agent(agentID, session: session)
            #expect(fresh["status"] as? String == "connecting")
            for key in ["first_connected_at", "last_connected_at", "disconnected_at", "last_seen_at", "path", "rtt_ms"] {
                #expect(fresh[key] is NSNull, "\(key)")
            }
            clock.advance(by: 89)
            #expect(try await api.agent(agentID, session: session)["status"] as? String == "connecting")
            clock.advance(by: 1)
            #expect(try await api.agent(agentID, session: session)["status"] as? String == "timeout")
        }
    }

    /// A reconnection opens the new socket before the old one ends: the old one's end is no disconnection.
    @Test func aReplacedSocketIsNoDisconnection() async throws {
        let deployment = try Deployment()
        let (clock, coordinator) = (deployment.clock, deployment.environment.coordinator)
        try await deployment.test { api in
            let (session, agentID, _) = try await api.ownerWithAgent()
            let (workspace, owner) = try await api.workspaceAndOwner(of: agentID, session: session)
            let identity = NodeIdentity.agent(agentID, workspaceID: workspace, ownerID: owner)
            let start = clock.now
            let (first, _) = await coordinator.connect(identity)
            clock.advance(by: 5)
            let (second, _) = await coordinator.connect(identity)
            await coordinator.release(first)
            let replaced = try await api.agent(agentID, session: session)
            #expect(replaced["status"] as? String == "connected" && replaced["disconnected_at"] is NSNull)
            #expect(replaced["first_connected_at"] as? String == iso(start) && replaced["last_connected_at"] as? String == iso(start + 5))

            clock.advance(by: 5)
            await coordinator.release(second)
            await coordinator.release(second)  // idempotent
            let gone = try await api.agent(agentID, session: session)
            #expect(gone["status"] as? String == "disconnected" && gone["disconnected_at"] as? String == iso(start + 10))
        }
    }

    /// watch-ws sends the workspace again when an agent reports and when it connects.
    @Test func watchersSeeReportsAndConnections() async throws {
        let deployment = try Deployment()
        try await deployment.testLive { api in
            let (session, agentID, agentToken) = try await api.ownerWithAgent()
            let (workspace, owner) = try await api.workspaceAndOwner(of: agentID, session: session)
            let asOwner = WebSocketClientConfiguration(additionalHeaders: [SessionCredential.headerName: session])
            try await api.client.ws("/api/v2/workspaces/\(workspace)/watch-ws", configuration: asOwner) { inbound, outbound, _ in
                var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                func nextAgent() async throws -> [String: Any] {
                    guard case .text(let text) = try await messages.next(),
                        let view = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                        let agent = (view["agents"] as? [[String: Any]])?.first
                    else { throw TestFailure("expected the workspace with its agent") }
                    return agent
                }
                #expect(try await nextAgent()["version"] is NSNull)
                try await api.report(["version": "2.0.0", "apps": [reportedApp("code")]], agentToken: agentToken)
                #expect(try await nextAgent()["version"] as? String == "2.0.0")
                let (connection, _) = await deployment.environment.coordinator.connect(.agent(agentID, workspaceID: workspace, ownerID: owner))
                #expect(try await nextAgent()["status"] as? String == "connected")
                await deployment.environment.coordinator.release(connection)
                #expect(try await nextAgent()["status"] as? String == "disconnected")
                try await outbound.close(.normalClosure, reason: nil)
            }
        }
    }
}
