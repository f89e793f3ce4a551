import NIOCore

/// A node as the coordinator describes it: enough to reach it over the mesh.
public struct MeshPeer: Hashable, Sendable {
    public var key: NodePublicKey
    public var address: MeshAddress
    /// Its home DERP region: the path until a direct one is known.
    public var homeRegion: Int?
    /// The UDP endpoints it announced (`ip:port`): candidates for a direct path.
    public var endpoints: [String]

    public init(key: NodePublicKey, address: MeshAddress, homeRegion: Int?, endpoints: [String] = []) {
        (self.key, self.address, self.homeRegion, self.endpoints) = (key, address, homeRegion, endpoints)
    }
}

/// The one seam between code that wants a byte stream to a service of a node (the app proxy, the terminal) and
/// the mesh: open a stream to `service` on `peer`, its pipeline set up by `initializer` before anything is sent.
public protocol MeshDialer: Sendable {
    func openStream<Output: Sendable>(
        to peer: MeshPeer, service: MeshService, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws -> Output
}

extension MeshNode: MeshDialer {
    public func openStream<Output: Sendable>(
        to peer: MeshPeer, service: MeshService, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws -> Output {
        try await ensurePeer(peer)
        return try await openStream(to: peer.key, service: service, initializer: initializer)
    }

    /// Makes `peer` known to WireGuard: its address as allowed IP, and its home region as the path until a direct
    /// one answers (MeshNode+Direct). Does nothing for a peer already configured that way.
    public func ensurePeer(_ peer: MeshPeer) async throws {
        try await onLoop { state in
            let device = state.device
            if device.meshAddress(of: peer.key) != peer.address {
                device.addPeer(peer.key, allowedIPs: [MeshPrefix(peer.address, length: 128)!])
            }
            state.manage(peer)
        }
    }

    /// Forgets `key`: its sessions and streams end and its addresses no longer route (the coordinator said it
    /// is gone), so nothing waits on a node that will not answer.
    public func removePeer(_ key: NodePublicKey) async throws {
        try await onLoop { state in
            state.streams?.close(peer: key, reason: "the peer left the mesh")
            state.direct?.remove(key)
            state.device.removePeer(key)
        }
    }
}
