/// Everything the device knows about one peer. Mutated only by `WireGuardDevice`, in its isolation domain.
final class WireGuardPeer {
    enum Handshake {
        case idle
        /// We sent an initiation and await the response.
        case initiationSent(state: Noise.State, localIndex: UInt32)
    }

    // Static after construction
    let publicKey: NodePublicKey
    let presharedKey: [UInt8]

    // Configuration, changed by the owner
    var allowedIPs: [MeshPrefix]
    /// Where packets to this peer go; follows the latest authenticated packet (roaming).
    var endpoint: Endpoint?
    /// Whether `endpoint` follows authenticated packets (see `WireGuardDevice.setRoaming`).
    var roams = true
    /// The latest authenticated packet's source and arrival.
    var lastReceipt: (endpoint: Endpoint, at: ContinuousClock.Instant)?
    /// The latest data packet either way (keepalives and handshakes aside): whether the peer is in use.
    var lastData: ContinuousClock.Instant?

    // Sessions
    var handshake: Handshake = .idle
    var current: Keypair?
    var previous: Keypair?
    /// Responder's new session, unused for sending until the initiator's first packet confirms it.
    var next: Keypair?

    // Handshake bookkeeping
    var attemptStartedAt: ContinuousClock.Instant?
    var lastInitiationSentAt: ContinuousClock.Instant?
    var retransmitAt: ContinuousClock.Instant?
    var lastHandshakeCompletedAt: ContinuousClock.Instant?
    /// Newest TAI64N accepted from this peer; older or equal ones are replays.
    var latestTimestamp = [UInt8](repeating: 0, count: 12)
    var lastInitiationConsumedAt: ContinuousClock.Instant?
    /// mac1 of our last handshake message: the associated data of a cookie reply to it.
    var lastMAC1: [UInt8] = []
    var cookie: (value: [UInt8], receivedAt: ContinuousClock.Instant)?
    /// Set once we asked for a rekey on receive, so an old session does not trigger one per packet.
    var rekeyRequestedOnReceive = false

    // Timers (deadlines checked by `WireGuardDevice.tick`)
    /// We received data: if we send nothing by then, send a keepalive.
    var keepaliveDeadline: ContinuousClock.Instant?
    /// We sent data: if nothing comes back by then, start a new handshake.
    var newHandshakeDeadline: ContinuousClock.Instant?

    /// Packets waiting for a session; bounded, oldest dropped first (fresher packets matter more).
    var queue: [[UInt8]] = []

    // Counters, for tests and metrics
    var handshakesCompleted = 0

    init(publicKey: NodePublicKey, presharedKey: [UInt8], allowedIPs: [MeshPrefix], endpoint: Endpoint?) {
        (self.publicKey, self.presharedKey, self.allowedIPs, self.endpoint) = (publicKey, presharedKey, allowedIPs, endpoint)
    }

    func validCookie(now: ContinuousClock.Instant) -> [UInt8]? {
        guard let cookie, now - cookie.receivedAt < WireGuardTimers.cookieLifetime else { return nil }
        return cookie.value
    }

    /// Local indices this peer holds, so the device can release them.
    var localIndices: [UInt32] {
        var indices = [current?.localIndex, previous?.localIndex, next?.localIndex].compactMap { $0 }
        if case .initiationSent(_, let index) = handshake { indices.append(index) }
        return indices
    }

    var isHandshaking: Bool {
        if case .initiationSent = handshake { return true }
        return false
    }

    /// The longest allowed prefix containing `address`, or -1.
    func routeLength(to address: [UInt8]) -> Int {
        address.withUnsafeBytes { routeLength(to: $0) }
    }

    /// The same for an address read in place (every received packet's source is checked).
    func routeLength(to address: UnsafeRawBufferPointer) -> Int {
        var longest = -1
        for prefix in allowedIPs where prefix.length > longest && prefix.contains(address) { longest = prefix.length }
        return longest
    }

    /// Whether a rekey is due before sending more (WireGuard: the initiator rekeys after RekeyAfterTime or
    /// RekeyAfterMessages).
    func rekeyDue(now: ContinuousClock.Instant) -> Bool {
        guard let current, current.isInitiator else { return false }
        return now - current.createdAt >= WireGuardTimers.rekeyAfterTime || current.sendCounter >= WireGuardTimers.rekeyAfterMessages
    }

    // MARK: Receiving sessions

    enum Slot { case current, next, previous }

    /// Which of the sessions has local index `index`.
    func slot(holding index: UInt32) -> Slot? {
        if current?.localIndex == index { return .current }
        if next?.localIndex == index { return .next }
        if previous?.localIndex == index { return .previous }
        return nil
    }

    /// The receive key of the session in `slot`, if it may still receive.
    func receiveKey(in slot: Slot, now: ContinuousClock.Instant) -> [UInt8]? {
        let keypair: Keypair? = switch slot {
        case .current: current
        case .next: next
        case .previous: previous
        }
        guard let keypair, keypair.canReceive(now: now) else { return nil }
        return keypair.receiveKey
    }

    /// Records an authenticated counter in its session's replay window, in place (a copy of the session would
    /// copy the window per packet); false for a replay.
    func accept(_ counter: UInt64, in slot: Slot) -> Bool {
        switch slot {
        case .current: current?.replay.accept(counter) ?? false
        case .next: next?.replay.accept(counter) ?? false
        case .previous: previous?.replay.accept(counter) ?? false
        }
    }
}

/// Where a peer's datagrams travel. The session layer is transport-agnostic; paths map these to sockets.
public enum Endpoint: Hashable, Sendable, CustomStringConvertible {
    /// A UDP address: 4 (IPv4) or 16 (IPv6) address bytes and a port.
    case udp(address: [UInt8], port: UInt16)
    /// Relayed through the DERP region with this id to the node with this key (DERP addresses keys, not IPs).
    case derp(region: Int, node: NodePublicKey)

    /// What a cookie is bound to (whitepaper: the source IP address and port).
    var cookieSource: [UInt8] {
        switch self {
        case .udp(let address, let port): address + [UInt8(port >> 8), UInt8(port & 0xff)]
        case .derp(let region, let node): [0xde, 0x77] + withUnsafeBytes(of: Int64(region).bigEndian) { Array($0) } + node.bytes
        }
    }

    public var description: String {
        switch self {
        case .udp(let address, let port):
            address.count == 4 ? address.map(String.init).joined(separator: ".") + ":\(port)" : "[\(MeshAddress(bytes: address)?.description ?? "?")]:\(port)"
        case .derp(let region, let node): "derp(\(region), \(node.shortForm))"
        }
    }
}
