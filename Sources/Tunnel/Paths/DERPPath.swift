import NIOCore

extension MeshNode {
    /// The relay path: WireGuard datagrams for peers whose endpoint is `.derp(region, key)` go out over `link`,
    /// and what the relay delivers comes in as if from that endpoint (so roaming and cookies work unchanged).
    /// Runs until the task is cancelled; the link reconnects on its own meanwhile.
    /// `onStatus` hears every event but packets (connected, disconnected, health), for logs and status.
    public func runDERP(_ link: any DERPLink, region: Int, onStatus: @escaping @Sendable (DERPClient.Event) -> Void = { _ in }) async {
        let state = self.state
        let loop = channel.eventLoop
        do {
            try await onLoop { $0.derpLinks[region] = link }
        } catch {
            return  // the node is closed
        }
        await link.run { event in
            guard case .packet(let source, let packet) = event else { return onStatus(event) }
            loop.execute { state.value.receive(packet, from: .derp(region: region, node: source)) }
        }
        try? await onLoop { $0.derpLinks[region] = nil }
    }

    /// Sends a peer's traffic through DERP region `region` (its home region) until a direct path is known.
    public func setDERPEndpoint(region: Int, for peer: NodePublicKey) async throws {
        try await onLoop { $0.device.setEndpoint(.derp(region: region, node: peer), for: peer) }
    }
}
