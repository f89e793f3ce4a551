import Foundation
import Gateway
import Testing
import Tunnel

/// Two users, each with a workspace and an agent, a gateway, a proxy and one client per user.
private enum Mesh {
    static let userA = UUID(), userB = UUID()
    static let agentA = UUID(), agentB = UUID()
    static let identityA = NodeIdentity.agent(agentA, workspaceID: UUID(), ownerID: userA)
    static let identityB = NodeIdentity.agent(agentB, workspaceID: UUID(), ownerID: userB)
    static let clientA = NodeIdentity.client(userID: userA, clientID: UUID())
    static let clientB = NodeIdentity.client(userID: userB, clientID: UUID())
    static let proxy = NodeIdentity.proxy(UUID())
    /// Which user may reach which agent (the store's answer, here as a table).
    static let policy = TunnelPolicy { user, agent in (user, agent) == (userA, agentA) || (user, agent) == (userB, agentB) }

    static func node(_ seed: UInt8, agent: UUID? = nil) -> CoordinatorNode {
        let address = agent.map(MeshAddress.agent) ?? MeshAddress(bytes: MeshAddress.prefix + [UInt8](repeating: seed, count: 10))!
        return CoordinatorNode(
            key: NodePublicKey(bytes: [UInt8](repeating: seed, count: 32))!, addresses: [MeshPrefix(address, length: 128)!],
            homeRegion: 900, endpoints: ["192.0.2.\(seed):41641"], version: "test"
        )
    }
}

/// A state with named connections and a record of what each received; reads like the domain.
private struct Harness {
    var state = CoordinatorState(gracePeriod: 60)
    var connections: [NodeIdentity: ConnectionID] = [:]
    var nodes: [NodeIdentity: CoordinatorNode] = [:]
    private var next: UInt64 = 1
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    /// Connects each identity with a node (seeded by its position) and returns nothing it was sent.
    init(_ identities: [NodeIdentity]) {
        for (index, identity) in identities.enumerated() {
            _ = connect(identity)
            let node = Mesh.node(UInt8(index + 1), agent: identity.agentIDForTests)
            nodes[identity] = node
            _ = state.updateSelf(connections[identity]!, node: node)
        }
    }

    mutating func connect(_ identity: NodeIdentity) -> [CoordinatorAction] {
        let connection = ConnectionID(next)
        next += 1
        connections[identity] = connection
        return state.connect(identity, connection: connection)
    }

    mutating func tunnel(_ source: NodeIdentity, _ agent: UUID) -> [CoordinatorAction] {
        state.addTunnel(connections[source]!, to: agent)
    }

    /// Who got `peer_updates`, and what: the actions translated back to identities.
    func received(_ actions: [CoordinatorAction]) -> [NodeIdentity: [PeerUpdate]] {
        var result: [NodeIdentity: [PeerUpdate]] = [:]
        for case .send(let connection, .peerUpdates(let updates)) in actions {
            let identity = connections.first { $0.value == connection }!.key
            result[identity, default: []] += updates
        }
        return result
    }
}

extension NodeIdentity {
    fileprivate var agentIDForTests: UUID? {
        if case .agent(let id, _, _) = self { return id }
        return nil
    }
}

@Suite struct CoordinatorStateTests {
    struct AuthorizationCase: CustomTestStringConvertible, Sendable {
        let name: String
        let source: NodeIdentity
        let agent: UUID
        let expected: TunnelDecision
        var testDescription: String { name }
    }

    static let authorizationCases: [AuthorizationCase] = [
        .init(name: "gateway reaches any agent", source: .gateway, agent: Mesh.agentB, expected: .allowed),
        .init(name: "proxy reaches any agent", source: Mesh.proxy, agent: Mesh.agentA, expected: .allowed),
        .init(name: "client reaches its user's agent", source: Mesh.clientA, agent: Mesh.agentA, expected: .allowed),
        .init(name: "client cannot reach another user's agent", source: Mesh.clientA, agent: Mesh.agentB, expected: .denied("Agent not found.")),
        .init(name: "unknown agent looks like another user's", source: Mesh.clientB, agent: UUID(), expected: .denied("Agent not found.")),
        .init(name: "agent opens no tunnel to another", source: Mesh.identityA, agent: Mesh.agentB, expected: .denied("Agents open no tunnels.")),
        .init(name: "agent opens no tunnel even within its user", source: Mesh.identityA, agent: Mesh.agentA, expected: .denied("Agents open no tunnels.")),
    ]

    /// The tunnel rules: gateway and proxies any agent, clients their user's agents, agents none.
    @Test(arguments: authorizationCases)
    func tunnelAuthorization(_ test: AuthorizationCase) async throws {
        #expect(try await Mesh.policy.authorize(test.source, toAgent: test.agent) == test.expected)
    }

    /// The rules against the real store: a member cannot reach the owner's agent; the deployment owner may reach any.
    @Test func tunnelAuthorizationFromStore() async throws {
        let deployment = try Deployment()
        let store = deployment.store
        let owner = User(email: "o@example.com", username: "o", role: .owner, passwordHash: "", createdAt: Date())
        let member = User(email: "m@example.com", username: "m", role: .member, passwordHash: "", createdAt: Date())
        try await store.insertUser(owner)
        try await store.insertUser(member)
        var agents: [UUID: Agent] = [:]
        for user in [owner, member] {
            let workspace = Workspace(ownerID: user.id, name: "dev", createdAt: Date())
            try await store.insertWorkspace(workspace)
            let agent = Agent(workspaceID: workspace.id, name: "main", tokenID: "t\(user.username)", hashedTokenSecret: Data(), createdAt: Date())
            try await store.insertAgent(agent)
            agents[user.id] = agent
        }
        let policy = TunnelPolicy(store: store)
        func decision(_ user: User, _ agentOwner: User) async throws -> TunnelDecision {
            try await policy.authorize(.client(userID: user.id, clientID: UUID()), toAgent: agents[agentOwner.id]!.id)
        }
        #expect(try await decision(member, member) == .allowed)
        #expect(try await decision(member, owner) == .denied("Agent not found."))
        #expect(try await decision(owner, member) == .allowed)
        #expect(try await policy.authorize(.client(userID: UUID(), clientID: UUID()), toAgent: agents[member.id]!.id) == .denied("Agent not found."))
    }

    /// The state refuses a tunnel from an agent even if an authorizer were to let it through.
    @Test func agentCannotOpenTunnelInState() {
        var mesh = Harness([Mesh.identityA, Mesh.identityB])
        let actions = mesh.tunnel(Mesh.identityA, Mesh.agentB)
        #expect(actions == [.send(mesh.connections[Mesh.identityA]!, .error(message: "Agents open no tunnels."))])
        #expect(mesh.state.updates(for: Mesh.identityB).isEmpty)
    }

    /// Opening a tunnel gives each end the other's node, and only those two ends.
    @Test func tunnelExchangesNodesBothWays() {
        var mesh = Harness([Mesh.clientA, Mesh.identityA, Mesh.identityB])
        let received = mesh.received(mesh.tunnel(Mesh.clientA, Mesh.agentA))
        #expect(received == [Mesh.clientA: [.node(mesh.nodes[Mesh.identityA]!)], Mesh.identityA: [.node(mesh.nodes[Mesh.clientA]!)]])
        #expect(mesh.tunnel(Mesh.clientA, Mesh.agentA).isEmpty, "a repeated add_tunnel changes nothing")
    }

    struct FanOutCase: CustomTestStringConvertible, Sendable {
        let name: String
        let updater: NodeIdentity
        let receivers: Set<NodeIdentity>
        var testDescription: String { name }
    }

    /// gateway → A and B, client A → A, proxy → B; client B has no tunnel.
    static let fanOutCases: [FanOutCase] = [
        .init(name: "agent A reaches the gateway and client A", updater: Mesh.identityA, receivers: [.gateway, Mesh.clientA]),
        .init(name: "agent B reaches the gateway and the proxy", updater: Mesh.identityB, receivers: [.gateway, Mesh.proxy]),
        .init(name: "gateway reaches both agents", updater: .gateway, receivers: [Mesh.identityA, Mesh.identityB]),
        .init(name: "client A reaches agent A only", updater: Mesh.clientA, receivers: [Mesh.identityA]),
        .init(name: "client B without tunnels reaches no one", updater: Mesh.clientB, receivers: []),
    ]

    /// A node update goes to exactly the other ends of the updater's tunnels.
    @Test(arguments: fanOutCases)
    func updatesFanOutToTunnelPeers(_ test: FanOutCase) {
        var mesh = Harness([.gateway, Mesh.proxy, Mesh.clientA, Mesh.clientB, Mesh.identityA, Mesh.identityB])
        for (source, agent) in [(NodeIdentity.gateway, Mesh.agentA), (.gateway, Mesh.agentB), (Mesh.clientA, Mesh.agentA), (Mesh.proxy, Mesh.agentB)] {
            _ = mesh.tunnel(source, agent)
        }
        var moved = mesh.nodes[test.updater]!
        moved.endpoints = ["198.51.100.1:41641"]
        let received = mesh.received(mesh.state.updateSelf(mesh.connections[test.updater]!, node: moved))
        #expect(Set(received.keys) == test.receivers)
        #expect(received.values.allSatisfy { $0 == [.node(moved)] })
    }

    /// A lost agent that returns within the grace period is never gone; it gets its peers again on return.
    @Test func lostThenReturnWithinGrace() {
        var mesh = Harness([.gateway, Mesh.identityA])
        _ = mesh.tunnel(.gateway, Mesh.agentA)
        let keyA = mesh.nodes[Mesh.identityA]!.key
        #expect(mesh.received(mesh.state.connectionLost(mesh.connections[Mesh.identityA]!, now: mesh.t0)) == [.gateway: [.lost(keyA)]])
        #expect(mesh.state.nextDeadline == mesh.t0 + 60)

        let returned = mesh.connect(Mesh.identityA)
        #expect(mesh.received(returned) == [Mesh.identityA: [.node(mesh.nodes[.gateway]!)]])
        #expect(!mesh.state.isLost(Mesh.identityA))
        #expect(mesh.state.expire(now: mesh.t0 + 3600).isEmpty)
        #expect(mesh.state.node(of: Mesh.identityA) == mesh.nodes[Mesh.identityA], "the node is kept while lost")
    }

    /// A lost node is gone once the grace period ends, not before; the source's tunnel waits for the agent.
    @Test func graceExpiryMakesGone() {
        var mesh = Harness([.gateway, Mesh.identityA])
        _ = mesh.tunnel(.gateway, Mesh.agentA)
        let keyA = mesh.nodes[Mesh.identityA]!.key
        _ = mesh.state.connectionLost(mesh.connections[Mesh.identityA]!, now: mesh.t0)
        #expect(mesh.state.expire(now: mesh.t0 + 59).isEmpty)
        #expect(mesh.received(mesh.state.expire(now: mesh.t0 + 60)) == [.gateway: [.gone(keyA)]])
        #expect(mesh.state.node(of: Mesh.identityA) == nil)

        // The agent comes back as new: the gateway's tunnel still stands, so both ends learn each other again.
        let returned = mesh.connect(Mesh.identityA)  // before `received`, which must see the new connection
        #expect(mesh.received(returned) == [Mesh.identityA: [.node(mesh.nodes[.gateway]!)]])
        let received = mesh.received(mesh.state.updateSelf(mesh.connections[Mesh.identityA]!, node: mesh.nodes[Mesh.identityA]!))
        #expect(received == [.gateway: [.node(mesh.nodes[Mesh.identityA]!)]])
    }

    /// An explicit disconnect is gone at once, closes the socket, and ends the leaver's tunnels.
    @Test func disconnectIsGoneImmediately() {
        var mesh = Harness([Mesh.clientA, Mesh.identityA])
        _ = mesh.tunnel(Mesh.clientA, Mesh.agentA)
        let connection = mesh.connections[Mesh.clientA]!
        let actions = mesh.state.disconnect(connection)
        #expect(mesh.received(actions) == [Mesh.identityA: [.gone(mesh.nodes[Mesh.clientA]!.key)]])
        #expect(actions.last == .close(connection, .disconnected))
        #expect(mesh.state.updates(for: Mesh.identityA).isEmpty)
        #expect(mesh.state.updateSelf(mesh.connections[Mesh.identityA]!, node: mesh.nodes[Mesh.identityA]!).isEmpty)
    }

    /// The same identity connecting again closes the older socket; that socket's end then changes nothing.
    @Test func newerConnectionReplacesOlder() {
        var mesh = Harness([.gateway, Mesh.identityA])
        _ = mesh.tunnel(.gateway, Mesh.agentA)
        let old = mesh.connections[Mesh.identityA]!
        let actions = mesh.connect(Mesh.identityA)
        #expect(actions.first == .close(old, .replaced))
        #expect(mesh.state.connectionLost(old, now: mesh.t0).isEmpty)
        #expect(!mesh.state.isLost(Mesh.identityA))
        #expect(mesh.state.updateSelf(old, node: Mesh.node(99, agent: Mesh.agentA)).isEmpty, "the old socket speaks for no one")
    }

    /// Removing a tunnel tells both ends the other is gone.
    @Test func removeTunnelIsGoneOnBothEnds() {
        var mesh = Harness([Mesh.clientA, Mesh.identityA])
        _ = mesh.tunnel(Mesh.clientA, Mesh.agentA)
        let received = mesh.received(mesh.state.removeTunnel(mesh.connections[Mesh.clientA]!, to: Mesh.agentA))
        #expect(received == [Mesh.clientA: [.gone(mesh.nodes[Mesh.identityA]!.key)], Mesh.identityA: [.gone(mesh.nodes[Mesh.clientA]!.key)]])
    }

    /// A node may not claim another's key, and an agent only its own address; a changed key is gone, then new.
    @Test func nodeClaimsAreChecked() {
        var mesh = Harness([.gateway, Mesh.clientA, Mesh.identityA])
        _ = mesh.tunnel(.gateway, Mesh.agentA)
        let client = mesh.connections[Mesh.clientA]!
        var stolen = mesh.nodes[Mesh.clientA]!
        stolen.key = mesh.nodes[Mesh.identityA]!.key
        #expect(mesh.state.updateSelf(client, node: stolen) == [.send(client, .error(message: "Node key \(stolen.key.shortForm) is in use by another node."))])

        let agent = mesh.connections[Mesh.identityA]!
        let elsewhere = Mesh.node(42, agent: Mesh.agentB)
        #expect(mesh.state.updateSelf(agent, node: elsewhere) == [.send(agent, .error(message: "An agent's only address is \(MeshAddress.agent(Mesh.agentA))/128."))])

        let rekeyed = Mesh.node(43, agent: Mesh.agentA)
        let received = mesh.received(mesh.state.updateSelf(agent, node: rekeyed))
        #expect(received == [.gateway: [.gone(mesh.nodes[Mesh.identityA]!.key), .node(rekeyed)]])
    }

    /// Bad input closes the socket and counts as lost, so peers keep their sessions.
    @Test func protocolViolationClosesAndIsLost() {
        var mesh = Harness([.gateway, Mesh.identityA])
        _ = mesh.tunnel(.gateway, Mesh.agentA)
        let connection = mesh.connections[Mesh.identityA]!
        let actions = mesh.state.close(connection, .protocolViolation(.unknownType("hello")), now: mesh.t0)
        #expect(actions.first == .close(connection, .protocolViolation(.unknownType("hello"))))
        #expect(mesh.received(actions) == [.gateway: [.lost(mesh.nodes[Mesh.identityA]!.key)]])
        #expect(mesh.state.close(connection, .fellBehind, now: mesh.t0).isEmpty, "a closed socket is not closed twice")
    }

    /// A tunnel request may name the agent by the key of its present node.
    @Test func peerByNodeKey() {
        let mesh = Harness([Mesh.identityA])
        #expect(mesh.state.agentID(for: .key(mesh.nodes[Mesh.identityA]!.key)) == Mesh.agentA)
        #expect(mesh.state.agentID(for: .key(Mesh.node(77).key)) == nil)
    }
}
