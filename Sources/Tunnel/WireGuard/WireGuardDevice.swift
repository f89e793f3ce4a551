import Foundation
import NIOCore

/// A WireGuard node: handshakes, sessions, timers and allowed IPs for a set of peers, byte-compatible with
/// WireGuard (and tested against wireguard-go).
///
/// Transport-agnostic and clock-free: paths hand in `(endpoint, datagram)` with the current instant and get
/// back what to transmit and what to deliver; `tick(now:)` runs the timers. Not thread-safe by design: its
/// owner confines it to one isolation domain (the path's event loop), so no lock is taken per packet.
public final class WireGuardDevice {
    public enum Output: Equatable {
        /// Send this datagram to the endpoint.
        case transmit([UInt8], to: Endpoint)
        /// An authenticated IPv6 packet from a peer, source address already checked against its allowed IPs.
        case deliver([UInt8], from: NodePublicKey)
    }

    /// Why a datagram was dropped; counted so tests and metrics can tell silence apart from loss.
    public enum DropReason: String, CaseIterable, Sendable {
        case malformed, badMAC1, unknownPeer, replayedTimestamp, initiationFlood, authentication, unknownIndex
        case replayedCounter, expiredSession, disallowedSource, noRoute, queueFull, handshakeGaveUp
    }

    public struct Configuration: Sendable {
        /// Initiations per second above which the device is "under load" and demands cookies (mac2).
        public var underLoadInitiationsPerSecond = 64
        /// Packets held per peer while a handshake is in flight.
        public var queueLimit = 128
        public init() {}
    }

    public let privateKey: NodePrivateKey
    let configuration: Configuration
    var peers: [NodePublicKey: WireGuardPeer] = [:]
    /// Local session/handshake index → peer. Random 32-bit values, as WireGuard requires.
    var indices: [UInt32: NodePublicKey] = [:]
    var cookieChecker = CookieChecker()
    var recentInitiations: [ContinuousClock.Instant] = []
    var underLoadUntil: ContinuousClock.Instant?
    public private(set) var drops: [DropReason: Int] = [:]

    // Injected for known-answer tests; random and the wall clock otherwise.
    let makeEphemeral: () -> [UInt8]
    let makeTimestamp: () -> [UInt8]
    var random: RandomSource

    public init(
        privateKey: NodePrivateKey, configuration: Configuration = .init(),
        makeEphemeral: @escaping () -> [UInt8] = Curve25519.generatePrivateKey,
        makeTimestamp: @escaping () -> [UInt8] = WireGuardDevice.wallClockTimestamp,
        random: any RandomNumberGenerator = SystemRandomNumberGenerator()
    ) {
        Sodium.start()
        self.privateKey = privateKey
        self.configuration = configuration
        self.makeEphemeral = makeEphemeral
        self.makeTimestamp = makeTimestamp
        self.random = RandomSource(base: random)
    }

    public static func wallClockTimestamp() -> [UInt8] {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return TAI64N.stamp(secondsSince1970: UInt64(now.tv_sec), nanoseconds: UInt32(now.tv_nsec))
    }

    // MARK: Peers

    /// Adds `key`, or updates its allowed IPs. As in WireGuard, a prefix belongs to one peer: another peer that
    /// held it loses it (a node that restarted with a new key takes its address over from the stale one).
    public func addPeer(_ key: NodePublicKey, allowedIPs: [MeshPrefix], endpoint: Endpoint? = nil, presharedKey: [UInt8] = Noise.zeroPresharedKey) {
        for (other, peer) in peers where other != key && peer.allowedIPs.contains(where: allowedIPs.contains) {
            peer.allowedIPs.removeAll(where: allowedIPs.contains)
        }
        if let existing = peers[key] {
            existing.allowedIPs = allowedIPs
            if let endpoint { existing.endpoint = endpoint }
            return
        }
        peers[key] = WireGuardPeer(publicKey: key, presharedKey: presharedKey, allowedIPs: allowedIPs, endpoint: endpoint)
    }

    public func removePeer(_ key: NodePublicKey) {
        guard let peer = peers.removeValue(forKey: key) else { return }
        for index in peer.localIndices { indices[index] = nil }
    }

    public func setEndpoint(_ endpoint: Endpoint, for key: NodePublicKey) { peers[key]?.endpoint = endpoint }
    /// Whether `key`'s endpoint follows its authenticated packets (WireGuard's roaming; the default). Off for peers
    /// whose path a path manager chooses, so a packet that still arrives over DERP does not undo a direct path.
    public func setRoaming(_ roams: Bool, for key: NodePublicKey) { peers[key]?.roams = roams }
    /// Where and when `key`'s latest authenticated packet arrived.
    public func lastReceipt(of key: NodePublicKey) -> (endpoint: Endpoint, at: ContinuousClock.Instant)? { peers[key]?.lastReceipt }
    /// When a data packet last went to or came from `key` (one waiting for a handshake counts).
    public func lastData(of key: NodePublicKey) -> ContinuousClock.Instant? { peers[key]?.lastData }
    public func endpoint(of key: NodePublicKey) -> Endpoint? { peers[key]?.endpoint }
    /// The peer's own mesh address: its first single-address allowed IP.
    public func meshAddress(of key: NodePublicKey) -> MeshAddress? { peers[key]?.allowedIPs.first { $0.length == 128 }?.address }
    public func handshakesCompleted(with key: NodePublicKey) -> Int { peers[key]?.handshakesCompleted ?? 0 }
    public func hasSession(with key: NodePublicKey) -> Bool { peers[key]?.current != nil }

    // MARK: Sending

    /// Encrypts an IPv6 packet to the peer whose allowed IPs hold its destination (longest prefix wins).
    /// Without a session the packet waits while a handshake runs.
    public func send(_ packet: [UInt8], now: ContinuousClock.Instant) -> [Output] {
        guard let header = IPv6Header(packet) else { return drop(.malformed) }
        let best = peers.values.max { $0.routeLength(to: header.destination) < $1.routeLength(to: header.destination) }
        guard let peer = best, peer.routeLength(to: header.destination) >= 0 else { return drop(.noRoute) }
        return send(packet, to: peer, now: now)
    }

    /// Starts a handshake now, whatever the session's age (operators, tests).
    public func forceHandshake(with key: NodePublicKey, now: ContinuousClock.Instant) -> [Output] {
        guard let peer = peers[key] else { return [] }
        peer.lastInitiationSentAt = nil
        return initiateHandshake(peer, now: now)
    }

    func send(_ packet: [UInt8], to peer: WireGuardPeer, now: ContinuousClock.Instant) -> [Output] {
        if !packet.isEmpty { peer.lastData = now }
        var datagram = TransportCodec.datagram(for: packet)
        guard let endpoint = seal(&datagram, for: peer, now: now, isData: !packet.isEmpty) else {
            if !packet.isEmpty {
                if peer.queue.count >= configuration.queueLimit {
                    peer.queue.removeFirst()
                    count(.queueFull)
                }
                peer.queue.append(packet)
            }
            return initiateHandshake(peer, now: now)
        }
        var outputs: [Output] = [.transmit(Array(datagram.readableBytesView), to: endpoint)]
        if peer.rekeyDue(now: now) { outputs += initiateHandshake(peer, now: now) }
        return outputs
    }

    /// The data path's send: seals `datagram` in place (`TransportCodec.headerLength` bytes of room, then an IPv6
    /// packet to `key`'s own mesh address, so no route lookup) and returns where it goes. nil when the session
    /// cannot send it as it is (none yet, or a rekey is due): then `send(_:now:)` with the packet does the rest.
    public func sealTransport(_ datagram: inout ByteBuffer, to key: NodePublicKey, now: ContinuousClock.Instant) -> Endpoint? {
        guard let peer = peers[key], !peer.rekeyDue(now: now), let endpoint = seal(&datagram, for: peer, now: now, isData: true) else { return nil }
        peer.lastData = now
        return endpoint
    }

    /// Seals with `peer`'s current session if it can send; nil when there is none or no endpoint.
    private func seal(_ datagram: inout ByteBuffer, for peer: WireGuardPeer, now: ContinuousClock.Instant, isData: Bool) -> Endpoint? {
        guard peer.current?.canSend(now: now) == true, let endpoint = peer.endpoint else { return nil }
        TransportCodec.seal(&datagram, keypair: &peer.current!)
        noteSent(peer, now: now, isData: isData)
        return endpoint
    }

    func initiateHandshake(_ peer: WireGuardPeer, now: ContinuousClock.Instant) -> [Output] {
        guard let endpoint = peer.endpoint else { return [] }
        // At most one initiation per RekeyTimeout per peer; retransmissions come from tick().
        if let sent = peer.lastInitiationSentAt, now - sent < WireGuardTimers.rekeyTimeout { return [] }
        if case .initiationSent(_, let oldIndex) = peer.handshake { indices[oldIndex] = nil }
        if peer.attemptStartedAt == nil { peer.attemptStartedAt = now }
        let localIndex = allocateIndex(for: peer.publicKey)
        guard case (var message, let state)? = try? Noise.createInitiation(
            localStatic: privateKey, remoteStatic: peer.publicKey, ephemeral: makeEphemeral(), timestamp: makeTimestamp(), senderIndex: localIndex
        ) else {
            indices[localIndex] = nil
            return drop(.authentication)
        }
        Macs.stamp(&message, type: .initiation, receiver: peer.publicKey, cookie: peer.validCookie(now: now))
        peer.lastMAC1 = Macs.mac1(of: message, type: .initiation)
        peer.handshake = .initiationSent(state: state, localIndex: localIndex)
        peer.lastInitiationSentAt = now
        let jitter = Duration.milliseconds(Int.random(in: 0..<WireGuardTimers.rekeyTimeoutJitterMilliseconds, using: &random))
        peer.retransmitAt = now + WireGuardTimers.rekeyTimeout + jitter
        noteSent(peer, now: now, isData: false)
        return [.transmit(message, to: endpoint)]
    }

    // MARK: Receiving

    /// Processes one datagram from a path. Anything unauthenticated is dropped without an answer.
    public func receive(_ datagram: [UInt8], from endpoint: Endpoint, now: ContinuousClock.Instant) -> [Output] {
        switch WireGuardMessage.type(of: datagram) {
        case .initiation: return receiveInitiation(datagram, from: endpoint, now: now)
        case .response: return receiveResponse(datagram, from: endpoint, now: now)
        case .cookieReply: return receiveCookieReply(datagram, now: now)
        case .transport:
            let (outputs, delivery) = receiveTransport(ByteBuffer(bytes: datagram), from: endpoint, now: now)
            guard let (packet, peer) = delivery else { return outputs }
            return outputs + [.deliver(Array(packet.readableBytesView), from: peer)]
        case nil: return drop(.malformed)
        }
    }

    /// Returns a cookie reply when under load and mac2 is missing or stale; nil to go on.
    private func demandCookie(_ message: [UInt8], type: WireGuardMessageType, from endpoint: Endpoint, now: ContinuousClock.Instant) -> [Output]? {
        guard isUnderLoad(now: now) else { return nil }
        let cookie = cookieChecker.cookie(for: endpoint.cookieSource, now: now)
        if Macs.verifyMAC2(message, type: type, cookie: cookie) { return nil }
        return [.transmit(cookieChecker.reply(to: message, type: type, source: endpoint.cookieSource, localKey: privateKey.publicKey, now: now), to: endpoint)]
    }

    private func receiveInitiation(_ message: [UInt8], from endpoint: Endpoint, now: ContinuousClock.Instant) -> [Output] {
        guard Macs.verifyMAC1(message, type: .initiation, localKey: privateKey.publicKey) else { return drop(.badMAC1) }
        noteInitiation(now: now)
        if let cookieReply = demandCookie(message, type: .initiation, from: endpoint, now: now) { return cookieReply }
        guard let (remote, timestamp, state) = try? Noise.consumeInitiation(message, localStatic: privateKey) else {
            return drop(.authentication)
        }
        guard let peer = peers[remote] else { return drop(.unknownPeer) }
        guard TAI64N.isAfter(timestamp, peer.latestTimestamp) else { return drop(.replayedTimestamp) }
        if let last = peer.lastInitiationConsumedAt, now - last < WireGuardTimers.handshakeInitiationRate { return drop(.initiationFlood) }
        peer.latestTimestamp = timestamp
        peer.lastInitiationConsumedAt = now

        let localIndex = allocateIndex(for: remote)
        guard case (var response, let keys)? = try? Noise.createResponse(state: state, ephemeral: makeEphemeral(), senderIndex: localIndex, presharedKey: peer.presharedKey) else {
            indices[localIndex] = nil
            return drop(.authentication)
        }
        Macs.stamp(&response, type: .response, receiver: remote, cookie: peer.validCookie(now: now))
        peer.lastMAC1 = Macs.mac1(of: response, type: .response)
        if let stale = peer.next { indices[stale.localIndex] = nil }
        peer.next = Keypair(
            sendKey: keys.send, receiveKey: keys.receive, localIndex: localIndex, remoteIndex: state.initiatorIndex, createdAt: now, isInitiator: false
        )
        roam(peer, to: endpoint, now: now)
        noteReceived(peer, now: now)
        noteSent(peer, now: now, isData: false)
        return [.transmit(response, to: endpoint)]
    }

    private func receiveResponse(_ message: [UInt8], from endpoint: Endpoint, now: ContinuousClock.Instant) -> [Output] {
        guard Macs.verifyMAC1(message, type: .response, localKey: privateKey.publicKey) else { return drop(.badMAC1) }
        if let cookieReply = demandCookie(message, type: .response, from: endpoint, now: now) { return cookieReply }
        let receiver = LittleEndian.get32(message, at: 8)
        guard let key = indices[receiver], let peer = peers[key], case .initiationSent(let state, let localIndex) = peer.handshake,
            localIndex == receiver
        else { return drop(.unknownIndex) }
        guard let keys = try? Noise.consumeResponse(message, state: state, localStatic: privateKey, presharedKey: peer.presharedKey) else {
            return drop(.authentication)
        }
        let keypair = Keypair(
            sendKey: keys.send, receiveKey: keys.receive, localIndex: localIndex, remoteIndex: LittleEndian.get32(message, at: 4),
            createdAt: now, isInitiator: true
        )
        install(keypair, for: peer, now: now)
        roam(peer, to: endpoint, now: now)
        noteReceived(peer, now: now)
        // Send what waited; with nothing waiting, a keepalive confirms the session to the responder.
        let waiting = peer.queue
        peer.queue = []
        if waiting.isEmpty { return send([], to: peer, now: now) }
        return waiting.flatMap { send($0, to: peer, now: now) }
    }

    private func receiveCookieReply(_ message: [UInt8], now: ContinuousClock.Instant) -> [Output] {
        let receiver = LittleEndian.get32(message, at: 4)
        guard let key = indices[receiver], let peer = peers[key] else { return drop(.unknownIndex) }
        guard let cookie = CookieChecker.openReply(message, peerKey: key, lastMAC1: peer.lastMAC1) else { return drop(.authentication) }
        peer.cookie = (cookie, now)
        // The next retransmission carries mac2; allow it as soon as the timer fires.
        return []
    }

    /// A transport message, the data path's receive: what to send, and the authenticated IPv6 packet (padding
    /// removed, in a buffer of its own) unless it was a keepalive. Anything else about it is dropped and counted.
    public func receiveTransport(
        _ message: ByteBuffer, from endpoint: Endpoint, now: ContinuousClock.Instant, allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) -> (outputs: [Output], delivery: (packet: ByteBuffer, peer: NodePublicKey)?) {
        let start = message.readerIndex
        guard message.readableBytes >= WireGuardMessage.transportMinimumLength,
            message.getInteger(at: start, endianness: .little, as: UInt32.self) == UInt32(WireGuardMessageType.transport.rawValue),
            let receiver = message.getInteger(at: start + 4, endianness: .little, as: UInt32.self),
            let counter = message.getInteger(at: start + 8, endianness: .little, as: UInt64.self)
        else { return (drop(.malformed), nil) }
        guard let key = indices[receiver], let peer = peers[key], let slot = peer.slot(holding: receiver) else { return (drop(.unknownIndex), nil) }
        guard let receiveKey = peer.receiveKey(in: slot, now: now) else { return (drop(.expiredSession), nil) }
        guard counter < ReplayWindow.counterLimit else { return (drop(.replayedCounter), nil) }
        guard var plaintext = TransportCodec.open(message, counter: counter, key: receiveKey, allocator: allocator) else {
            return (drop(.authentication), nil)
        }
        guard peer.accept(counter, in: slot) else { return (drop(.replayedCounter), nil) }

        var outputs: [Output] = []
        if slot == .next, let keypair = peer.next {
            // The initiator used the new session: it is confirmed. Promote it and flush what waited.
            peer.next = nil
            install(keypair, for: peer, now: now)
            let waiting = peer.queue
            peer.queue = []
            outputs += waiting.flatMap { send($0, to: peer, now: now) }
        }
        roam(peer, to: endpoint, now: now)
        noteReceived(peer, now: now)
        if let current = peer.current, current.isInitiator, !peer.rekeyRequestedOnReceive,
            now - current.createdAt >= WireGuardTimers.rejectAfterTime - WireGuardTimers.keepaliveTimeout - WireGuardTimers.rekeyTimeout
        {
            peer.rekeyRequestedOnReceive = true
            outputs += initiateHandshake(peer, now: now)
        }
        guard plaintext.readableBytes > 0 else { return (outputs, nil) }  // keepalive
        peer.lastData = now

        guard let length = IPv6Header.totalLength(of: plaintext) else { return (outputs + drop(.malformed), nil) }
        let allowed = plaintext.withUnsafeReadableBytes { peer.routeLength(to: UnsafeRawBufferPointer(rebasing: $0[8..<24])) >= 0 }
        guard allowed else { return (outputs + drop(.disallowedSource), nil) }
        peer.keepaliveDeadline = peer.keepaliveDeadline ?? now + WireGuardTimers.keepaliveTimeout
        plaintext.moveWriterIndex(to: plaintext.readerIndex + length)
        return (outputs, (plaintext, key))
    }

    // MARK: Timers

    /// Runs every peer's timers: handshake retransmission and give-up, keepalives, new handshakes after
    /// unanswered data, and erasing keys of idle peers. Call it often (every 100-250 ms).
    public func tick(now: ContinuousClock.Instant) -> [Output] {
        var outputs: [Output] = []
        for peer in peers.values {
            if peer.isHandshaking, let retransmitAt = peer.retransmitAt, now >= retransmitAt {
                if let started = peer.attemptStartedAt, now - started >= WireGuardTimers.rekeyAttemptTime {
                    giveUpHandshake(peer)
                } else {
                    peer.lastInitiationSentAt = nil
                    outputs += initiateHandshake(peer, now: now)
                }
            }
            if let deadline = peer.keepaliveDeadline, now >= deadline {
                peer.keepaliveDeadline = nil
                if peer.current?.canSend(now: now) == true { outputs += send([], to: peer, now: now) }
            }
            if let deadline = peer.newHandshakeDeadline, now >= deadline {
                peer.newHandshakeDeadline = nil
                peer.lastInitiationSentAt = nil
                outputs += initiateHandshake(peer, now: now)
            }
            if let completed = peer.lastHandshakeCompletedAt, now - completed >= WireGuardTimers.zeroKeysAfter {
                for index in peer.localIndices { indices[index] = nil }
                (peer.current, peer.previous, peer.next, peer.handshake) = (nil, nil, nil, .idle)
                peer.lastHandshakeCompletedAt = nil
            }
        }
        return outputs
    }

    private func giveUpHandshake(_ peer: WireGuardPeer) {
        if case .initiationSent(_, let index) = peer.handshake { indices[index] = nil }
        peer.handshake = .idle
        (peer.attemptStartedAt, peer.retransmitAt, peer.newHandshakeDeadline) = (nil, nil, nil)
        if !peer.queue.isEmpty { count(.handshakeGaveUp, peer.queue.count) }
        peer.queue = []
    }

    // MARK: Bookkeeping

    private func install(_ keypair: Keypair, for peer: WireGuardPeer, now: ContinuousClock.Instant) {
        if let old = peer.previous { indices[old.localIndex] = nil }
        peer.previous = peer.current
        peer.current = keypair
        if keypair.isInitiator {
            peer.handshake = .idle
            (peer.attemptStartedAt, peer.retransmitAt) = (nil, nil)
        }
        peer.lastHandshakeCompletedAt = now
        peer.rekeyRequestedOnReceive = false
        peer.handshakesCompleted += 1
    }

    private func roam(_ peer: WireGuardPeer, to endpoint: Endpoint, now: ContinuousClock.Instant) {
        peer.lastReceipt = (endpoint, now)
        if peer.roams || peer.endpoint == nil { peer.endpoint = endpoint }
    }

    private func noteSent(_ peer: WireGuardPeer, now: ContinuousClock.Instant, isData: Bool) {
        peer.keepaliveDeadline = nil
        if isData && peer.newHandshakeDeadline == nil {
            peer.newHandshakeDeadline = now + WireGuardTimers.keepaliveTimeout + WireGuardTimers.rekeyTimeout
        }
    }

    private func noteReceived(_ peer: WireGuardPeer, now: ContinuousClock.Instant) {
        peer.newHandshakeDeadline = nil
    }

    private func noteInitiation(now: ContinuousClock.Instant) {
        recentInitiations.removeAll { now - $0 >= .seconds(1) }
        recentInitiations.append(now)
        if recentInitiations.count > configuration.underLoadInitiationsPerSecond {
            underLoadUntil = now + WireGuardTimers.underLoadAfterTime
            recentInitiations.removeFirst(recentInitiations.count - configuration.underLoadInitiationsPerSecond)
        }
    }

    func isUnderLoad(now: ContinuousClock.Instant) -> Bool { underLoadUntil.map { now < $0 } ?? false }

    private func allocateIndex(for key: NodePublicKey) -> UInt32 {
        var index: UInt32
        repeat { index = UInt32.random(in: .min ... .max, using: &random) } while indices[index] != nil
        indices[index] = key
        return index
    }

    private func drop(_ reason: DropReason) -> [Output] {
        count(reason)
        return []
    }

    private func count(_ reason: DropReason, _ amount: Int = 1) { drops[reason, default: 0] += amount }
}

/// A concrete generator over an injected one (existentials cannot be passed `inout` as generics).
struct RandomSource: RandomNumberGenerator {
    var base: any RandomNumberGenerator
    mutating func next() -> UInt64 { base.next() }
}
