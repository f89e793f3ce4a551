/// How a node uses direct UDP paths.
public struct DirectPathConfiguration: Sendable {
    /// Keep every peer on DERP: announce no endpoints, send no probes, answer none (`--block-direct-connections`).
    public var blocked: Bool
    /// Announce loopback addresses too: only nodes on one host (tests) can use them, and a remote peer probing
    /// 127.0.0.1 would reach itself.
    public var includeLoopback: Bool
    /// UDP segmentation and receive offload (GSO and GRO) where the kernel and each route allow them
    /// (`--udp-offload`, see `UDPOffload`); off, every datagram is a system call's worth of its own.
    public var udpOffload: Bool

    public init(blocked: Bool = false, includeLoopback: Bool = false, udpOffload: Bool = true) {
        (self.blocked, self.includeLoopback, self.udpOffload) = (blocked, includeLoopback, udpOffload)
    }
}

/// The timers of direct paths, written once. Close to Tailscale's disco (heartbeat 3 s, trust 6.5 s), a little
/// tighter on the heartbeat so that two lost heartbeats in a row do not end a working path.
public enum DirectPathTimers {
    /// A round of probes that got no answer is retried after this, doubling up to `maximumBackoff`.
    public static let initialBackoff: Duration = .seconds(1)
    public static let maximumBackoff: Duration = .seconds(30)
    /// Rounds triggered by the peer's own probes (it is punching now) are at least this far apart.
    public static let minimumRoundGap: Duration = .milliseconds(250)
    /// A direct path in use is pinged this often (it also keeps NAT mappings open).
    public static let heartbeatInterval: Duration = .seconds(2)
    /// A direct path that delivered no pong and no authenticated WireGuard packet for this long is dead: back to
    /// DERP. Three heartbeats' worth, so one or two lost ones are not a failure.
    public static let trustWindow: Duration = .milliseconds(6_500)
    /// An unanswered ping is forgotten after this (a later pong for it is not trusted for a round trip).
    public static let pingTimeout: Duration = .seconds(5)
    /// Peer-reflexive candidates (sources of the peer's pings) kept per peer, newest first.
    public static let maximumLearnedCandidates = 8
    /// A peer with no data either way for this long is idle: its direct path goes back to DERP and nothing probes
    /// it until data flows again, so a gateway does not ping every agent it ever reached every two seconds for
    /// ever (Tailscale's disco stops heartbeats after the same 45 s). The relay is always there, so the first
    /// packets after a pause take it while a probe round finds the direct path again.
    public static let idleTimeout: Duration = .seconds(45)
}

/// The direct-path state of every managed peer: which UDP endpoints it announced or was seen at, which one (if
/// any) carries its WireGuard datagrams now, and when to probe. Clock-free and not thread-safe, as
/// `WireGuardDevice` is: the node calls it on its event loop with the current instant and carries out the outputs.
///
/// Both sides probe each other's candidates (hole punching needs both to send); the first candidate whose pong
/// comes back from the address pinged becomes the path. A ping from an address not yet known adds it as a
/// candidate (that is how a node behind NAT is found by its peer) and brings the next round forward.
final class DirectPaths {
    enum Output: Equatable {
        /// Send this probe datagram over UDP.
        case transmit([UInt8], to: Endpoint)
        /// From now on, WireGuard datagrams to this peer go to this endpoint (direct, or back to DERP).
        case route(NodePublicKey, via: Endpoint)
    }

    struct Peer {
        let probeKey: [UInt8]
        var derp: Endpoint?
        var announced: [Endpoint] = []
        var learned: [Endpoint] = []
        /// The direct endpoint in use, its latest round trip, and when it last proved alive.
        var direct: Endpoint?
        var rtt: Duration?
        var lastHeard: ContinuousClock.Instant?
        var lastHeartbeat: ContinuousClock.Instant?
        var pings: [[UInt8]: (endpoint: Endpoint, sentAt: ContinuousClock.Instant)] = [:]
        var nextRound: ContinuousClock.Instant
        var lastRound: ContinuousClock.Instant?
        var backoff = DirectPathTimers.initialBackoff
        /// No data for `idleTimeout`: not probed, not heartbeated.
        var idle = false

        var candidates: [Endpoint] { announced + learned.filter { !announced.contains($0) } }
    }

    let privateKey: NodePrivateKey
    let configuration: DirectPathConfiguration
    /// Whether this node's socket can send to an endpoint now (an IPv4 socket cannot reach IPv6 addresses, and a
    /// host with no route to it must not try: SwiftNIO closes a datagram channel on ENETUNREACH). Asked before
    /// every probe, since routes change.
    let canReach: (Endpoint) -> Bool
    private(set) var peers: [NodePublicKey: Peer] = [:]
    private let makeTxid: () -> [UInt8]

    init(
        privateKey: NodePrivateKey, configuration: DirectPathConfiguration, canReach: @escaping (Endpoint) -> Bool = { _ in true },
        makeTxid: @escaping () -> [UInt8] = { AEAD.randomBytes(DirectProbe.txidLength) }
    ) {
        (self.privateKey, self.configuration, self.canReach, self.makeTxid) = (privateKey, configuration, canReach, makeTxid)
    }

    /// Manages `key`: its relay path and the endpoints it announced. New candidates start a round at once.
    func configure(_ key: NodePublicKey, derp: Endpoint?, candidates: [Endpoint], now: ContinuousClock.Instant) -> [Output] {
        guard var peer = peers[key] ?? DirectProbe.key(privateKey, key).map({ Peer(probeKey: $0, nextRound: now) }) else { return [] }
        let announced = configuration.blocked ? [] : candidates.filter(canReach)
        var outputs: [Output] = []
        if peer.derp != derp {
            peer.derp = derp
            if peer.direct == nil, let derp { outputs.append(.route(key, via: derp)) }
        }
        if peer.announced != announced {
            // The peer withdrew the endpoint in use (it restarted on another port, or lost that address): it is
            // gone, so go back to DERP now rather than after the trust window.
            if let direct = peer.direct, peer.announced.contains(direct), !announced.contains(direct) {
                (peer.direct, peer.rtt, peer.lastHeard) = (nil, nil, nil)
                peer.learned.removeAll { $0 == direct }
                if let derp = peer.derp { outputs.append(.route(key, via: derp)) }
            }
            peer.announced = announced
            (peer.backoff, peer.nextRound) = (DirectPathTimers.initialBackoff, now)
        }
        peers[key] = peer
        return outputs
    }

    func remove(_ key: NodePublicKey) { peers[key] = nil }

    /// The direct endpoint in use for `key` and its latest round trip; nil while on DERP.
    func directPath(of key: NodePublicKey) -> (endpoint: Endpoint, rtt: Duration?)? {
        peers[key].flatMap { peer in peer.direct.map { ($0, peer.rtt) } }
    }

    /// A probe datagram from `source`. Anything not authentic, from an unmanaged peer, or while blocked is dropped.
    func receive(_ datagram: [UInt8], from source: Endpoint, now: ContinuousClock.Instant) -> [Output] {
        guard !configuration.blocked, let sender = DirectProbe.sender(of: datagram), var peer = peers[sender],
            let message = DirectProbe.open(datagram, key: peer.probeKey)
        else { return [] }
        defer { peers[sender] = peer }
        switch message {
        case .ping(let txid):
            if !peer.candidates.contains(source), canReach(source) {
                peer.learned = Array(([source] + peer.learned).prefix(DirectPathTimers.maximumLearnedCandidates))
            }
            if peer.direct == nil {
                // The peer is punching now: answer with a round soon, whatever the backoff had grown to.
                let earliest = peer.lastRound.map { $0 + DirectPathTimers.minimumRoundGap } ?? now
                (peer.backoff, peer.nextRound) = (DirectPathTimers.initialBackoff, min(peer.nextRound, max(now, earliest)))
            }
            return [.transmit(DirectProbe.seal(.pong(txid: txid, observed: source), from: privateKey.publicKey, key: peer.probeKey), to: source)]
        case .pong(let txid, _):
            // Only from the address pinged: a pong relayed from elsewhere proves nothing about that path.
            guard let ping = peer.pings[txid], ping.endpoint == source else { return [] }
            peer.pings[txid] = nil
            let rtt = now - ping.sentAt
            if peer.direct == nil {
                (peer.direct, peer.rtt, peer.lastHeard, peer.lastHeartbeat) = (source, rtt, now, now)
                peer.backoff = DirectPathTimers.initialBackoff
                return [.route(sender, via: source)]
            }
            if peer.direct == source { (peer.rtt, peer.lastHeard) = (rtt, now) }
            return []
        }
    }

    /// Runs every peer's timers: probe rounds with backoff while on DERP, heartbeats on a direct path, and the
    /// fall-back to DERP when a direct path goes quiet. `lastReceipt` is WireGuard's latest authenticated packet
    /// from a peer (any traffic proves the path alive, not only pongs); `lastData` its latest data packet either
    /// way (a peer without any for `idleTimeout` rests on DERP).
    func tick(
        now: ContinuousClock.Instant, lastReceipt: (NodePublicKey) -> (endpoint: Endpoint, at: ContinuousClock.Instant)?,
        lastData: (NodePublicKey) -> ContinuousClock.Instant?
    ) -> [Output] {
        guard !configuration.blocked else { return [] }
        var outputs: [Output] = []
        for (key, var peer) in peers {
            peer.pings = peer.pings.filter { now - $0.value.sentAt < DirectPathTimers.pingTimeout }
            let inUse = lastData(key).map { now - $0 < DirectPathTimers.idleTimeout } ?? false
            // Without a relay to fall back on, a direct path is all there is: it stays, idle or not.
            if !inUse, peer.derp != nil {
                if !peer.idle {
                    peer.idle = true
                    peer.pings.removeAll()
                    if peer.direct != nil, let derp = peer.derp {
                        (peer.direct, peer.rtt, peer.lastHeard) = (nil, nil, nil)
                        outputs.append(.route(key, via: derp))
                    }
                }
                peers[key] = peer
                continue
            }
            if peer.idle {
                // Data again: look for the direct path at once.
                peer.idle = false
                (peer.backoff, peer.nextRound) = (DirectPathTimers.initialBackoff, now)
            }
            if let direct = peer.direct {
                var heard = peer.lastHeard ?? now
                if let receipt = lastReceipt(key), receipt.endpoint == direct { heard = max(heard, receipt.at) }
                peer.lastHeard = heard
                if now - heard > DirectPathTimers.trustWindow || !canReach(direct) {
                    (peer.direct, peer.rtt, peer.lastHeard) = (nil, nil, nil)
                    (peer.backoff, peer.nextRound) = (DirectPathTimers.initialBackoff, now + DirectPathTimers.initialBackoff)
                    if let derp = peer.derp { outputs.append(.route(key, via: derp)) }
                } else if now - (peer.lastHeartbeat ?? heard) >= DirectPathTimers.heartbeatInterval {
                    peer.lastHeartbeat = now
                    outputs.append(ping(&peer, direct, now: now))
                }
            }
            if peer.direct == nil, !peer.candidates.isEmpty, now >= peer.nextRound {
                outputs += peer.candidates.filter(canReach).map { ping(&peer, $0, now: now) }
                peer.lastRound = now
                peer.nextRound = now + peer.backoff
                peer.backoff = min(peer.backoff * 2, DirectPathTimers.maximumBackoff)
            }
            peers[key] = peer
        }
        return outputs
    }

    private func ping(_ peer: inout Peer, _ endpoint: Endpoint, now: ContinuousClock.Instant) -> Output {
        let txid = makeTxid()
        peer.pings[txid] = (endpoint, now)
        return .transmit(DirectProbe.seal(.ping(txid: txid), from: privateKey.publicKey, key: peer.probeKey), to: endpoint)
    }
}
