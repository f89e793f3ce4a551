import MeshgateTesting
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// The relay on 127.0.0.1 port 0 between a test client and a UDP echo server. Every wait has a deadline.
@Suite(.timeLimit(.minutes(1))) struct ImpairmentLinkTests {
    /// Datagrams pass both ways through the relay, come back from the relay's port, and each round trip takes
    /// at least twice the one-way delay.
    @Test func relaysBothWaysWithDelay() async throws {
        let echo = try await TestSocket.bind(echo: true)
        let delay = Duration.milliseconds(15)
        let link = try await ImpairmentLink.start(upstream: echo.address, forward: .init(delay: delay), backward: .init(delay: delay))
        let client = try await TestSocket.bind()

        var sentAt: [Int: ContinuousClock.Instant] = [:]
        for index in 0..<50 {
            sentAt[index] = .now
            try await client.send([UInt8(index)] + Array(repeating: 0xab, count: 99), to: link.localAddress)
        }
        let arrivals = await client.receive(50, within: .seconds(5))
        #expect(arrivals.count == 50)
        #expect(arrivals.map { Int($0.payload[0]) } == Array(0..<50), "order kept without reorder")
        for arrival in arrivals {
            #expect(arrival.from == link.localAddress)
            #expect(arrival.payload.count == 100 && arrival.payload.dropFirst().allSatisfy { $0 == 0xab })
            // The relay may release up to its 100 µs slack early in each direction.
            #expect(arrival.at - sentAt[Int(arrival.payload[0])]! >= delay * 2 - .microseconds(200))
        }
        let stats = try await link.stats()
        #expect(stats.forward.forwarded == 50 && stats.backward.forwarded == 50 && echo.received == 50)
        #expect(stats.forwardOverflowed == 0 && stats.backwardOverflowed == 0 && stats.unroutable == 0)

        try await link.close()
        try await client.close()
        try await echo.close()
    }

    /// Replies follow the client that sent last (a roaming WireGuard peer).
    @Test func repliesGoToLatestClient() async throws {
        let echo = try await TestSocket.bind(echo: true)
        let link = try await ImpairmentLink.start(upstream: echo.address, forward: .none, backward: .none)
        let first = try await TestSocket.bind(), second = try await TestSocket.bind()
        try await first.send([1], to: link.localAddress)
        #expect(await first.receive(1, within: .seconds(5)).map(\.payload) == [[1]])
        try await second.send([2], to: link.localAddress)
        #expect(await second.receive(1, within: .seconds(5)).map(\.payload) == [[2]])
        try await link.close()
        for socket in [first, second, echo] { try await socket.close() }
    }

    /// With loss 1 nothing reaches the echo server and nothing comes back, although the relay saw every datagram.
    @Test func totalLossPassesNothing() async throws {
        let echo = try await TestSocket.bind(echo: true)
        let link = try await ImpairmentLink.start(upstream: echo.address, forward: .init(loss: 1), backward: .none)
        let client = try await TestSocket.bind()
        for index in 0..<50 { try await client.send([UInt8(index)], to: link.localAddress) }

        // Loss is decided on arrival, so once the relay counted all 50 nothing can still be in flight.
        let deadline = ContinuousClock.now + .seconds(5)
        var stats = try await link.stats()
        while stats.forward.received < 50, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
            stats = try await link.stats()
        }
        #expect(stats.forward.received == 50 && stats.forward.lost == 50 && stats.forward.forwarded == 0)
        #expect(stats.backward.received == 0 && echo.received == 0)
        try await link.close()
        try await client.close()
        try await echo.close()
    }
}

/// A datagram that reached a `TestSocket`.
struct Arrival: Sendable {
    var payload: [UInt8]
    var from: SocketAddress
    var at: ContinuousClock.Instant
}

/// A UDP socket on 127.0.0.1 port 0 that records what arrives, or echoes it back to the sender.
struct TestSocket: Sendable {
    let channel: any Channel
    let address: SocketAddress
    private let arrivals: AsyncStream<Arrival>
    private let count: Counter

    /// How many datagrams arrived.
    var received: Int { count.value.load(ordering: .relaxed) }

    static func bind(echo: Bool = false) async throws -> TestSocket {
        let (arrivals, continuation) = AsyncStream.makeStream(of: Arrival.self)
        let count = Counter()
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Recorder(continuation: continuation, count: count, echo: echo))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return TestSocket(channel: channel, address: channel.localAddress!, arrivals: arrivals, count: count)
    }

    func send(_ bytes: [UInt8], to destination: SocketAddress) async throws {
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: ByteBuffer(bytes: bytes)))
    }

    /// The first `count` datagrams, or fewer if `timeout` passes first. Call once per socket.
    func receive(_ count: Int, within timeout: Duration) async -> [Arrival] {
        await withTaskGroup(of: [Arrival]?.self) { group in
            group.addTask {
                var received: [Arrival] = []
                for await arrival in arrivals {  // ends early when cancelled by the deadline below
                    received.append(arrival)
                    if received.count == count { break }
                }
                return received
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            if let first { return first }
            return await group.next()!!
        }
    }

    func close() async throws { try await channel.close() }
}

final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

/// Counts and streams every datagram; in echo mode sends it straight back to its sender.
final class Recorder: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let continuation: AsyncStream<Arrival>.Continuation
    private let count: Counter
    private let echo: Bool

    init(continuation: AsyncStream<Arrival>.Continuation, count: Counter, echo: Bool) {
        (self.continuation, self.count, self.echo) = (continuation, count, echo)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        count.value.add(1, ordering: .relaxed)
        if echo {
            context.write(wrapOutboundOut(envelope), promise: nil)
        } else {
            continuation.yield(Arrival(payload: Array(envelope.data.readableBytesView), from: envelope.remoteAddress, at: .now))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
}
