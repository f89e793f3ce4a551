import Foundation
import Tunnel
import Logging
import ServiceLifecycle

/// The primary's one coordinator: a `CoordinatorState` shared by every socket, and the queues to those sockets.
/// Sockets call in with what they read; the actor applies the transition and queues what each socket must send.
public actor Coordinator {
    /// What a socket's writer does next.
    public enum Outgoing: Sendable, Equatable {
        case message(CoordinatorResponse)
        case close(CoordinatorCloseReason)
    }

    /// A node that falls this many messages behind is closed (and lost) rather than sent a gap: it reconnects
    /// and gets a fresh snapshot. Peer updates are small, so this bounds a slow socket to a few MiB.
    public static let sendQueueLimit = 256

    private var state: CoordinatorState
    private var queues: [ConnectionID: AsyncStream<Outgoing>.Continuation] = [:]
    private var nextConnection: UInt64 = 1
    /// Agents' sockets until released. Counted here, where sockets are serialized: one agent's sockets overlap
    /// briefly when a reconnection replaces the old one, and only the last one's end is a disconnection.
    private var agentSockets: [ConnectionID: AgentSocket] = [:]
    let authorizer: any TunnelAuthorizer
    let clock: any WallClock
    let presence: (any AgentPresenceObserver)?
    let logger: Logger

    public init(
        authorizer: any TunnelAuthorizer, clock: any WallClock, gracePeriod: TimeInterval = 15 * 60, presence: (any AgentPresenceObserver)? = nil,
        logger: Logger = Logger(label: "meshgate.coordinator")
    ) {
        (self.authorizer, self.clock, self.presence, self.logger) = (authorizer, clock, presence, logger)
        state = CoordinatorState(gracePeriod: gracePeriod)
    }

    /// Admits a socket proven to be `identity`. The stream ends after a `.close`, or when the socket is released.
    public func connect(_ identity: NodeIdentity) async -> (ConnectionID, AsyncStream<Outgoing>) {
        let connection = ConnectionID(nextConnection)
        nextConnection += 1
        let (stream, continuation) = AsyncStream<Outgoing>.makeStream(bufferingPolicy: .bufferingOldest(Self.sendQueueLimit))
        queues[connection] = continuation
        perform(state.connect(identity, connection: connection))
        logger.debug("Coordinator connection", metadata: ["coordinator.connection": "\(connection)", "coordinator.identity": "\(identity)"])
        if case .agent(let agent, let workspaceID, _) = identity {
            agentSockets[connection] = AgentSocket(agent: agent, workspaceID: workspaceID, phase: .opening)
            await presence?.recordConnection(of: agent, at: clock.now)
            agentSockets[connection]?.phase = .live
            presence?.presenceChanged(of: agent, workspaceID: workspaceID)
        }
        return (connection, stream)
    }

    /// Whether agent `id` has a live socket here, and the version its node reports (kept while it is lost).
    public func liveness(ofAgent id: UUID) -> (live: Bool, nodeVersion: String?) {
        (agentSockets.values.contains { $0.agent == id && $0.phase != .opening }, state.node(ofAgent: id)?.version)
    }

    /// One text message read from `connection`. Bad input closes that socket only.
    public func receive(_ bytes: [UInt8], from connection: ConnectionID) async {
        let request: CoordinatorRequest
        do {
            request = try CoordinatorWire.decodeRequest(bytes)
        } catch {
            violation(error, on: connection)
            return
        }
        switch request {
        case .updateSelf(let node): perform(state.updateSelf(connection, node: node))
        case .addTunnel(let peer): await addTunnel(connection, peer)
        case .removeTunnel(let peer):
            if let agent = state.agentID(for: peer) { perform(state.removeTunnel(connection, to: agent)) }
        case .disconnect: perform(state.disconnect(connection))
        }
    }

    /// The socket sent something outside the protocol (a binary message, say).
    public func violation(_ error: CoordinatorProtocolError, on connection: ConnectionID) {
        logger.debug("Coordinator protocol violation", metadata: ["coordinator.connection": "\(connection)", "error": "\(error)"])
        perform(state.close(connection, .protocolViolation(error), now: clock.now))
    }

    /// The socket ended, however it ended; its queue is released. Idempotent.
    public func release(_ connection: ConnectionID) async {
        perform(state.connectionLost(connection, now: clock.now))
        queues.removeValue(forKey: connection)?.finish()
        guard let socket = agentSockets[connection], socket.phase != .closing else { return }
        agentSockets[connection]?.phase = .closing
        let last = !agentSockets.contains { $0.key != connection && $0.value.agent == socket.agent }
        if last { await presence?.recordDisconnection(of: socket.agent, at: clock.now) }
        agentSockets[connection] = nil
        if last { presence?.presenceChanged(of: socket.agent, workspaceID: socket.workspaceID) }
    }

    /// Whether agent `id` is connected, or lost and expected back.
    public func hasAgent(_ id: UUID) -> Bool { state.hasAgent(id) }

    /// Lost nodes whose grace period has ended become gone.
    public func expire() { perform(state.expire(now: clock.now)) }

    private func addTunnel(_ connection: ConnectionID, _ peer: TunnelPeer) async {
        guard let source = state.identity(of: connection) else { return }
        guard let agent = state.agentID(for: peer) else {
            return perform([.send(connection, .error(message: TunnelDecision.agentNotFound))])
        }
        let decision: TunnelDecision
        do {
            decision = try await authorizer.authorize(source, toAgent: agent)
        } catch {
            logger.error("Tunnel authorization failed", metadata: ["error": "\(error)", "coordinator.agent": "\(agent)"])
            decision = .denied("Could not check access to the agent; try again.")
        }
        switch decision {
        // The state re-checks the connection: it may have closed while the authorizer ran.
        case .allowed: perform(state.addTunnel(connection, to: agent))
        case .denied(let reason): perform([.send(connection, .error(message: reason))])
        }
    }

    private func perform(_ actions: [CoordinatorAction]) {
        var behind: [ConnectionID] = []
        for action in actions {
            switch action {
            case .send(let connection, let message):
                if case .dropped(_) = queues[connection]?.yield(.message(message)) { behind.append(connection) }
            case .close(let connection, let reason):
                if let queue = queues.removeValue(forKey: connection) {
                    queue.yield(.close(reason))
                    queue.finish()
                }
            }
        }
        // The queue is full, so the close cannot be queued: ending the stream tells the writer to close.
        for connection in behind where queues[connection] != nil {
            logger.info("Coordinator peer fell behind", metadata: ["coordinator.connection": "\(connection)"])
            queues.removeValue(forKey: connection)?.finish()
            perform(state.close(connection, .fellBehind, now: clock.now))
        }
    }
}

/// An agent's socket from `connect` to `release`. It is live from when its connection is recorded until its
/// disconnection is, so the API never shows a status that the recorded times contradict.
private struct AgentSocket {
    enum Phase { case opening, live, closing }
    let agent: UUID
    let workspaceID: UUID
    var phase: Phase
}

/// Turns lost nodes into gone ones when their grace period ends; one check a second is plenty for minutes of grace.
struct CoordinatorExpiryService: Service {
    let coordinator: Coordinator

    func run() async throws {
        repeat {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
            } catch {
                return  // cancelled or shutting down
            }
            await coordinator.expire()
        } while true
    }
}
