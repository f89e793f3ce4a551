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
        var remote: [NodePublicKey: any DERPForwarder] = [:]
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
    public func isReachableThroughMesh(_ key: NodePublicKey) -> Bool { table.withLock { $0.remote[key] != nil } }

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
        let milliseconds = { (d: Duration) in UInt32(d.components.seconds * 1000) }
        for session in sessions {
            session.enqueue(.restarting(reconnectIn: milliseconds(reconnectIn), tryFor: milliseconds(tryFor)), counters: counters)
            session.finish()
        }
    }

    /// Serves one client until its frames end, it breaks the protocol, a write times out, or a newer
    /// connection with the same key replaces it. `close` must end the transport (and so `frames`).
    public func serve<Frames: AsyncSequence & Sendable>(
        frames: Frames, write: @escaping @Sendable (DERPFrame) async throws -> Void, close: @escaping @Sendable () -> Void
    ) async throws where Frames.Element == DERPFrame {
        var iterator = frames.makeAsyncIterator()
        try await write(.serverKey(publicKey))
        // Untrusted until ClientInfo opens: closing the transport at the deadline ends the read below.
        let timeout = configuration.handshakeTimeout
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            close()
        }
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
            guard let meshKey, Self.constantTimeEqual(presented, meshKey) else { throw DERPError.badClientInfo("wrong mesh key") }
            isMeshPeer = true
        }
        try await write(try .serverInfo(DERPServerInfo(), from: privateKey, to: clientKey))

        let session = DERPServerSession(key: clientKey, isMeshPeer: isMeshPeer, queueDepth: configuration.queueDepth, close: close)
        register(session)
        defer { unregister(session) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.writeLoop(session, write: write) }
            group.addTask { try await self.keepAliveLoop(session) }
            // Reading ends when the client leaves, breaks the protocol (thrown), or the transport is closed
            // (write timeout, replaced by a newer connection); then the helpers are cancelled.
            defer { group.cancelAll() }
            while let frame = try await iterator.next() { try self.handle(frame, from: session) }
        }
    }

    /// Writes the session's queue in order; a finished queue (shutdown, replacement) closes the transport
    /// once what was queued has been written.
    private func writeLoop(_ session: DERPServerSession, write: @escaping @Sendable (DERPFrame) async throws -> Void) async throws {
        defer { session.close() }
        for await frame in session.queue {
            try await withDeadline(configuration.writeTimeout, onTimeout: { [counters] in
                counters.drop(.writeTimeout)
                session.close()
            }) { try await write(frame) }
        }
    }

    private func keepAliveLoop(_ session: DERPServerSession) async throws {
        while true {
            let jitter = Duration.milliseconds(Int.random(in: 0..<5000))
            try await Task.sleep(for: configuration.keepAlive + jitter)
            session.enqueue(.keepAlive, counters: counters)
        }
    }

    func handle(_ frame: DERPFrame, from session: DERPServerSession) throws {
        switch frame {
        case .sendPacket(let destination, let packet):
            route(packet, from: session.key, to: destination, replyTo: session)
        case .forwardPacket(let source, let destination, let packet):
            guard session.isMeshPeer else { throw DERPError.meshKeyRequired }
            route(packet, from: source, to: destination, replyTo: nil)
        case .ping(let data):
            session.enqueue(.pong(data), counters: counters)
        case .notePreferred(let preferred):
            session.isPreferred.store(preferred, ordering: .relaxed)
        case .watchConns:
            guard session.isMeshPeer else { throw DERPError.meshKeyRequired }
            let present = table.withLock { table in
                table.watchers[ObjectIdentifier(session)] = session
                return table.clients.values.filter { !$0.isMeshPeer }.map(\.key)
            }
            for key in present { session.enqueue(.peerPresent(key, endpoint: nil, flags: 1), counters: counters) }
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
        let (local, remote) = table.withLock { ($0.clients[destination], $0.remote[destination]) }
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
            sender?.enqueue(.peerGone(destination, reason: .notHere), counters: counters)
        }
    }

    // MARK: Mesh

    /// A sibling says `key` is connected to it: packets for `key` go through `forwarder`.
    public func addRemote(_ key: NodePublicKey, via forwarder: any DERPForwarder) {
        table.withLock { $0.remote[key] = forwarder }
    }

    /// A sibling says `key` left it (only if that sibling is still the one we route through).
    public func removeRemote(_ key: NodePublicKey, via forwarder: any DERPForwarder) {
        table.withLock { table in
            if let current = table.remote[key], current === forwarder { table.remote[key] = nil }
        }
    }

    /// Forgets every key learned through `forwarder` (its connection broke).
    public func removeRemotes(via forwarder: any DERPForwarder) {
        table.withLock { table in table.remote = table.remote.filter { $0.value !== forwarder } }
    }

    // MARK: Registration

    private func register(_ session: DERPServerSession) {
        let (replaced, watchers) = table.withLock { table -> (DERPServerSession?, [DERPServerSession]) in
            let old = table.clients[session.key]
            table.clients[session.key] = session
            return (old, Array(table.watchers.values))
        }
        // One connection per key: the newer wins, the older is closed.
        replaced?.close()
        counters.clients.add(1, ordering: .relaxed)
        if !session.isMeshPeer {
            for watcher in watchers { watcher.enqueue(.peerPresent(session.key, endpoint: nil, flags: 1), counters: counters) }
        }
    }

    private func unregister(_ session: DERPServerSession) {
        session.finish()
        let (removed, watchers, notify) = table.withLock { table -> (Bool, [DERPServerSession], [DERPServerSession]) in
            table.watchers[ObjectIdentifier(session)] = nil
            guard table.clients[session.key] === session else { return (false, [], []) }
            table.clients[session.key] = nil
            return (true, Array(table.watchers.values), session.sentTo.compactMap { table.clients[$0] })
        }
        counters.clients.subtract(1, ordering: .relaxed)
        guard removed else { return }
        if !session.isMeshPeer {
            for watcher in watchers { watcher.enqueue(.peerGone(session.key, reason: .disconnected), counters: counters) }
        }
        // Peers this client sent to can forget the reverse path.
        for peer in notify { peer.enqueue(.peerGone(session.key, reason: .disconnected), counters: counters) }
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
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

/// Runs `body`, calling `onTimeout` and throwing `DERPError.handshakeTimeout`-style cancellation if it
/// has not finished within `timeout`.
func withDeadline<T: Sendable>(_ timeout: Duration, onTimeout: @escaping @Sendable () -> Void, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            onTimeout()
            throw DERPError.handshakeTimeout
        }
        return value
    }
}
