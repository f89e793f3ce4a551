import NIOCore
import NIOPosix

/// Direct UDP paths: a peer the coordinator described (home region, announced endpoints) is managed by
/// `DirectPaths`, which probes its endpoints beside WireGuard and routes its datagrams directly once one answers,
/// back over DERP when that path goes quiet. WireGuard's own roaming is off for such a peer: a packet that still
/// arrives over the relay (the peer has not switched yet) must not undo the direct path, nor a stray direct
/// packet the fallback.
extension MeshNode {
    /// The UDP endpoints peers may try, as the coordinator carries them (`ip:port`, IPv6 in brackets): the
    /// socket's port on each address of this host of the socket's family (only the bound one when the socket is
    /// bound to one). Loopback only with `includeLoopback`; IPv6 link-local never (it needs a scope). Empty when
    /// direct paths are blocked. Interfaces come and go, so callers re-read it and re-announce on change.
    public func localEndpoints() -> [String] {
        guard !directConfiguration.blocked, let local = channel.localAddress, let port = local.port else { return [] }
        let includeLoopback = directConfiguration.includeLoopback
        let bound = local.ipAddress.flatMap { ip in IPAddressBytes.parse(ip, family: local.protocol == .inet6 ? AF_INET6 : AF_INET) } ?? []
        var addresses: [[UInt8]]
        if bound.contains(where: { $0 != 0 }) {
            addresses = [bound]
        } else {
            let devices = (try? System.enumerateDevices()) ?? []
            addresses = devices.compactMap { device in
                device.address.flatMap { address in
                    address.protocol == local.protocol ? Endpoint(address)?.addressBytes : nil
                }
            }
        }
        var seen = Set<[UInt8]>()
        return addresses.filter { bytes in
            let loopback = bytes.count == 4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
            let linkLocal = bytes.count == 16 && bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80
            return (includeLoopback || !loopback) && !linkLocal && seen.insert(bytes).inserted
        }.compactMap { bytes in IPAddressBytes.format(bytes).map { bytes.count == 4 ? "\($0):\(port)" : "[\($0)]:\(port)" } }
    }

    /// How often the node's UDP endpoints are re-read and re-announced when changed.
    public static let endpointRefreshInterval: Duration = .seconds(30)

    /// Hands `publish` this node as the coordinator should describe it, then again whenever its UDP endpoints
    /// change (interfaces come and go), until cancelled. The gateway and agents announce themselves through this.
    public func announce(homeRegion: Int, version: String, publish: (CoordinatorNode) async -> Void) async {
        var announced: [String]?
        while !Task.isCancelled {
            let endpoints = localEndpoints()
            if endpoints != announced {
                await publish(CoordinatorNode(
                    key: privateKey.publicKey, addresses: [MeshPrefix(address, length: 128)!], homeRegion: homeRegion,
                    endpoints: Array(endpoints.prefix(CoordinatorWire.maxEndpoints)), version: version
                ))
                announced = endpoints
            }
            try? await Task.sleep(for: Self.endpointRefreshInterval)
        }
    }

    /// The direct endpoint that carries `peer`'s datagrams now and the probes' latest round trip on it; nil while
    /// the peer is on DERP (or unknown).
    public func directPath(to peer: NodePublicKey) async throws -> (endpoint: Endpoint, rtt: Duration?)? {
        try await onLoop { $0.direct?.directPath(of: peer) }
    }
}

extension MeshNode.LoopState {
    /// Carries out what `DirectPaths` decided: probes go out on the socket, routes become WireGuard endpoints.
    func handleDirect(_ outputs: [DirectPaths.Output]) {
        guard !outputs.isEmpty else { return }
        for output in outputs {
            switch output {
            case .transmit(let datagram, let endpoint):
                guard let channel, let remote = endpoint.socketAddress else { continue }
                channel.write(AddressedEnvelope(remoteAddress: remote, data: channel.allocator.buffer(bytes: datagram)), promise: nil)
            case .route(let peer, let endpoint):
                device.setEndpoint(endpoint, for: peer)
            }
        }
        channel?.flush()
    }

    /// Hands `peer` to the direct-path manager: its relay and announced endpoints (unparseable ones skipped).
    func manage(_ peer: MeshPeer) {
        guard let direct, peer.homeRegion != nil || !peer.endpoints.isEmpty else { return }
        device.setRoaming(false, for: peer.key)
        let derp = peer.homeRegion.map { Endpoint.derp(region: $0, node: peer.key) }
        handleDirect(direct.configure(peer.key, derp: derp, candidates: peer.endpoints.compactMap(Endpoint.init(text:)), now: .now))
    }
}

extension Endpoint {
    /// A UDP endpoint from its text (`1.2.3.4:5`, `[2001:db8::1]:5`), as the coordinator carries endpoints.
    public init?(text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard let bytes = IPAddressBytes.parse(String(host), family: AF_INET) ?? IPAddressBytes.parse(String(host), family: AF_INET6) else {
            return nil
        }
        self = .udp(address: bytes, port: port)
    }

    var addressBytes: [UInt8]? {
        if case .udp(let address, _) = self { return address }
        return nil
    }
}
