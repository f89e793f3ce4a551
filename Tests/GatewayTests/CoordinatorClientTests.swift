import Foundation
import Gateway
import HTTPTypes
import HummingbirdTesting
import HummingbirdWSTesting
import HummingbirdWebSocket
import Logging
import NIOHTTP1
import NIOWebSocket
import Testing
import Tunnel
import WSClient

/// The node side of the coordinator (`ControlClient` + `CoordinatorClient`) against the real socket route.
@Suite struct CoordinatorClientTests {
    /// A replaced socket reconnects by itself and says again who it is: a client that tunnels afterwards still
    /// gets the agent's node.
    @Test func reconnectsAndAnnouncesItselfAgain() async throws {
        try await Deployment().testLive { api in
            let (session, agentID, agentToken) = try await api.ownerWithAgent()
            let base = URL(string: "http://127.0.0.1:\(api.client.port!)")!
            let control = ControlClient(baseURL: base, trust: .systemRoots, headers: HTTPHeaders([("Meshgate-Agent-Token", agentToken)]))
            let identity = try await control.get(AgentIdentityView.self, "/api/v2/workspaceagents/me")
            #expect(identity.id == agentID)

            let agentNode = CoordinatorNode(
                key: NodePrivateKey.generate().publicKey, addresses: [MeshPrefix(.agent(agentID), length: 128)!], homeRegion: 999, endpoints: [],
                version: "test"
            )
            let client = CoordinatorClient(control: control, logger: Logger(label: "test"))
            client.update(agentNode)
            let (events, event) = AsyncStream.makeStream(of: String.self)
            let running = Task { await client.run { if case .connected = $0 { event.yield("connected") } } }
            var connections = events.makeAsyncIterator()
            #expect(await connections.next() == "connected")

            // Another socket with the same agent token replaces the client's; the client comes back on its own.
            let asAgent = WebSocketClientConfiguration(additionalHeaders: [HTTPField.Name("Meshgate-Agent-Token")!: agentToken])
            _ = try await api.client.ws("/api/v2/coordinate", configuration: asAgent) { _, outbound, _ in
                try await outbound.close(.normalClosure, reason: nil)
            }
            #expect(await connections.next() == "connected")

            let asOwner = WebSocketClientConfiguration(additionalHeaders: [HTTPField.Name("Meshgate-Session-Token")!: session])
            try await api.client.ws("/api/v2/coordinate?client_id=\(UUID())", configuration: asOwner) { inbound, outbound, _ in
                try await outbound.write(.text(CoordinatorWire.encode(CoordinatorRequest.addTunnel(.agent(agentID)))))
                for try await message in inbound.messages(maxSize: 1 << 16) {
                    guard case .text(let text) = message, case .peerUpdates(let updates) = try CoordinatorWire.decodeResponse(Array(text.utf8)) else { continue }
                    #expect(updates == [.node(agentNode)])
                    break
                }
                try await outbound.close(.normalClosure, reason: nil)
            }
            await client.disconnect()
            await running.value
        }
    }

    /// A refused credential is an error with the API's own message, and counts as permanent.
    @Test func refusedTokenIsPermanent() async throws {
        try await Deployment().testLive { api in
            let base = URL(string: "http://127.0.0.1:\(api.client.port!)")!
            let control = ControlClient(baseURL: base, trust: .systemRoots, headers: HTTPHeaders([("Meshgate-Agent-Token", "aaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbb")]))
            await #expect {
                try await control.get(AgentIdentityView.self, "/api/v2/workspaceagents/me")
            } throws: { error in
                guard let error = error as? ControlError, case .status(_, 401, let message) = error else { return false }
                return error.isPermanent && message == "Invalid agent token."
            }
            await #expect(throws: ControlError.self) { try await control.webSocket("/api/v2/coordinate", maxMessageSize: 1 << 16) }
        }
    }
}

private struct AgentIdentityView: Decodable { let id: UUID }
