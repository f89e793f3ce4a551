import Foundation
import Tunnel

/// Who is on the other end of a coordinator socket, as its credential proved it. Decides what it may tunnel to.
public enum NodeIdentity: Hashable, Sendable, CustomStringConvertible {
    /// This gateway's own mesh node (apps, terminal); may tunnel to any agent.
    case gateway
    /// A workspace proxy; may tunnel to any agent.
    case proxy(UUID)
    /// An agent, authenticated by its token; opens no tunnels, is tunnelled to.
    case agent(UUID, workspaceID: UUID, ownerID: UUID)
    /// A user's client (CLI). `clientID` tells apart the same user's several clients, so one does not
    /// replace another; it is chosen by the client and is only ever combined with the authenticated user.
    case client(userID: UUID, clientID: UUID)

    var agentID: UUID? {
        if case .agent(let id, _, _) = self { return id }
        return nil
    }

    public var description: String {
        switch self {
        case .gateway: "gateway"
        case .proxy(let id): "proxy \(id)"
        case .agent(let id, _, _): "agent \(id)"
        case .client(let user, let client): "client \(client) of user \(user)"
        }
    }
}

/// One coordinator socket, numbered by whoever owns the sockets.
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    public let raw: UInt64
    public init(_ raw: UInt64) { self.raw = raw }
    public var description: String { "#\(raw)" }
}

/// What the owner of the sockets must do after a transition, in order.
public enum CoordinatorAction: Equatable, Sendable {
    case send(ConnectionID, CoordinatorResponse)
    case close(ConnectionID, CoordinatorCloseReason)
}

/// Why the coordinator closed a socket; the description is the WebSocket close reason.
public enum CoordinatorCloseReason: Equatable, Sendable, CustomStringConvertible {
    /// The node sent `disconnect`.
    case disconnected
    /// The same identity connected again.
    case replaced
    case protocolViolation(CoordinatorProtocolError)
    /// Its send queue overflowed: it reconnects and gets a fresh snapshot rather than a gap.
    case fellBehind

    public var description: String {
        switch self {
        case .disconnected: "disconnected"
        case .replaced: "replaced by a newer connection"
        case .protocolViolation(let error): error.description
        case .fellBehind: "too slow to receive peer updates"
        }
    }
}

/// The coordinator as a pure value: connected nodes, their latest node, tunnels, lost nodes awaiting return.
/// No I/O and no clock reads; instants are passed in and every transition returns the actions to perform.
///
/// Tunnels run from a source (gateway, proxy, client) to an agent and belong to the source: they outlive the
/// agent's absence (it gets the source's node when it returns) and die with the source. Updates flow both
/// ways along a tunnel, so WireGuard on each side knows the other. A vanished connection is *lost*: peers
/// hear `lost`, keep their sessions, and the node, its tunnels and its peers' state are kept until
/// `graceDeadline`; the same identity connecting again takes its place without a `gone`. An explicit
/// `disconnect`, an expired grace period or a removed tunnel is *gone*.
///
/// High availability (several primaries, one PostgreSQL): the value maps to rows, and each transition to one
/// transaction over them:
///   `coordinator_peers(identity text primary key, replica_id uuid, connection_id bigint, node jsonb,
///                      lost_until timestamptz)` — `peers` (`lost_until` null while connected; a replica's
///                      heartbeat going stale marks all its peers lost);
///   `coordinator_tunnels(source text, agent_id uuid, primary key (source, agent_id))` — `tunnels`.
/// Actions are not stored: a transaction ends with `NOTIFY coordinator, '<identity>'` for each identity whose
/// node or status changed (the `PubSub` rule: the notification says who, readers re-read the rows). Each
/// replica then computes `peer_updates` for the sockets it holds, with `updates(for:)`. `ConnectionID` becomes
/// (replica, number), `.gateway` one identity per replica, and `expire(now:)` runs under an advisory lock.
public struct CoordinatorState: Sendable {
    struct Peer: Sendable {
        var identity: NodeIdentity
        var connection: ConnectionID
        var node: CoordinatorNode?
        /// Set while lost: when it becomes gone.
        var graceDeadline: Date?
    }

    public let gracePeriod: TimeInterval
    private(set) var peers: [NodeIdentity: Peer] = [:]
    private var identities: [ConnectionID: NodeIdentity] = [:]
    private var agents: [UUID: NodeIdentity] = [:]
    /// Source → agent ids, and the reverse index.
    private(set) var tunnels: [NodeIdentity: Set<UUID>] = [:]
    private var sources: [UUID: Set<NodeIdentity>] = [:]

    /// Coder keeps lost peers for 15 minutes; a laptop lid closed over lunch should not drop the session.
    public init(gracePeriod: TimeInterval = 15 * 60) { self.gracePeriod = gracePeriod }

    /// A node's latest node, if it has sent one.
    public func node(of identity: NodeIdentity) -> CoordinatorNode? { peers[identity]?.node }
    public func node(ofAgent id: UUID) -> CoordinatorNode? { agents[id].flatMap { peers[$0]?.node } }
    public func isLost(_ identity: NodeIdentity) -> Bool { peers[identity]?.graceDeadline != nil }
    public func identity(of connection: ConnectionID) -> NodeIdentity? { identities[connection] }
    /// The agent a tunnel request names: by id, or by the key its present node uses.
    public func agentID(for peer: TunnelPeer) -> UUID? {
        switch peer {
        case .agent(let id): id
        case .key(let key): agents.first { peers[$0.value]?.node?.key == key }?.key
        }
    }
    /// Whether agent `id` is in the coordinator at all: connected, or lost and still within its grace period.
    public func hasAgent(_ id: UUID) -> Bool { agents[id].flatMap { peers[$0] } != nil }
    /// The earliest grace deadline, for the owner's timer.
    public var nextDeadline: Date? { peers.values.compactMap(\.graceDeadline).min() }

    // MARK: - Transitions

    /// A socket authenticated as `identity`. A live connection of the same identity is closed and replaced;
    /// a lost one returns. The new socket gets the nodes of its tunnel peers.
    public mutating func connect(_ identity: NodeIdentity, connection: ConnectionID) -> [CoordinatorAction] {
        var actions: [CoordinatorAction] = []
        if var peer = peers[identity] {
            if peer.graceDeadline == nil {
                identities[peer.connection] = nil
                actions.append(.close(peer.connection, .replaced))
            }
            peer.connection = connection
            peer.graceDeadline = nil
            peers[identity] = peer
        } else {
            peers[identity] = Peer(identity: identity, connection: connection)
        }
        identities[connection] = identity
        if let agent = identity.agentID { agents[agent] = identity }
        let snapshot = updates(for: identity)
        if !snapshot.isEmpty { actions.append(.send(connection, .peerUpdates(snapshot))) }
        return actions
    }

    /// `update_self`. An agent may use only its own address; a key another node uses is refused.
    public mutating func updateSelf(_ connection: ConnectionID, node: CoordinatorNode) -> [CoordinatorAction] {
        guard let identity = identities[connection], var peer = peers[identity] else { return [] }
        if let agent = identity.agentID, node.addresses != [MeshPrefix(.agent(agent), length: 128)!] {
            return [.send(connection, .error(message: "An agent's only address is \(MeshAddress.agent(agent))/128."))]
        }
        if peers.values.contains(where: { $0.identity != identity && $0.node?.key == node.key }) {
            return [.send(connection, .error(message: "Node key \(node.key.shortForm) is in use by another node."))]
        }
        let previous = peer.node
        peer.node = node
        peers[identity] = peer
        var updates: [PeerUpdate] = []
        if let previous, previous.key != node.key { updates.append(.gone(previous.key)) }
        updates.append(.node(node))
        return send(updates, toPeersOf: identity)
    }

    /// `add_tunnel` from `connection` to `agent`, already allowed by a `TunnelAuthorizer`. Each end gets the
    /// other's node when it has one.
    public mutating func addTunnel(_ connection: ConnectionID, to agent: UUID) -> [CoordinatorAction] {
        guard let source = identities[connection] else { return [] }
        guard source.agentID == nil else { return [.send(connection, .error(message: TunnelDecision.agentsOpenNoTunnels))] }
        guard tunnels[source, default: []].insert(agent).inserted else { return [] }
        sources[agent, default: []].insert(source)
        var actions: [CoordinatorAction] = []
        if let target = agents[agent].flatMap({ peers[$0] }), let targetNode = target.node {
            actions.append(.send(connection, .peerUpdates(Self.view(of: target, node: targetNode))))
        }
        if let sourceNode = peers[source]?.node, let target = agents[agent].flatMap({ peers[$0] }), target.graceDeadline == nil {
            actions.append(.send(target.connection, .peerUpdates([.node(sourceNode)])))
        }
        return actions
    }

    /// `remove_tunnel`: both ends hear `gone` for the other.
    public mutating func removeTunnel(_ connection: ConnectionID, to agent: UUID) -> [CoordinatorAction] {
        guard let source = identities[connection], tunnels[source]?.remove(agent) != nil else { return [] }
        if tunnels[source]?.isEmpty == true { tunnels[source] = nil }
        sources[agent]?.remove(source)
        if sources[agent]?.isEmpty == true { sources[agent] = nil }
        var actions: [CoordinatorAction] = []
        if let target = agents[agent].flatMap({ peers[$0] }), let targetNode = target.node {
            actions.append(.send(connection, .peerUpdates([.gone(targetNode.key)])))
        }
        if let sourceNode = peers[source]?.node, let target = agents[agent].flatMap({ peers[$0] }), target.graceDeadline == nil {
            actions.append(.send(target.connection, .peerUpdates([.gone(sourceNode.key)])))
        }
        return actions
    }

    /// `disconnect`: gone at once, and the socket is closed.
    public mutating func disconnect(_ connection: ConnectionID) -> [CoordinatorAction] {
        guard let identity = identities[connection] else { return [] }
        return remove(identity) + [.close(connection, .disconnected)]
    }

    /// The socket vanished (closed without `disconnect`, or failed). A replaced socket's end changes nothing.
    public mutating func connectionLost(_ connection: ConnectionID, now: Date) -> [CoordinatorAction] {
        guard let identity = identities.removeValue(forKey: connection), var peer = peers[identity] else { return [] }
        peer.graceDeadline = now.addingTimeInterval(gracePeriod)
        peers[identity] = peer
        guard let node = peer.node else { return [] }
        return send([.lost(node.key)], toPeersOf: identity)
    }

    /// The coordinator ends the socket (bad input, a full send queue): closed, and treated as lost, since the
    /// node may come back and behave.
    public mutating func close(_ connection: ConnectionID, _ reason: CoordinatorCloseReason, now: Date) -> [CoordinatorAction] {
        guard identities[connection] != nil else { return [] }
        return [.close(connection, reason)] + connectionLost(connection, now: now)
    }

    /// Lost nodes whose grace period ended by `now` become gone.
    public mutating func expire(now: Date) -> [CoordinatorAction] {
        let expired = peers.values.filter { $0.graceDeadline.map { $0 <= now } ?? false }.map(\.identity)
        return expired.flatMap { remove($0) }
    }

    // MARK: - Views

    /// Everything `identity` should know about its tunnel peers: their nodes, and which of them are lost.
    public func updates(for identity: NodeIdentity) -> [PeerUpdate] {
        peerIdentities(of: identity).compactMap { peers[$0] }.flatMap { peer in peer.node.map { Self.view(of: peer, node: $0) } ?? [] }
    }

    /// The other ends of `identity`'s tunnels that are present (connected or lost), in a stable order.
    func peerIdentities(of identity: NodeIdentity) -> [NodeIdentity] {
        let others: [NodeIdentity] =
            if let agent = identity.agentID { Array(sources[agent] ?? []) } else { (tunnels[identity] ?? []).compactMap { agents[$0] } }
        return others.filter { peers[$0] != nil }.sorted { $0.description < $1.description }
    }

    private static func view(of peer: Peer, node: CoordinatorNode) -> [PeerUpdate] {
        peer.graceDeadline == nil ? [.node(node)] : [.node(node), .lost(node.key)]
    }

    private func send(_ updates: [PeerUpdate], toPeersOf identity: NodeIdentity) -> [CoordinatorAction] {
        peerIdentities(of: identity).compactMap { peers[$0] }.filter { $0.graceDeadline == nil }.map {
            CoordinatorAction.send($0.connection, .peerUpdates(updates))
        }
    }

    /// Makes `identity` gone: peers hear it, its own tunnels end, and tunnels to it (an agent) wait for its return.
    private mutating func remove(_ identity: NodeIdentity) -> [CoordinatorAction] {
        guard let peer = peers[identity] else { return [] }
        let actions = peer.node.map { send([.gone($0.key)], toPeersOf: identity) } ?? []
        for agent in tunnels.removeValue(forKey: identity) ?? [] {
            sources[agent]?.remove(identity)
            if sources[agent]?.isEmpty == true { sources[agent] = nil }
        }
        if let agent = identity.agentID { agents[agent] = nil }
        if identities[peer.connection] == identity { identities[peer.connection] = nil }
        peers[identity] = nil
        return actions
    }
}
