import NIOCore

extension MeshNode {
    /// Opens a stream to `peer` for `service`. The initializer configures the stream's pipeline on its event
    /// loop before anything is sent; no round trip is waited for, so the service header and the first request
    /// bytes leave together. A refusal arrives on the channel as `MeshStreamError.refused`.
    public func openStream<Output: Sendable>(
        to peer: NodePublicKey, service: MeshService, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws -> Output {
        let state = self.state
        return try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<Output> in
            let node = state.value
            guard let streams = node.streams, node.device.meshAddress(of: peer) != nil else {
                return node.channel!.eventLoop.makeFailedFuture(MeshStreamError.unknownPeer)
            }
            return streams.openStream(to: peer, service: service, initializer: initializer)
        }.get()
    }

    /// Opens a stream with an empty pipeline.
    public func openStream(to peer: NodePublicKey, service: MeshService) async throws -> any Channel {
        try await openStream(to: peer, service: service) { channel in channel.eventLoop.makeSucceededFuture(channel) }
    }

    /// Decides, on the node's event loop, what to do with each stream a peer opens. Without a listener every
    /// stream is refused.
    public func listen(_ acceptor: @escaping @Sendable (MeshStreamRequest) -> MeshStreamDecision) async throws {
        try await onLoop { $0.streams?.acceptor = acceptor }
    }

    /// Counters of the connection to `peer`, if there is one.
    public func streamStatistics(with peer: NodePublicKey) async throws -> MeshConnectionStatistics? {
        try await onLoop { $0.streams?.statistics(with: peer) }
    }
}
