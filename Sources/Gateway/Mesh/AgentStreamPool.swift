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
/// `idleTimeout` unused, by one sweep that runs while streams are idle (a timer per check-in and a cancel per
/// checkout, on every request, cost more than the rest of the pool's work). An idle stream that the server
/// closes, half-closes or writes to, or whose mesh connection ends (agent restart, `.peerRestarted`), is closed
/// and dropped at once; the lease's `claim` confirms on the stream's event loop that it is still whole before use.
public final class AgentStreamPool: AgentStreamFailureReporting, IdleAgentStreamSource {
    public struct Configuration: Sendable {
        public var idleTimeout: Duration = .seconds(30)
        /// Enough for a browser's or a load balancer's parallel connections to one app: a stream goes back to
        /// the pool as soon as its exchange ends, while the response is still on its way to the browser, so more
        /// streams wait idle at once than there are requests in flight (with 8, a fifth of the requests of 16
        /// busy connections opened a new stream and a new connection to the app). HTTP/2 browsers run many
        /// requests on a connection: with 64, 16 connections of 10 streams each missed the pool on one request in
        /// seven, and every miss opened a stream that the next check-in over the bound closed again; with 192,
        /// 64 connections of 10 streams each still missed on one request in five (one in ten now, one in sixteen
        /// with 448, which would leave other ports of the agent too little room; see `maxIdlePerAgent`).
        public var maxIdlePerKey = 384
        /// Idle streams count against the mesh connection's 512 open streams to the agent: across all its ports,
        /// at most this many wait idle, so that 128 are left for other ports when one port's burst has filled the
        /// pool (an open past the 512 waits until an idle stream is closed: up to `idleTimeout`).
        public var maxIdlePerAgent = 384
        /// Sets up a new stream's pipeline on its event loop, after the pool's own watcher.
        public var pipeline: @Sendable (any Channel) throws -> Void = { try AppUpstreamHTTP.addCodec(to: $0) }
        public var timer: any IdleStreamTimer = EventLoopIdleTimer()

        public init() {}
    }

    private struct Key: Hashable {
        let agent: UUID
        let port: UInt16
    }

    private struct Idle {
        let channel: any Channel
        /// When it was checked in.
        let since: NIODeadline
    }

    /// The idle streams by (agent, port), oldest first, with a count per agent.
    private struct IdleStreams {
        var byKey: [Key: [Idle]] = [:]
        var perAgent: [UUID: Int] = [:]
        /// The sweep that closes streams idle for `idleTimeout` is scheduled.
        var sweepScheduled = false

        mutating func append(_ entry: Idle, _ key: Key) {
            byKey[key, default: []].append(entry)
            perAgent[key.agent, default: 0] += 1
        }

        /// The newest (`last`) or oldest idle stream of `key`, taken out.
        mutating func take(_ key: Key, last: Bool) -> Idle? {
            guard byKey[key]?.isEmpty == false else { return nil }
            // In place: a copy of the list out of the dictionary would be copied again on removal.
            let entry = last ? byKey[key]!.removeLast() : byKey[key]!.removeFirst()
            forget(1, of: key)
            return entry
        }

        /// Takes out every stream idle since `cutoff` or before; returns them, and when the oldest left expires.
        mutating func takeExpired(idleSince cutoff: NIODeadline) -> (expired: [Idle], oldestLeft: NIODeadline?) {
            var expired: [Idle] = []
            var oldestLeft: NIODeadline?
            for key in Array(byKey.keys) {
                let entries = byKey[key]!
                // Oldest first: the expired ones are a prefix.
                let count = entries.prefix { $0.since <= cutoff }.count
                if count > 0 {
                    expired += entries.prefix(count)
                    byKey[key]!.removeFirst(count)
                    forget(count, of: key)
                }
                if count < entries.count { oldestLeft = min(oldestLeft ?? entries[count].since, entries[count].since) }
            }
            return (expired, oldestLeft)
        }

        mutating func remove(_ channel: any Channel, _ key: Key) -> Idle? {
            guard let index = byKey[key]?.firstIndex(where: { $0.channel === channel }) else { return nil }
            let entry = byKey[key]!.remove(at: index)
            forget(1, of: key)
            return entry
        }

        /// Counts `count` streams of `key` as gone (already taken from its list), dropping what is left empty.
        private mutating func forget(_ count: Int, of key: Key) {
            if byKey[key]?.isEmpty == true { byKey[key] = nil }
            let left = (perAgent[key.agent] ?? count) - count
            perAgent[key.agent] = left > 0 ? left : nil
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
        let now = configuration.timer.now()
        let (evicted, sweep) = idle.withLock { idle -> (Idle?, Bool) in
            idle.append(Idle(channel: channel, since: now), key)
            let sweep = !idle.sweepScheduled
            idle.sweepScheduled = true
            // Over a bound, the oldest of this port goes: it is the likeliest to be closed by the server soon anyway.
            let over = idle.byKey[key]!.count > configuration.maxIdlePerKey || idle.perAgent[key.agent]! > configuration.maxIdlePerAgent
            return (over ? idle.take(key, last: false) : nil, sweep)
        }
        evicted?.channel.close(promise: nil)
        if sweep { scheduleSweep(after: configuration.idleTimeout, on: channel.eventLoop) }
    }

    private func scheduleSweep(after delay: Duration, on loop: any EventLoop) {
        configuration.timer.schedule(after: delay, on: loop) { [weak self] in self?.sweep(on: loop) }
    }

    /// Closes the streams idle for `idleTimeout`, and comes back when the oldest of the others will be.
    private func sweep(on loop: any EventLoop) {
        let now = configuration.timer.now()
        let timeout = TimeAmount(configuration.idleTimeout)
        let (expired, oldestLeft) = idle.withLock { idle in
            let found = idle.takeExpired(idleSince: now - timeout)
            idle.sweepScheduled = found.oldestLeft != nil
            return found
        }
        for entry in expired { entry.channel.close(promise: nil) }
        if let oldestLeft { scheduleSweep(after: Duration(oldestLeft + timeout - now), on: loop) }
    }

    /// Closes every idle stream. (At shutdown the mesh node ends them all anyway.)
    public func closeIdle() {
        let all = idle.withLock { idle in
            defer { (idle.byKey, idle.perAgent) = ([:], [:]) }
            return idle.byKey.values.flatMap { $0 }
        }
        for entry in all { entry.channel.close(promise: nil) }
    }

    private func takeIdle(_ key: Key) -> Idle? {
        idle.withLock { $0.take(key, last: true) }
    }

    /// Takes `channel` out of the idle list, if it is there.
    private func remove(_ channel: any Channel, key: Key) -> Idle? {
        idle.withLock { $0.remove(channel, key) }
    }

    private func forget(_ channel: any Channel, key: Key) {
        _ = remove(channel, key: key)
    }
}

/// The clock and timer of the pool's idle sweep. Production uses the event loop's; tests move time by hand.
public protocol IdleStreamTimer: Sendable {
    func now() -> NIODeadline
    /// Calls `fire` once `delay` has passed.
    func schedule(after delay: Duration, on loop: any EventLoop, _ fire: @escaping @Sendable () -> Void)
}

public struct EventLoopIdleTimer: IdleStreamTimer {
    public init() {}

    public func now() -> NIODeadline { .now() }

    public func schedule(after delay: Duration, on loop: any EventLoop, _ fire: @escaping @Sendable () -> Void) {
        loop.scheduleTask(in: TimeAmount(delay), fire)
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
