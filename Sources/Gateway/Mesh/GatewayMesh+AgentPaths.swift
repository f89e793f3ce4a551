import Foundation
import Synchronization
import Tunnel

/// The latest ICMPv6 echo to an agent: when it was sent, and its round trip (nil: no reply in time).
struct AgentEcho: Sendable {
    var sentAt: ContinuousClock.Instant
    var rtt: Duration?
}

/// The gateway node's path and round trip to each agent it knows, for the API.
///
/// Round trip: the smoothed RTT of the mesh-stream connection when there is one (it measures every packet), else
/// the direct path's latest probe, else the latest echo. Echoes run in the background, each known agent once as soon as it is learned and then every
/// `echoInterval`, rather than lazily on an API read: a read then never waits on the network (nor on a dead
/// agent's timeout), an 8-byte echo per agent every 15 s costs next to nothing, and it keeps the WireGuard
/// session warm for the next app request.
extension GatewayMesh: AgentPathProvider {
    static let echoInterval: Duration = .seconds(15)
    /// How often to look for agents that are due; short, so a newly learned agent gets its echo soon.
    static let echoCheckInterval: Duration = .seconds(1)
    static let echoTimeout: Duration = .seconds(5)

    public func link(toAgent id: UUID) async -> AgentLink? {
        let address = MeshAddress.agent(id)
        guard let peer = session.withLock({ $0.peers[address] }), let endpoint = try? await node.path(to: peer.key) else { return nil }
        let path: AgentPath =
            switch endpoint {
            case .derp(let region, _): .derp(region: region)
            case .udp: .direct(endpoint: endpoint.description)
            }
        if let statistics = try? await node.streamStatistics(with: peer.key), statistics.hasRTTSample {
            return AgentLink(path: path, rtt: statistics.smoothedRTT)
        }
        if case .udp = endpoint, let probed = try? await node.directPath(to: peer.key)?.rtt { return AgentLink(path: path, rtt: probed) }
        return AgentLink(path: path, rtt: echoes.withLock { $0[address]?.rtt })
    }

    /// Runs until cancelled: echoes every agent the coordinator told this node about, when due.
    func echoAgents() async {
        while !Task.isCancelled {
            let now = ContinuousClock.now
            let known = session.withLock { Array($0.peers.values) }
            let due = echoes.withLock { echoes in
                // Agents that are gone take their echoes with them.
                echoes = echoes.filter { address, _ in known.contains { $0.address == address } }
                return known.filter { peer in echoes[peer.address].map { now - $0.sentAt >= Self.echoInterval } ?? true }
            }
            await withTaskGroup(of: (MeshAddress, AgentEcho).self) { group in
                for peer in due {
                    group.addTask {
                        let sentAt = ContinuousClock.now
                        return (peer.address, AgentEcho(sentAt: sentAt, rtt: try? await self.node.ping(peer.address, timeout: Self.echoTimeout)))
                    }
                }
                for await (address, echo) in group { echoes.withLock { $0[address] = echo } }
            }
            try? await Task.sleep(for: Self.echoCheckInterval)
        }
    }
}
