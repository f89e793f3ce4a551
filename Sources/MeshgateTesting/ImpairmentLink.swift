import NIOCore
import NIOPosix

/// A UDP relay that impairs both directions, for tests and benchmarks on a kernel without netem.
///
/// Datagrams arriving on the listening socket go to `upstream` through the forward impairment, sent from a
/// second socket; datagrams from `upstream` to that socket go back, through the backward impairment, to the
/// client that sent last. Two WireGuard peers work through it unchanged: the client's peer has the relay as its
/// endpoint, and the upstream peer roams to the relay's second socket.
///
/// Both sockets and all relay state live on one event loop; packets never hop threads.
public final class ImpairmentLink: Sendable {
    /// Counters of both directions since the link started.
    public struct Stats: Sendable, Equatable {
        /// Client to upstream.
        public var forward: Impairment.Counters
        /// Upstream to the client.
        public var backward: Impairment.Counters
        /// Copies the impairment released but the link could not send: its pending queue was full or the
        /// socket was not writable.
        public var forwardOverflowed: Int
        public var backwardOverflowed: Int
        /// Datagrams on the upstream socket from another address, or before any client had sent.
        public var unroutable: Int
        /// Errors the sockets reported (ICMP errors, failed sends); the link keeps running.
        public var socketErrors: Int
    }

    /// The listening socket's address (its port is the bound one when started with port 0).
    public let localAddress: SocketAddress
    public let upstream: SocketAddress
    private let listener: any Channel
    private let upstreamChannel: any Channel
    private let relay: NIOLoopBound<Relay>

    /// The listening socket's port.
    public var port: Int { localAddress.port ?? 0 }

    private init(localAddress: SocketAddress, upstream: SocketAddress, listener: any Channel, upstreamChannel: any Channel, relay: NIOLoopBound<Relay>) {
        (self.localAddress, self.upstream, self.listener, self.upstreamChannel, self.relay) = (localAddress, upstream, listener, upstreamChannel, relay)
    }

    /// Binds the listening socket at `host:port` (port 0: any) and a socket towards `upstream`, and starts relaying.
    /// The backward direction's generator is seeded from `seed` too, but differently, so the directions'
    /// patterns are independent.
    public static func start(
        host: String = "127.0.0.1", port: Int = 0, upstream: SocketAddress,
        forward: Impairment.Configuration, backward: Impairment.Configuration, seed: UInt64 = 1,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> ImpairmentLink {
        var seeds = SplitMix64(seed: seed)
        let forwardImpairment = try Impairment(forward, seed: seeds.next())
        let backwardImpairment = try Impairment(backward, seed: seeds.next())
        let loop = group.next()
        let relay = try await loop.submit {
            NIOLoopBound(Relay(upstream: upstream, forward: forwardImpairment, backward: backwardImpairment, loop: loop), eventLoop: loop)
        }.get()
        let listener = try await bootstrap(loop, relay: relay, side: .listener).bind(host: host, port: port).get()
        let wildcard = upstream.protocol == .inet6 ? "::" : "0.0.0.0"
        let upstreamChannel: any Channel
        do {
            upstreamChannel = try await bootstrap(loop, relay: relay, side: .upstream).bind(host: wildcard, port: 0).get()
        } catch {
            listener.close(promise: nil)
            throw error
        }
        try await loop.submit {
            relay.value.forward.channel = upstreamChannel
            relay.value.backward.channel = listener
        }.get()
        return ImpairmentLink(localAddress: listener.localAddress!, upstream: upstream, listener: listener, upstreamChannel: upstreamChannel, relay: relay)
    }

    private static func bootstrap(_ loop: any EventLoop, relay: NIOLoopBound<Relay>, side: RelayHandler.Side) -> DatagramBootstrap {
        DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // Bursts at line rate overflow the default ~200 KB buffers; the kernel caps this at rmem_max/wmem_max.
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            .channelOption(.socketOption(.so_sndbuf), value: 4 << 20)
            // A timer's batch is written before one flush; NIO's default 64 KiB high watermark would mark the
            // channel unwritable mid-batch and drop packets the socket buffer has room for.
            .channelOption(.writeBufferWaterMark, value: .init(low: 2 << 20, high: 4 << 20))
            // Any UDP datagram fits, so none is truncated; each is copied out to its own size (RelayHandler).
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelOption(.maxMessagesPerRead, value: 32)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RelayHandler(relay: relay.value, side: side))
                }
            }
    }

    public func stats() async throws -> Stats {
        let relay = self.relay
        return try await listener.eventLoop.submit { relay.value.stats }.get()
    }

    /// Stops relaying: packets still held are dropped, both sockets closed.
    public func close() async throws {
        let relay = self.relay
        try await listener.eventLoop.submit {
            relay.value.forward.stop()
            relay.value.backward.stop()
        }.get()
        try await listener.close()
        try await upstreamChannel.close()
    }
}

/// The relay's state on its event loop: both directions and the client replies go to.
final class Relay {
    let upstream: SocketAddress
    let forward: ImpairedDirection
    let backward: ImpairedDirection
    private var unroutable = 0
    var socketErrors = 0

    init(upstream: SocketAddress, forward: Impairment, backward: Impairment, loop: any EventLoop) {
        self.upstream = upstream
        self.forward = ImpairedDirection(impairment: forward, loop: loop)
        self.backward = ImpairedDirection(impairment: backward, loop: loop)
        self.forward.destination = upstream
    }

    func fromClient(_ packet: ByteBuffer, sender: SocketAddress, now: ContinuousClock.Instant) {
        backward.destination = sender  // replies go to whoever sent last (a roaming peer)
        forward.offer(packet, now: now)
    }

    func fromUpstream(_ packet: ByteBuffer, sender: SocketAddress, now: ContinuousClock.Instant) {
        guard sender == upstream, backward.destination != nil else {
            unroutable += 1
            return
        }
        backward.offer(packet, now: now)
    }

    var stats: ImpairmentLink.Stats {
        .init(forward: forward.impairment.counters, backward: backward.impairment.counters,
              forwardOverflowed: forward.overflowed, backwardOverflowed: backward.overflowed, unroutable: unroutable,
              socketErrors: socketErrors)
    }
}

/// Feeds one socket's datagrams into the relay and releases what is due after each read burst.
final class RelayHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    enum Side { case listener, upstream }

    private let relay: Relay
    private let side: Side

    init(relay: Relay, side: Side) { (self.relay, self.side) = (relay, side) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        // A compact copy: the read buffer is 64 KiB and goes back to the channel's pool once released.
        let packet = context.channel.allocator.buffer(buffer: envelope.data)
        switch side {
        case .listener: relay.fromClient(packet, sender: envelope.remoteAddress, now: .now)
        case .upstream: relay.fromUpstream(packet, sender: envelope.remoteAddress, now: .now)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        switch side {
        case .listener: relay.forward.releaseDue(now: .now)
        case .upstream: relay.backward.releaseDue(now: .now)
        }
    }

    /// ICMP errors (port unreachable while a peer restarts) must not close the relay: counted, not propagated.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        relay.socketErrors += 1
    }
}
