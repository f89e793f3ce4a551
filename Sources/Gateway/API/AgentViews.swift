import Foundation
import Tunnel

/// How the gateway's own mesh node reaches an agent now. On the wire `{"kind": "derp", "region": 900}` or
/// `{"kind": "direct", "endpoint": "203.0.113.7:41641"}` (IPv6: `"[2001:db8::1]:41641"`).
public enum AgentPath: Sendable, Equatable, Encodable {
    /// Relayed through this DERP region.
    case derp(region: Int)
    /// Direct UDP to this endpoint.
    case direct(endpoint: String)

    private enum CodingKeys: String, CodingKey { case kind, region, endpoint }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .derp(let region):
            try container.encode("derp", forKey: .kind)
            try container.encode(region, forKey: .region)
        case .direct(let endpoint):
            try container.encode("direct", forKey: .kind)
            try container.encode(endpoint, forKey: .endpoint)
        }
    }
}

/// The gateway node's path to an agent and the round-trip time over it (nil until measured).
public struct AgentLink: Sendable, Equatable {
    public var path: AgentPath
    public var rtt: Duration?

    public init(path: AgentPath, rtt: Duration?) { (self.path, self.rtt) = (path, rtt) }
}

/// The gateway's mesh paths to agents, for the API; a seam so the API is testable without a mesh.
public protocol AgentPathProvider: Sendable {
    /// nil while the gateway's node has no peer for the agent (it has not dialed it yet).
    func link(toAgent id: UUID) async -> AgentLink?
}

/// Without a mesh node (the relay is disabled) the gateway has no paths.
public struct NoAgentPaths: AgentPathProvider {
    public init() {}
    public func link(toAgent id: UUID) async -> AgentLink? { nil }
}

/// What the API shows of an agent: its stored record joined with what this gateway knows now (a live socket, the
/// node's version, its mesh path) and the clock (the connection timeout).
struct AgentViews: Sendable {
    let store: any Store
    let coordinator: Coordinator
    let paths: any AgentPathProvider
    let clock: any WallClock
    let connectionTimeout: TimeInterval

    func response(for stored: Agent) async -> AgentResponse {
        let now = clock.now
        let (live, nodeVersion) = await coordinator.liveness(ofAgent: stored.id)
        // Liveness first, then the record: a socket is live only once its connection is written, so the record
        // read now is at least as new (the caller's copy may predate the connection).
        let agent = (try? await store.agent(id: stored.id)) ?? stored
        // A path or RTT of an agent that is not connected would be a stale memory, not a measurement.
        let link = live ? await paths.link(toAgent: agent.id) : nil
        let times = agent.connection
        return AgentResponse(
            id: agent.id, name: agent.name, workspaceID: agent.workspaceID,
            status: AgentStatus(createdAt: agent.createdAt, connection: times, live: live, now: now, timeout: connectionTimeout),
            createdAt: agent.createdAt, firstConnectedAt: times.firstConnectedAt, lastConnectedAt: times.lastConnectedAt,
            disconnectedAt: times.disconnectedAt, lastSeenAt: times.lastSeen(live: live, now: now),
            version: agent.report?.version ?? nodeVersion, apps: agent.report?.apps ?? [], path: link?.path,
            rttMs: link?.rtt.map { ($0.inSeconds * 1_000_000).rounded() / 1000 }
        )
    }

    func responses(for agents: [Agent]) async -> [AgentResponse] {
        var responses: [AgentResponse] = []
        for agent in agents { responses.append(await response(for: agent)) }
        return responses
    }
}
