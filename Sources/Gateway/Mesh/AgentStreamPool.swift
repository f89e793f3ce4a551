import AppProxy
import Foundation
import Metrics
import NIOCore
import NIOHTTP1
import Synchronization
import Tunnel

extension GatewayMesh: AgentStreamDialer {}

/// Idle mesh streams to `tcp:PORT` of agents, kept for HTTP/1.1 keep-alive: opening a stream costs no round
/// trip, but the server behind it keeps its TCP connection (and whatever it set up for it) only while the
/// stream lives, so reusing one is what keep-alive means through the mesh.
///
/// Per (agent, port) at most `maxIdlePerKey` idle streams (and `maxIdlePerAgent` over all of an agent's ports),
/// newest handed out first (the least likely to have been timed out by the server); each is closed after
/// `idleTimeout` unused. An idle stream that the server
/// closes, half-closes or writes to, or whose mesh connection ends (agent restart, `.peerRestarted`), is closed
/// and dropped at once; the lease's `claim` confirms on the stream's event loop that it is still whole before use.
public final class AgentStreamPool: AgentStreamFailureReporting, IdleAgentStreamSource {
    public struct Configuration: Sendable {
        public var idleTimeout: Duration = .seconds(30)
        /// Enough for a browser's or a load balancer's parallel connections to one app: a stream goes back to
        /// the pool as soon as its exchange ends, while the response is still on its way to the browser, so more
        /// streams wait idle at once than there are requests in flight (with 8, a fifth of the requests of 16
        /// busy connections opened a new stream and a new connection to the app).
        public var maxIdlePerKey = 64
        /// Idle streams count against the mesh connection's 512 open streams to the agent: across all its ports,
        /// at most this many wait idle, so that busy ports never leave new opens waiting on idle ones.
        public var maxIdlePerAgent = 128
        /// Sets up a new stream's pipeline on its event loop, after the pool's own watcher.
        public var pipeline: @Sendable (any Channel) throws -> Void = { try $0.pipeline.syncOperations.addHTTPClientHandlers() }
        public var timer: any IdleStreamTimer = EventLoopIdleTimer()

        public init() {}
    }

    private struct Key: Hashable {
        let agent: UUID
        let port: UInt16
    }

    private struct Idle {
        let channel: any Channel
        let cancelExpiry: @Sendable () -> Void
    }

    /// The idle streams by (agent, port), oldest first, with a count per agent.
    private struct IdleStreams {
        var byKey: [Key: [Idle]] = [:]
        var perAgent: [UUID: Int] = [:]

        mutating func append(_ entry: Idle, _ key: Key) {
            byKey[key, default: []].append(entry)
            perAgent[key.agent, default: 0] += 1
        }

        /// The newest (`last`) or oldest idle stream of `key`, taken out.
        mutating func take(_ key: Key, last: Bool) -> Idle? {
            guard var entries = byKey[key], !entries.isEmpty else { return nil }
            let entry = last ? entries.removeLast() : entries.removeFirst()
            byKey[key] = entries.isEmpty ? nil : entries
            forgetOne(of: key.agent)
            return entry
        }

        mutating func remove(_ channel: any Channel, _ key: Key) -> Idle? {
            guard let index = byKey[key]?.firstIndex(where: { $0.channel === channel }) else { return nil }
            let entry = byKey[key]!.remove(at: index)
            if byKey[key]!.isEmpty { byKey[key] = nil }
            forgetOne(of: key.agent)
            return entry
        }

        private mutating func forgetOne(of agent: UUID) {
            let left = (perAgent[agent] ?? 1) - 1
            perAgent[agent] = left > 0 ? left : nil
        }
    }

    private let dialer: any AgentStreamDialer
    private let configuration: Configuration
    private let idle = Mutex(IdleStreams())
    private let hits = Counter(label: "meshgate_agent_stream_pool_hits_total")
    private let misses = Counter(label: "meshgate_agent_stream_pool_misses_total")

    public init(dialer: any AgentStreamDialer, configuration: Configuration = Configuration()) {
        (self.dialer, self.configuration) = (dialer, configuration)
    }

    /// How many idle streams are kept for `tcp:port` of `agent`.
    public func idleCount(agent: UUID, port: UInt16) -> Int {
        idle.withLock { $0.byKey[Key(agent: agent, port: port)]?.count ?? 0 }
    }

    public func checkout(agent: UUID, port: UInt16) async throws -> AgentStreamLease {
        try await checkoutReportingFailure(agent: agent, port: port).lease
    }

    /// A new stream's record of its first error goes with it: a refusal can end the stream before the
    /// caller's exchange is set up on it.
    public func checkoutReportingFailure(agent: UUID, port: UInt16) async throws -> (lease: AgentStreamLease, failure: AgentStreamFailureRecord?) {
        if let lease = idleLease(agent: agent, port: port) { return (lease, nil) }
        let key = Key(agent: agent, port: port)
        misses.increment()
        let pipeline = configuration.pipeline
        let failure = AgentStreamFailureRecord()
        let channel = try await dialer.openStream(toAgent: agent, service: .tcp(port: port)) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(IdleStreamWatcher())
                try channel.pipeline.syncOperations.addHandler(failure.recorder())
                try pipeline(channel)
                return channel
            }
        }
        // However it ends, an ended stream must not stay in the idle list.
        channel.closeFuture.whenComplete { _ in self.forget(channel, key: key) }
        return (AgentStreamLease(channel: channel, agent: agent, port: port, reused: false), failure)
    }

    public func idleLease(agent: UUID, port: UInt16) -> AgentStreamLease? {
        guard let candidate = takeIdle(Key(agent: agent, port: port)) else { return nil }
        candidate.cancelExpiry()
        hits.increment()
        let channel = candidate.channel
        // A stream the server closed while it was idle fails its claim; the caller then checks out again.
        let claim: @Sendable () -> Bool = { IdleStreamWatcher.of(channel)?.lease() ?? false }
        return AgentStreamLease(channel: channel, agent: agent, port: port, reused: true, claim: claim)
    }

    public func checkin(_ lease: AgentStreamLease) async {
        let channel = lease.channel
        try? await channel.eventLoop.submit { self.checkinOnLoop(lease) }.get()
    }

    /// Parked and listed in one event loop task: the stream's close callback (on the same loop) then either finds
    /// it listed or it was already inactive here.
    public func checkinOnLoop(_ lease: AgentStreamLease) {
        let channel = lease.channel
        channel.eventLoop.preconditionInEventLoop()
        guard IdleStreamWatcher.of(channel)?.park() == true else { return channel.close(promise: nil) }
        list(channel, key: Key(agent: lease.agent, port: lease.port))
    }

    private func list(_ channel: any Channel, key: Key) {
        let evicted = idle.withLock { idle -> Idle? in
            let expiry = configuration.timer.schedule(after: configuration.idleTimeout, on: channel.eventLoop) { [weak self] in
                self?.expire(channel, key: key)
            }
            idle.append(Idle(channel: channel, cancelExpiry: expiry), key)
            // Over a bound, the oldest of this port goes: it is the likeliest to be closed by the server soon anyway.
            let over = idle.byKey[key]!.count > configuration.maxIdlePerKey || idle.perAgent[key.agent]! > configuration.maxIdlePerAgent
            return over ? idle.take(key, last: false) : nil
        }
        if let evicted {
            evicted.cancelExpiry()
            evicted.channel.close(promise: nil)
        }
    }

    /// Closes every idle stream. (At shutdown the mesh node ends them all anyway.)
    public func closeIdle() {
        let all = idle.withLock { idle in
            defer { idle = IdleStreams() }
            return idle.byKey.values.flatMap { $0 }
        }
        for entry in all {
            entry.cancelExpiry()
            entry.channel.close(promise: nil)
        }
    }

    private func takeIdle(_ key: Key) -> Idle? {
        idle.withLock { $0.take(key, last: true) }
    }

    /// Takes `channel` out of the idle list, if it is there.
    private func remove(_ channel: any Channel, key: Key) -> Idle? {
        idle.withLock { $0.remove(channel, key) }
    }

    private func expire(_ channel: any Channel, key: Key) {
        // Only if still idle: a checkout may have taken it just before the timer fired.
        if remove(channel, key: key) != nil { channel.close(promise: nil) }
    }

    private func forget(_ channel: any Channel, key: Key) {
        remove(channel, key: key)?.cancelExpiry()
    }
}

/// Runs the pool's idle timeouts. Production uses the stream's event loop; tests fire them by hand.
public protocol IdleStreamTimer: Sendable {
    /// Calls `expire` once `delay` has passed, unless the returned closure cancels it first.
    func schedule(after delay: Duration, on loop: any EventLoop, _ expire: @escaping @Sendable () -> Void) -> @Sendable () -> Void
}

public struct EventLoopIdleTimer: IdleStreamTimer {
    public init() {}

    public func schedule(after delay: Duration, on loop: any EventLoop, _ expire: @escaping @Sendable () -> Void) -> @Sendable () -> Void {
        let task = loop.scheduleTask(in: TimeAmount(delay), expire)
        return { task.cancel() }
    }
}

/// First in a pooled stream's pipeline: passes everything through while the stream is leased, and remembers
/// whether it may carry another exchange. While idle, anything from the server (data, FIN, an error) ends the
/// stream: an HTTP/1.1 server has nothing to say between exchanges except that it is closing.
final class IdleStreamWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    private var idle = false
    /// Input ended, an error went by, or the channel closed: never reusable again.
    private var spent = false

    static func of(_ channel: any Channel) -> IdleStreamWatcher? {
        try? channel.pipeline.syncOperations.handler(type: IdleStreamWatcher.self)
    }

    /// Hands the stream to a caller if it is still whole. On the stream's event loop.
    func lease() -> Bool {
        guard usable else { return false }
        idle = false
        return true
    }

    /// Takes the stream back as idle if it is still whole. On the stream's event loop.
    func park() -> Bool {
        guard usable else { return false }
        idle = true
        return true
    }

    private var usable: Bool { !spent && context?.channel.isActive == true }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !idle else { return end(context) }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent {
            spent = true
            if idle { return end(context) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        spent = true
        if idle { return end(context) }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        spent = true
        context.fireChannelInactive()
    }

    private func end(_ context: ChannelHandlerContext) {
        spent = true
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension IdleStreamWatcher: Sendable {}
