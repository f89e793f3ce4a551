import Foundation
import Synchronization
import Testing
import Tunnel

@testable import Gateway

/// Paths set by the test, in place of the gateway's mesh node.
final class FakeAgentPaths: AgentPathProvider {
    let links = Mutex<[UUID: AgentLink]>([:])
    func link(toAgent id: UUID) async -> AgentLink? { links.withLock { $0[id] } }
}

@Suite struct AgentPathTests {
    /// The API shows the gateway's path and round trip while the agent is connected, and null otherwise.
    @Test func showsThePathWhileConnected() async throws {
        var deployment = try Deployment()
        let paths = FakeAgentPaths()
        deployment.environment.agentPaths = paths
        let coordinator = deployment.environment.coordinator
        try await deployment.test { api in
            let (session, agentID, _) = try await api.ownerWithAgent()
            let (workspace, owner) = try await api.workspaceAndOwner(of: agentID, session: session)
            paths.links.withLock { $0[agentID] = AgentLink(path: .derp(region: 900), rtt: .microseconds(12_345)) }
            #expect(try await api.agent(agentID, session: session)["path"] is NSNull)

            let (connection, _) = await coordinator.connect(.agent(agentID, workspaceID: workspace, ownerID: owner))
            let relayed = try await api.agent(agentID, session: session)
            let derp = try #require(relayed["path"] as? [String: Any])
            #expect(derp["kind"] as? String == "derp" && derp["region"] as? Int == 900 && derp.count == 2)
            #expect(relayed["rtt_ms"] as? Double == 12.345)

            paths.links.withLock { $0[agentID] = AgentLink(path: .direct(endpoint: "203.0.113.7:41641"), rtt: nil) }
            let direct = try await api.agent(agentID, session: session)
            let udp = try #require(direct["path"] as? [String: Any])
            #expect(udp["kind"] as? String == "direct" && udp["endpoint"] as? String == "203.0.113.7:41641" && udp.count == 2)
            #expect(direct["rtt_ms"] is NSNull)

            paths.links.withLock { $0[agentID] = nil }
            #expect(try await api.agent(agentID, session: session)["path"] is NSNull)
            await coordinator.release(connection)
        }
    }

    /// Until the agent reports a version, its coordinator node's version is shown.
    @Test func versionFallsBackToTheNodes() async throws {
        let deployment = try Deployment()
        let coordinator = deployment.environment.coordinator
        try await deployment.test { api in
            let (session, agentID, agentToken) = try await api.ownerWithAgent()
            let (workspace, owner) = try await api.workspaceAndOwner(of: agentID, session: session)
            let (connection, _) = await coordinator.connect(.agent(agentID, workspaceID: workspace, ownerID: owner))
            let node = CoordinatorNode(
                key: NodePrivateKey.generate().publicKey, addresses: [MeshPrefix(.agent(agentID), length: 128)!], homeRegion: 999, endpoints: [],
                version: "0.9.0"
            )
            await coordinator.receive(Array(CoordinatorWire.encode(CoordinatorRequest.updateSelf(node)).utf8), from: connection)
            #expect(try await api.agent(agentID, session: session)["version"] as? String == "0.9.0")
            try await api.report(["version": "1.0.0", "apps": []], agentToken: agentToken)
            #expect(try await api.agent(agentID, session: session)["version"] as? String == "1.0.0")
            await coordinator.release(connection)
        }
    }
}

extension GatewayMeshTests {
    /// Both nodes announce their endpoints through the coordinator: the gateway's path to the agent turns direct,
    /// to the agent's UDP address, with the probes' round trip, and streams work over it.
    @Test func directPathToAnAgent() async throws {
        try await withAgentInCoordinator(direct: .init(includeLoopback: true)) { mesh, agentID, port in
            try await expectEchoRoundTrip(of: 10_000) { initializer in
                try await mesh.openStream(toAgent: agentID, service: .tcp(port: port), initializer: initializer)
            }
            let deadline = ContinuousClock.now + .seconds(20)
            var link = await mesh.link(toAgent: agentID)
            while link.map({ if case .direct = $0.path { false } else { true } }) ?? true {
                guard ContinuousClock.now < deadline else { throw TestFailure("the path never turned direct: \(String(describing: link))") }
                try await Task.sleep(for: .milliseconds(20))
                link = await mesh.link(toAgent: agentID)
            }
            guard case .direct(let endpoint) = link?.path else { return }
            #expect(endpoint.hasPrefix("127.0.0.1:"))
            #expect(link?.rtt.map { $0 > .zero && $0 < .seconds(1) } == true)
            try await expectEchoRoundTrip(of: 200_000) { initializer in
                try await mesh.openStream(toAgent: agentID, service: .tcp(port: port), initializer: initializer)
            }
        }
    }

    /// The real thing: the gateway knows no path to an agent it has not dialed; once it has, the path is the relay's
    /// region and the round trip the stream connection's; the background echo measures one too.
    @Test func pathAndRoundTripToAnAgent() async throws {
        try await withAgentInCoordinator { mesh, agentID, port in
            #expect(await mesh.link(toAgent: agentID) == nil)
            try await expectEchoRoundTrip(of: 10_000) { initializer in
                try await mesh.openStream(toAgent: agentID, service: .tcp(port: port), initializer: initializer)
            }
            let link = try #require(await mesh.link(toAgent: agentID))
            #expect(link.path == .derp(region: DERPMap.embeddedRegionID))
            let rtt = try #require(link.rtt)
            #expect(rtt > .zero && rtt < .seconds(1))
            try await eventually("an echo from the agent") { mesh.echoes.withLock { $0[.agent(agentID)]?.rtt != nil } }
        }
    }
}
