import Foundation
import NIOCore
import Synchronization

/// Sends packets on to a DERP server elsewhere in the region (the mesh): our connection to a sibling.
public protocol DERPForwarder: AnyObject, Sendable {
    func forward(source: NodePublicKey, destination: NodePublicKey, packet: ByteBuffer)
}

/// Why the relay dropped a packet; the raw value is the `reason` label of meshgate_derp_packets_dropped_total.
public enum DERPDropReason: String, CaseIterable, Sendable {
    case queueHead = "queue_head"            // queue full: drop the oldest so fresh packets win
    case unknownDestination = "unknown_dest" // nobody with that key here or on a sibling
    case writeTimeout = "write_timeout"      // the 2 s write deadline passed: the connection is closed
    case meshUnavailable = "mesh_unavailable" // the sibling that has the key is not reachable right now
    case controlOverflow = "control_overflow" // a client read no control frames for tens of thousands of events
}

/// The relay: a table of connected clients by key, mesh watchers, and keys reachable through siblings.
///
/// Transport-independent: `serve` runs one client over any frame stream (TCP after `Upgrade: DERP`, a
/// WebSocket, or an in-process pipe). Table lookups per packet take a short `Mutex`, never held over `await`.
public final class DERPServer: Sendable {
    public struct Configuration: Sendable {
        /// Packets queued per client before the oldest is dropped (Tailscale 32; Coder runs 512).
        public var queueDepth = 32
        public var writeTimeout: Duration = .seconds(2)
        /// KeepAlive period; each connection adds up to 5 s of jitter.
        public var keepAlive: Duration = .seconds(60)
        public var handshakeTimeout: Duration = .seconds(10)
        /// New connections admitted per second, in bursts of up to one second's worth; 0: unlimited. Guards
        /// the login's key agreement against reconnect storms.
        public var acceptRate = 0
        public init() {}
    }

    public let privateKey: NodePrivateKey
    public let configuration: Configuration
    /// Shared secret of the region's servers; nil: no mesh peers accepted.
    public let meshKey: String?
    private let table = Mutex(Table())
    private let acceptTokens = Mutex<(tokens: Double, at: ContinuousClock.Instant)?>(nil)
    public let counters = DERPServerCounters()

    struct Table {
        var clients: [NodePublicKey: DERPServerSession] = [:]
        var watchers: [ObjectIdentifier: DERPServerSession] = [:]
        /// Keys on siblings, with every sibling that announced each (a key may sit on two at once while it
        /// moves); the most recent announcement is used.
        var remote: [NodePublicKey: [any DERPForwarder]] = [:]
    }

    public init(privateKey: NodePrivateKey, meshKey: String? = nil, configuration: Configuration = .init()) {
        (self.privateKey, self.meshKey, self.configuration) = (privateKey, meshKey, configuration)
    }

    public var publicKey: NodePublicKey { privateKey.publicKey }
    public var clientCount: Int { table.withLock { $0.clients.count } }
    public func isConnected(_ key: NodePublicKey) -> Bool { table.withLock { $0.clients[key] != nil } }
    /// Whether the client with `key` said this relay is its home (NotePreferred).
    public func isPreferred(_ key: NodePublicKey) -> Bool {
        table.withLock { $0.clients[key] }?.isPreferred.load(ordering: .relaxed) ?? false
    }
    /// Whether a sibling has told this relay that `key` is connected to it.
    public func isReachableThroughMesh(_ key: NodePublicKey) -> Bool { table.withLock { $0.remote[key]?.isEmpty == false } }

    /// Takes one accept token (token bucket of `acceptRate` per second); false: refuse this connection.
    public func admitConnection(now: ContinuousClock.Instant = .now) -> Bool {
        let rate = Double(configuration.acceptRate)
        guard rate > 0 else { return true }
        let admitted = acceptTokens.withLock { bucket -> Bool in
            let (tokens, at) = bucket ?? (rate, now)
            let refilled = min(rate, tokens + rate * Double((now - at) / .seconds(1)))
            bucket = (refilled >= 1 ? refilled - 1 : refilled, now)
            return refilled >= 1
        }
        if !admitted { counters.acceptsRefused.add(1, ordering: .relaxed) }
        return admitted
    }

    /// Graceful shutdown: tells every client to come back in `reconnectIn` (Restarting), lets its queue drain
    /// and closes it, so clients reconnect to a sibling or the restarted relay instead of backing off.
    public func shutdown(reconnectIn: Duration = .seconds(2), tryFor: Duration = .seconds(30)) {
        let sessions = table.withLock { Array($0.clients.values) }
        let milliseconds = { (d: Duration) in UInt32(clamping: d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000) }
        for session in sessions {
            session.enqueue(.restarting(reconnectIn: milliseconds(reconnectIn), tryFor: milliseconds(tryFor)), counters: counters)
            session.finish()
        }
    }

    /// Serves one client until its frames end, it breaks the protocol, a write times out, or a newer
    /// connection with the same key replaces it. `close` must end the transport (and so `frames`).
    public func serve<Frames: AsyncSequence & Sendable>(
        frames: Frames, write: @escaping @Sendable ([DERPFrame]) async throws -> Void, close: @escaping @Sendable () -> Void
    ) async throws where Frames.Element == DERPFrame {
        var iterator = frames.makeAsyncIterator()
        try await write([.serverKey(publicKey)])
        // Untrusted until ClientInfo opens: closing the transport at the deadline ends the read below.
        let timeout = configuration.handshakeTimeout
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            close()
        }
        defer { watchdog.cancel() }
        let first = try await iterator.next()
        watchdog.cancel()
        guard case .clientInfo(let clientKey, let nonce, let sealed)? = first else {
            throw first.map { DERPError.unexpectedFrame(type: $0.type, during: "login") } ?? DERPError.handshakeTimeout
        }
        guard let json = NaClBox.open(sealed, nonce: nonce, from: clientKey, to: privateKey),
            let info = try? JSONDecoder().decode(DERPClientInfo.self, from: Data(json))
        else { throw DERPError.badClientInfo("cannot open or parse") }
        var isMeshPeer = false
        if let presented = info.meshKey, !presented.isEmpty {
            guard let meshKey, ConstantTime.equal(Array(presented.utf8), Array(meshKey.utf8)) else { throw DERPError.badClientInfo("wrong mesh key") }
            isMeshPeer = true
        }
        try await write([try .serverInfo(DERPServerInfo(), from: privateKey, to: clientKey)])

        let session = DERPServerSession(key: clientKey, isMeshPeer: isMeshPeer, queueDepth: configuration.queueDepth, close: close)
        register(session)
        defer { unregister(session) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.writeLoop(session, write: write) }
            group.addTask { try await self.timerLoop(session) }
            // Reading ends when the client leaves, breaks the protocol (thrown), or the transport is closed
            // (write timeout, replaced by a newer connection); then the helpers are cancelled.
            defer { group.cancelAll() }
            while let frame = try await iterator.next() { try self.handle(frame, from: session) }
        }
    }

    /// Writes the session's queue in order; a finished queue (shutdown, replacement) closes the transport
    /// once what was queued has been written.
    private func writeLoop(_ session: DERPServerSession, write: @escaping @Sendable ([DERPFrame]) async throws -> Void) async throws {
        defer { session.close() }
        while let batch = await session.nextBatch() {
            session.beginWrite(at: .now)
            try await write(batch)
            session.endWrite()
            // Counted once written: a queued packet may still be dropped for a fresher one.
            for case .recvPacket(_, let packet) in batch {
                counters.packetsSent.add(1, ordering: .relaxed)
                counters.bytesSent.add(packet.readableBytes, ordering: .relaxed)
            }
        }
    }

    /// KeepAlive every `keepAlive` + up to 5 s jitter, and the write deadline: a write stuck longer than
    /// `writeTimeout` (a client that stopped reading with a full socket) closes the connection. One timer per
    /// connection, instead of one per frame.
    private func timerLoop(_ session: DERPServerSession) async throws {
        let tick = min(configuration.writeTimeout / 4, .milliseconds(500))
        var nextKeepAlive = ContinuousClock.now + configuration.keepAlive + .milliseconds(Int.random(in: 0..<5000))
        while true {
            try await Task.sleep(for: tick)
            let now = ContinuousClock.now
            if session.isWriteStalled(now: now, limit: configuration.writeTimeout) {
                counters.drop(.writeTimeout)
                session.close()
                return
            }
            if now >= nextKeepAlive {
                session.enqueue(.keepAlive, counters: counters)
                nextKeepAlive = now + configuration.keepAlive + .milliseconds(Int.random(in: 0..<5000))
            }
        }
    }

    func handle(_ frame: DERPFrame, from session: DERPServerSession) throws {
        switch frame {
        case .sendPacket(let destination, let packet):
            route(packet, from: session.key, to: destination, replyTo: session)
        case .forwardPacket(let source, let destination, let packet):
            guard session.isMeshPeer else { throw DERPError.meshKeyRequired }
            deliverForwarded(packet, from: source, to: destination)
        case .ping(let data):
            session.enqueue(.pong(data), counters: counters)
        case .notePreferred(let preferred):
            session.isPreferred.store(preferred, ordering: .relaxed)
        case .watchConns:
            guard session.isMeshPeer else { throw DERPError.meshKeyRequired }
            // This relay dialing itself (its own URL in the peer list) would route its clients to itself.
            guard session.key != publicKey else { return }
            // Snapshot and registration under one lock, so a client leaving in between cannot have its
            // PeerGone overtaken by a stale PeerPresent.
            table.withLock { table in
                table.watchers[ObjectIdentifier(session)] = session
                for client in table.clients.values where !client.isMeshPeer {
                    session.enqueue(.peerPresent(client.key, endpoint: nil, flags: 1), counters: counters)
                }
            }
        case .closePeer(let key):
            guard session.isMeshPeer else { throw DERPError.meshKeyRequired }
            table.withLock { $0.clients[key] }?.close()
        case .pong, .keepAlive, .unknown:
            break
        case .serverKey, .clientInfo, .serverInfo, .recvPacket, .peerGone, .peerPresent, .health, .restarting:
            throw DERPError.unexpectedFrame(type: frame.type, during: "relay")
        }
    }

    /// Delivers to a local client, else forwards one hop to the sibling that has the key, else tells the
    /// sender the destination is not here.
    func route(_ packet: ByteBuffer, from source: NodePublicKey, to destination: NodePublicKey, replyTo sender: DERPServerSession?) {
        let (local, remote) = table.withLock { ($0.clients[destination], $0.remote[destination]?.last) }
        counters.packetsReceived.add(1, ordering: .relaxed)
        counters.bytesReceived.add(packet.readableBytes, ordering: .relaxed)
        if let local {
            if local.enqueue(.recvPacket(source: source, packet: packet), counters: counters) {
                sender?.noteSentTo(destination)
            }
        } else if let remote {
            remote.forward(source: source, destination: destination, packet: packet)
        } else {
            counters.drop(.unknownDestination)
            if let sender, sender.shouldReportNotHere(destination, now: .now) {
                sender.enqueue(.peerGone(destination, reason: .notHere), counters: counters)
            }
        }
    }

    /// A packet a sibling forwarded: delivered here or dropped, never forwarded again (stale tables on two
    /// siblings would otherwise bounce it between them).
    func deliverForwarded(_ packet: ByteBuffer, from source: NodePublicKey, to destination: NodePublicKey) {
        counters.packetsReceived.add(1, ordering: .relaxed)
        counters.bytesReceived.add(packet.readableBytes, ordering: .relaxed)
        guard let local = table.withLock({ $0.clients[destination] }) else { return counters.drop(.unknownDestination) }
        local.enqueue(.recvPacket(source: source, packet: packet), counters: counters)
    }

    // MARK: Mesh

    /// A sibling says `key` is connected to it: packets for `key` go through `forwarder`.
    public func addRemote(_ key: NodePublicKey, via forwarder: any DERPForwarder) {
        table.withLock { table in
            table.remote[key, default: []].removeAll { $0 === forwarder }
            table.remote[key, default: []].append(forwarder)
        }
    }

    /// A sibling says `key` left it (only if that sibling is still the one we route through).
    public func removeRemote(_ key: NodePublicKey, via forwarder: any DERPForwarder) {
        table.withLock { table in
            table.remote[key]?.removeAll { $0 === forwarder }
            if table.remote[key]?.isEmpty == true { table.remote[key] = nil }
        }
    }

    /// Forgets every key learned through `forwarder` (its connection broke).
    public func removeRemotes(via forwarder: any DERPForwarder) {
        table.withLock { table in
            for key in table.remote.keys { table.remote[key]?.removeAll { $0 === forwarder } }
            table.remote = table.remote.filter { !$0.value.isEmpty }
        }
    }

    // MARK: Registration

    /// Presence changes reach watchers under the table lock (enqueueing never blocks), so they arrive in the
    /// order the table changed.
    private func register(_ session: DERPServerSession) {
        let replaced = table.withLock { table -> DERPServerSession? in
            let old = table.clients[session.key]
            table.clients[session.key] = session
            if !session.isMeshPeer {
                for watcher in table.watchers.values { watcher.enqueue(.peerPresent(session.key, endpoint: nil, flags: 1), counters: counters) }
            }
            return old
        }
        // One connection per key: the newer wins, the older is closed.
        replaced?.close()
        counters.clients.add(1, ordering: .relaxed)
    }

    private func unregister(_ session: DERPServerSession) {
        session.finish()
        table.withLock { table in
            table.watchers[ObjectIdentifier(session)] = nil
            guard table.clients[session.key] === session else { return }
            table.clients[session.key] = nil
            let gone = DERPFrame.peerGone(session.key, reason: .disconnected)
            if !session.isMeshPeer {
                for watcher in table.watchers.values { watcher.enqueue(gone, counters: counters) }
            }
            // Peers this client sent to can forget the reverse path.
            for peer in session.sentTo.compactMap({ table.clients[$0] }) { peer.enqueue(gone, counters: counters) }
        }
        counters.clients.subtract(1, ordering: .relaxed)
    }
}

/// Relay counters, exported as metrics by the gateway.
public final class DERPServerCounters: Sendable {
    public let clients = Atomic<Int>(0)
    public let acceptsRefused = Atomic<Int>(0)
    public let packetsReceived = Atomic<Int>(0)
    public let bytesReceived = Atomic<Int>(0)
    public let packetsSent = Atomic<Int>(0)
    public let bytesSent = Atomic<Int>(0)
    private let drops = Mutex<[DERPDropReason: Int]>([:])

    func drop(_ reason: DERPDropReason) { drops.withLock { $0[reason, default: 0] += 1 } }
    public func dropped(_ reason: DERPDropReason) -> Int { drops.withLock { $0[reason] ?? 0 } }
}
