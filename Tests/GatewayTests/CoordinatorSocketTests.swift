import Foundation
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import HummingbirdWSTesting
import HummingbirdWebSocket
import Logging
import NIOWebSocket
import Testing
import Tunnel
import WSClient

private let agentTokenHeader = HTTPField.Name("Meshgate-Agent-Token")!
private let sessionHeader = HTTPField.Name("Meshgate-Session-Token")!

extension Deployment {
    /// The API and WebSocket routers on a real socket (port 0, plain HTTP), for `client.ws`.
    func testLive(_ body: @escaping @Sendable (APIClient) async throws -> Void) async throws {
        let app = Application(
            router: GatewayRouter.http(environment, requestLogLevel: .trace),
            server: .http1WebSocketUpgrade(webSocketRouter: GatewayRouter.webSocket(environment)),
            configuration: .init(address: .hostname("127.0.0.1", port: 0))
        )
        try await app.test(.live) { client in try await body(APIClient(client: client)) }
        try? FileManager.default.removeItem(at: directory)
    }
}

extension APIClient {
    /// Signs in the owner and gives them a workspace with one agent: (session, agent id, agent token).
    func ownerWithAgent() async throws -> (session: String, agent: UUID, agentToken: String) {
        let session = try await signInOwner()
        let workspace = try await request(.post, "/api/v2/workspaces", json: ["name": "dev"], token: session).object()["id"] as! String
        let agent = try await request(.post, "/api/v2/workspaces/\(workspace)/agents", json: ["name": "main"], token: session).object()
        return (session, UUID(uuidString: agent["id"] as! String)!, agent["token"] as! String)
    }
}

/// Reads coordinator messages until one matches; text only, decoded.
private func next(
    _ messages: inout WebSocketInboundMessageStream.AsyncIterator, _ what: String, _ matches: (CoordinatorResponse) -> Bool
) async throws {
    while let message = try await messages.next() {
        guard case .text(let text) = message else { throw TestFailure("binary message from the coordinator") }
        if matches(try CoordinatorWire.decodeResponse(Array(text.utf8))) { return }
    }
    throw TestFailure("socket closed before \(what)")
}

private func send(_ request: CoordinatorRequest, _ outbound: WebSocketOutboundWriter) async throws {
    try await outbound.write(.text(CoordinatorWire.encode(request)))
}

private func node(_ key: NodePublicKey, agent: UUID?, endpoint: String) -> CoordinatorNode {
    CoordinatorNode(
        key: key, addresses: [MeshPrefix(agent.map(MeshAddress.agent) ?? .random(), length: 128)!], homeRegion: 900,
        endpoints: [endpoint], version: "test"
    )
}

@Suite struct CoordinatorSocketTests {
    /// Who may open the socket: an agent token is that agent, a session a client; an agent token presented as a
    /// session, or a bad agent token beside a good session, is refused (an agent token never acts as a user).
    @Test func socketCredentials() async throws {
        try await Deployment().test { api in
            let (session, _, agentToken) = try await api.ownerWithAgent()
            let path = "/api/v2/coordinate"
            #expect(try await api.request(.get, path).status == .unauthorized)
            #expect(try await api.request(.get, path, token: agentToken).status == .unauthorized)
            #expect(try await api.request(.get, path, token: session, headers: [agentTokenHeader: "nope"]).status == .unauthorized)
            // Valid credentials reach the "upgrade needed" answer, which a plain GET gets.
            #expect(try await api.request(.get, path, token: session).status == .badRequest)
            #expect(try await api.request(.get, path, headers: [agentTokenHeader: agentToken]).status == .badRequest)
        }
    }

    /// Three live sockets: an agent, a client tunnelled to it, and a client that sends garbage. The garbage closes
    /// only its own socket; the good client keeps receiving the agent's updates. The agent, which also presents
    /// the owner's session, still cannot open a tunnel.
    @Test(.timeLimit(.minutes(1)))
    func badInputClosesOnlyThatSocket() async throws {
        try await Deployment().testLive { api in
            let (session, agentID, agentToken) = try await api.ownerWithAgent()
            let agentKey = NodePrivateKey.generate().publicKey
            let first = node(agentKey, agent: agentID, endpoint: "192.0.2.1:41641")
            let second = node(agentKey, agent: agentID, endpoint: "192.0.2.2:41641")
            let (agentSteps, nextAgentStep) = AsyncStream.makeStream(of: CoordinatorNode.self)
            let (milestones, milestone) = AsyncStream.makeStream(of: String.self)
            let asAgent = WebSocketClientConfiguration(additionalHeaders: [agentTokenHeader: agentToken, sessionHeader: session])
            let asOwner = WebSocketClientConfiguration(additionalHeaders: [sessionHeader: session])

            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await api.client.ws("/api/v2/coordinate", configuration: asAgent) { inbound, outbound, _ in
                        try await send(.updateSelf(first), outbound)
                        try await send(.addTunnel(.agent(agentID)), outbound)
                        var messages = inbound.messages(maxSize: 1 << 16).makeAsyncIterator()
                        try await next(&messages, "the refusal") { $0 == .error(message: "Agents open no tunnels.") }
                        milestone.yield("agent refused")
                        for await node in agentSteps { try await send(.updateSelf(node), outbound) }
                    }
                }
                group.addTask {
                    try await api.client.ws("/api/v2/coordinate?client_id=\(UUID())", configuration: asOwner) { inbound, outbound, _ in
                        try await send(.updateSelf(node(NodePrivateKey.generate().publicKey, agent: nil, endpoint: "198.51.100.1:1")), outbound)
                        try await send(.addTunnel(.agent(agentID)), outbound)
                        var messages = inbound.messages(maxSize: 1 << 16).makeAsyncIterator()
                        try await next(&messages, "the agent's node") { $0 == .peerUpdates([.node(first)]) }
                        milestone.yield("client tunnelled")
                        try await next(&messages, "the agent's second node") { $0 == .peerUpdates([.node(second)]) }
                        try await send(.disconnect, outbound)
                        while try await messages.next() != nil {}
                    }
                }
                var events = milestones.makeAsyncIterator()
                #expect(Set([await events.next(), await events.next()]) == ["agent refused", "client tunnelled"])

                let close = try await api.client.ws("/api/v2/coordinate", configuration: asOwner) { inbound, outbound, _ in
                    try await outbound.write(.text("hello"))
                    for try await _ in inbound {}
                }
                #expect(close?.closeCode == .policyViolation)
                #expect(close?.reason == "malformed message: malformed JSON")

                nextAgentStep.yield(second)
                nextAgentStep.finish()
                try await group.waitForAll()
            }
        }
    }
}
