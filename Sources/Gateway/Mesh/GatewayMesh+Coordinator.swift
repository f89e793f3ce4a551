import Foundation
import NIOCore
import Synchronization
import Tunnel

/// The gateway in the coordinator: it joins as `.gateway`, publishes its node, and turns every peer update into
/// WireGuard configuration. An agent is dialed by id: the first stream asks for a tunnel and waits for the
/// agent's node to arrive (an agent's mesh address follows from its id, so that is how its node is recognised).
extension GatewayMesh {
    /// How long `openStream(toAgent:)` waits for the coordinator to produce the node of an agent it knows.
    public static let agentLookupTimeout: Duration = .seconds(5)

    /// Runs until cancelled: the in-process coordinator session of this node.
    public func coordinate(with coordinator: Coordinator) async {
        let (connection, updates) = await coordinator.connect(.gateway)
        session.withLock { $0.coordinator = (coordinator, connection) }
        await withTaskCancellationHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await self.node.announce(homeRegion: self.peer.homeRegion ?? 0, version: BuildInfo.version) { me in
                        await coordinator.receive(Array(CoordinatorWire.encode(CoordinatorRequest.updateSelf(me)).utf8), from: connection)
                    }
                }
                for await outgoing in updates {
                    guard case .message(.peerUpdates(let peerUpdates)) = outgoing else { continue }
                    for update in peerUpdates { await apply(update) }
                }
                group.cancelAll()
            }
        } onCancel: {
            Task { await coordinator.release(connection) }
        }
        session.withLock { $0.coordinator = nil }
    }

    private func apply(_ update: PeerUpdate) async {
        switch update {
        case .node(let described):
            guard let address = described.addresses.first?.address else { return }
            let peer = MeshPeer(key: described.key, address: address, homeRegion: described.homeRegion, endpoints: described.endpoints)
            try? await node.ensurePeer(peer)
            let waiters = session.withLock { session in
                session.peers[address] = peer
                return session.waiters.removeValue(forKey: address) ?? []
            }
            for waiter in waiters { waiter.resume(returning: peer) }
        case .lost:
            break  // keep the session: the agent is expected back
        case .gone(let key):
            session.withLock { session in session.peers = session.peers.filter { $0.value.key != key } }
            try? await node.removePeer(key)
        }
    }

    /// Opens a stream to `service` of agent `id`, asking the coordinator for a tunnel the first time.
    public func openStream<Output: Sendable>(
        toAgent id: UUID, service: MeshService, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws -> Output {
        try await openStream(to: agentPeer(id), service: service, initializer: initializer)
    }

    private func agentPeer(_ id: UUID) async throws -> MeshPeer {
        let address = MeshAddress.agent(id)
        let (known, coordinator) = session.withLock { ($0.peers[address], $0.coordinator) }
        if let known { return known }
        guard let (coordinator, connection) = coordinator else { throw GatewayMeshError.noCoordinator }
        // An agent that never connected (or left) will not answer within the timeout: say so at once. One that is
        // lost, or connecting right now, is waited for.
        guard await coordinator.hasAgent(id) else { throw GatewayMeshError.agentNotConnected(id) }
        return try await withThrowingTaskGroup(of: MeshPeer.self) { group in
            group.addTask {
                try await withCheckedThrowingContinuation { continuation in
                    let ready = self.session.withLock { session -> MeshPeer? in
                        if let peer = session.peers[address] { return peer }
                        session.waiters[address, default: []].append(continuation)
                        return nil
                    }
                    if let ready { continuation.resume(returning: ready) }
                }
            }
            group.addTask {
                let request = CoordinatorWire.encode(CoordinatorRequest.addTunnel(.agent(id)))
                await coordinator.receive(Array(request.utf8), from: connection)
                try await Task.sleep(for: Self.agentLookupTimeout)
                throw GatewayMeshError.agentNotConnected(id)
            }
            defer {
                group.cancelAll()
                // A waiter left behind by the timeout is failed so its task can end.
                let stale = session.withLock { $0.waiters.removeValue(forKey: address) ?? [] }
                for waiter in stale { waiter.resume(throwing: GatewayMeshError.agentNotConnected(id)) }
            }
            return try await group.next()!
        }
    }
}

/// What the gateway's node knows from the coordinator; guarded by `GatewayMesh.session`.
struct GatewayMeshSession {
    var coordinator: (Coordinator, ConnectionID)?
    var peers: [MeshAddress: MeshPeer] = [:]
    var waiters: [MeshAddress: [CheckedContinuation<MeshPeer, any Error>]] = [:]
}

public enum GatewayMeshError: Error, CustomStringConvertible {
    case noCoordinator
    case agentNotConnected(UUID)

    public var description: String {
        switch self {
        case .noCoordinator: "the gateway's mesh node is not in the coordinator"
        case .agentNotConnected(let id): "agent \(id) is not connected to the coordinator"
        }
    }
}
