import Foundation
import Logging

/// What the `Coordinator` tells about agents' sockets, so `CoordinatorState` stays pure. The coordinator counts
/// the sockets (a reconnection that replaces a live socket is a connection, but the old socket's end is no
/// disconnection) and answers whether one is live; the observer keeps the history.
public protocol AgentPresenceObserver: Sendable {
    /// A socket of the agent opened at `date`: its first connection, a reconnection, or one replacing a live socket.
    func recordConnection(of agent: UUID, at date: Date) async
    /// The agent's last live socket ended at `date`.
    func recordDisconnection(of agent: UUID, at date: Date) async
    /// Called once the coordinator's live state matches the record, so whoever reads now sees both agree.
    func presenceChanged(of agent: UUID, workspaceID: UUID)
}

/// Keeps agents' connection times in the store (they outlive the process; a live socket does not, so the
/// coordinator answers that) and announces each change on the workspace's topic, for watch-ws.
public struct AgentPresenceRecorder: AgentPresenceObserver {
    let store: any Store
    let pubsub: any PubSub
    let logger: Logger

    public init(store: any Store, pubsub: any PubSub, logger: Logger = Logger(label: "meshgate.presence")) {
        (self.store, self.pubsub, self.logger) = (store, pubsub, logger)
    }

    public func recordConnection(of agent: UUID, at date: Date) async {
        await record("connection", of: agent) { try await store.recordAgentConnected(id: agent, at: date) }
    }

    public func recordDisconnection(of agent: UUID, at date: Date) async {
        await record("disconnection", of: agent) { try await store.recordAgentDisconnected(id: agent, at: date) }
    }

    public func presenceChanged(of agent: UUID, workspaceID: UUID) {
        pubsub.publish(PubSubTopic.workspace(workspaceID))
    }

    /// A failed write is logged, not thrown: the socket must not fail because its history could not be kept.
    private func record(_ what: String, of agent: UUID, _ write: () async throws -> Void) async {
        do {
            try await write()
        } catch {
            logger.error("Could not record an agent's \(what)", metadata: ["agent.id": "\(agent)", "error": "\(error)"])
        }
    }
}

/// An agent's connection status as the API shows it. Derived on every read, never stored: `timeout` comes from
/// the passing of time alone.
public enum AgentStatus: String, Sendable, Encodable {
    /// Never connected, and created less than the connection timeout ago.
    case connecting
    /// A coordinator socket of the agent is live.
    case connected
    /// Connected before; no live socket now.
    case disconnected
    /// Never connected, and the connection timeout has passed since it was created.
    case timeout

    public init(createdAt: Date, connection: AgentConnectionTimes, live: Bool, now: Date, timeout: TimeInterval) {
        if live {
            self = .connected
        } else if connection.lastConnectedAt != nil {
            self = .disconnected
        } else {
            self = now.timeIntervalSince(createdAt) < timeout ? .connecting : .timeout
        }
    }
}

extension AgentConnectionTimes {
    /// When the agent was last known to be there: now while connected, else when its socket ended (or, after a
    /// restart of the server that missed the end, when it last connected); nil if it never connected.
    public func lastSeen(live: Bool, now: Date) -> Date? {
        if live { return now }
        return [disconnectedAt, lastConnectedAt].compactMap { $0 }.max()
    }
}
