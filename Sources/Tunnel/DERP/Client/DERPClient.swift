import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A node's link to one DERP server: dials and logs in, reconnects with backoff, answers the server's pings,
/// says whether this is the node's home region, and hands every frame to its owner as an `Event`.
///
/// Sending never waits: a packet goes straight onto the connection, or is dropped (and counted) when there
/// is none or its write buffer is full; WireGuard above recovers from loss as it would on UDP.
public final class DERPClient: Sendable {
    public struct Configuration: Sendable {
        public var url: URL
        public var privateKey: NodePrivateKey
        /// The region's shared secret, for a server dialing its siblings.
        public var meshKey: String?
        public var trust: DERPTrust
        public var transport: DERPTransport
        /// Sends NotePreferred(true) after each login: the server then counts this node as homed on it.
        public var isHome: Bool
        /// Reconnect delays: `initialBackoff` doubling up to `maximumBackoff`, with up to 50 % jitter.
        public var initialBackoff: Duration = .milliseconds(250)
        public var maximumBackoff: Duration = .seconds(10)

        public init(
            url: URL, privateKey: NodePrivateKey, meshKey: String? = nil, trust: DERPTrust = .systemRoots,
            transport: DERPTransport = .automatic, isHome: Bool = false
        ) {
            (self.url, self.privateKey, self.meshKey, self.trust, self.transport, self.isHome) = (url, privateKey, meshKey, trust, transport, isHome)
        }
    }

    public enum Event: Sendable {
        case connected(serverKey: NodePublicKey, transport: DERPConnection.Kind)
        case disconnected(reason: String)
        case packet(source: NodePublicKey, ByteBuffer)
        case peerGone(NodePublicKey, reason: PeerGoneReason)
        /// Mesh watchers only: a client connected to the server.
        case peerPresent(NodePublicKey)
        case health(String)
    }

    public let configuration: Configuration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex(State())
    public let packetsDropped = Atomic<Int>(0)

    struct State {
        var channel: (any Channel)?
        var pings: [[UInt8]: CheckedContinuation<Void, any Error>] = [:]
    }

    public init(configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger) {
        (self.configuration, self.group, self.logger) = (configuration, group, logger)
    }

    public var isConnected: Bool { state.withLock { $0.channel != nil } }

    /// Relays `packet` to `destination`; false when it was dropped (not connected, or the connection is backed up).
    @discardableResult
    public func send(_ packet: ByteBuffer, to destination: NodePublicKey) -> Bool {
        send(frame: .sendPacket(destination: destination, packet: packet))
    }

    /// One hop to the connection's event loop and one flush for a burst of packets (a stream's window going out
    /// at once); packets past the point the connection turns unwritable are dropped, as `send(_:to:)` drops.
    public func send(_ packets: [(packet: ByteBuffer, destination: NodePublicKey)]) {
        guard let channel = state.withLock({ $0.channel }) else {
            packetsDropped.add(packets.count, ordering: .relaxed)
            return
        }
        channel.eventLoop.execute {
            for (index, (packet, destination)) in packets.enumerated() {
                guard channel.isWritable else {
                    self.packetsDropped.add(packets.count - index, ordering: .relaxed)
                    break
                }
                channel.write(DERPFrame.sendPacket(destination: destination, packet: packet), promise: nil)
            }
            channel.flush()
        }
    }

    /// Writes any frame (mesh peers send WatchConns and ForwardPacket); same drop rule as `send(_:to:)`.
    @discardableResult
    public func send(frame: DERPFrame) -> Bool {
        guard let channel = state.withLock({ $0.channel }), channel.isWritable else {
            packetsDropped.add(1, ordering: .relaxed)
            return false
        }
        channel.writeAndFlush(frame, promise: nil)
        return true
    }

    /// Round trip of a Ping to the server; `DERPError.pingTimeout` without a Pong in time.
    public func ping(timeout: Duration = .seconds(5)) async throws -> Duration {
        let data = (0..<8).map { _ in UInt8.random(in: 0...255) }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { continuation in
                        let sent = self.state.withLock { state -> Bool in
                            guard state.channel != nil else { return false }
                            state.pings[data] = continuation
                            return true
                        }
                        if sent { self.send(frame: .ping(data)) } else { continuation.resume(throwing: DERPConnection.DialError.closedDuringLogin) }
                    }
                } onCancel: {
                    self.state.withLock { $0.pings.removeValue(forKey: data) }?.resume(throwing: CancellationError())
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw DERPError.pingTimeout
            }
            defer { group.cancelAll() }
            try await group.next()
        }
        return .now - start
    }

    /// Keeps a connection up until the task is cancelled, delivering every event to `onEvent` (called from
    /// this task, in frame order).
    public func run(_ onEvent: @escaping @Sendable (Event) -> Void) async {
        var backoff = configuration.initialBackoff
        while !Task.isCancelled {
            var restartDelay: Duration?
            do {
                let connection = try await DERPConnection.dial(
                    url: configuration.url, privateKey: configuration.privateKey, meshKey: configuration.meshKey,
                    trust: configuration.trust, transport: configuration.transport, group: group
                )
                backoff = configuration.initialBackoff
                restartDelay = try await serve(connection, onEvent)
                onEvent(.disconnected(reason: "connection closed"))
            } catch is CancellationError {
                break
            } catch {
                logger.debug("DERP connection failed", metadata: ["derp.url": "\(configuration.url)", "error": "\(error)"])
                onEvent(.disconnected(reason: "\(error)"))
            }
            detach()
            // A restarting server says when to come back; otherwise back off, with jitter so a region's
            // clients do not return in lockstep.
            let delay = restartDelay ?? backoff.jittered()
            if restartDelay == nil { backoff = min(backoff * 2, configuration.maximumBackoff) }
            do { try await Task.sleep(for: delay) } catch { break }
        }
        detach()
    }

    /// Reads one connection until it ends; returns the reconnect delay if the server announced a restart.
    private func serve(_ connection: DERPConnection, _ onEvent: @escaping @Sendable (Event) -> Void) async throws -> Duration? {
        let channel = connection.channel.channel
        return try await withTaskCancellationHandler {
            try await connection.channel.executeThenClose { inbound, _ in
                state.withLock { $0.channel = channel }
                onEvent(.connected(serverKey: connection.serverKey, transport: connection.transport))
                if configuration.isHome { send(frame: .notePreferred(true)) }
                var restartDelay: Duration?
                for try await frame in inbound {
                    switch frame {
                    case .recvPacket(let source, let packet): onEvent(.packet(source: source, packet))
                    case .ping(let data): send(frame: .pong(data))
                    case .pong(let data): state.withLock { $0.pings.removeValue(forKey: data) }?.resume()
                    case .peerGone(let key, let reason): onEvent(.peerGone(key, reason: reason))
                    case .peerPresent(let key, _, _): onEvent(.peerPresent(key))
                    case .health(let problem): onEvent(.health(problem))
                    // Bounded: a relay from a third-party map must not park this node for days.
                    case .restarting(let reconnectIn, _): restartDelay = min(.milliseconds(Int(reconnectIn)), configuration.maximumBackoff)
                    case .keepAlive, .unknown: break
                    case .serverKey, .clientInfo, .serverInfo, .sendPacket, .notePreferred, .forwardPacket, .watchConns, .closePeer:
                        throw DERPError.unexpectedFrame(type: frame.type, during: "relay")
                    }
                }
                return restartDelay
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    private func detach() {
        let pings = state.withLock { state in
            state.channel = nil
            defer { state.pings = [:] }
            return state.pings.values
        }
        for ping in pings { ping.resume(throwing: DERPConnection.DialError.closedDuringLogin) }
    }
}

extension Duration {
    /// This duration plus up to half of it again, at random.
    public func jittered() -> Duration {
        let milliseconds = Int(self.components.seconds * 1000 + self.components.attoseconds / 1_000_000_000_000_000)
        return .milliseconds(milliseconds + Int.random(in: 0...max(1, milliseconds / 2)))
    }
}
