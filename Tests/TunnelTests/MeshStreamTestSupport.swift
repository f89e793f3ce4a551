import NIOCore
import NIOEmbedded
@testable import Tunnel

/// Two stream multiplexers joined by an in-memory link on one `EmbeddedEventLoop`: time only moves when the
/// test advances it, and loss, duplication and reordering come from a seeded generator, so every run is the same.
final class StreamLinkPair {
    let loop = EmbeddedEventLoop()
    let keyA = NodePrivateKey(bytes: (0..<32).map { UInt8($0) })!
    let keyB = NodePrivateKey(bytes: (0..<32).map { UInt8(100 + $0) })!
    private(set) var a: MeshStreamMultiplexer!
    private(set) var b: MeshStreamMultiplexer!
    let parameters: MeshStreamTransport.Parameters

    /// One-way delay, and the extra delay a reordered packet gets.
    var delay: TimeAmount = .milliseconds(1)
    var reorderDelay: TimeAmount = .milliseconds(3)
    var loss = 0.0, duplicate = 0.0, reorder = 0.0
    /// Drop everything (a dead peer, a cut cable).
    var cut = false
    /// Intercepts datagrams from A to B (return false to drop), for tests that tamper.
    var tapAToB: ((ByteBuffer) -> Bool)?
    private var rng = SplitMix(seed: 7)
    private(set) var carried = 0, dropped = 0
    /// What B sent to peers other than A (tests that play a third node).
    var sentToOthers: [NodePublicKey: [ByteBuffer]] = [:]

    init(parameters: MeshStreamTransport.Parameters = .init(), seed: UInt64 = 7) {
        self.parameters = parameters
        self.rng = SplitMix(seed: seed)
        a = makeA()
        b = makeB()
    }

    func makeA() -> MeshStreamMultiplexer {
        MeshStreamMultiplexer(localKey: keyA.publicKey, eventLoop: loop, parent: nil, parameters: parameters) { [unowned self] datagrams, _ in
            for datagram in datagrams where tapAToB?(datagram) ?? true { carry(datagram) { $0.b.receive(datagram, from: $0.keyA.publicKey) } }
        }
    }

    func makeB() -> MeshStreamMultiplexer {
        MeshStreamMultiplexer(localKey: keyB.publicKey, eventLoop: loop, parent: nil, parameters: parameters) { [unowned self] datagrams, peer in
            guard peer == keyA.publicKey else {
                sentToOthers[peer, default: []] += datagrams
                return
            }
            for datagram in datagrams { carry(datagram) { $0.a.receive(datagram, from: $0.keyB.publicKey) } }
        }
    }

    /// B's process restarts: a new multiplexer with a new epoch and no state.
    func restartB() {
        b = makeB()
    }

    private func carry(_ datagram: ByteBuffer, deliver: @escaping (StreamLinkPair) -> Void) {
        if cut || Double.random(in: 0..<1, using: &rng) < loss {
            dropped += 1
            return
        }
        carried += 1
        let late = Double.random(in: 0..<1, using: &rng) < reorder
        let copies = Double.random(in: 0..<1, using: &rng) < duplicate ? 2 : 1
        for copy in 0..<copies {
            let wait = delay + (late ? reorderDelay : .zero) + .microseconds(Int64(copy) * 500)
            loop.scheduleTask(in: wait) { [unowned self] in deliver(self) }
        }
    }

    /// Advances time in 1 ms steps until `condition` holds; false if `limit` passes first.
    @discardableResult
    func run(for limit: TimeAmount = .seconds(120), until condition: () -> Bool = { false }) -> Bool {
        var elapsed = TimeAmount.zero
        loop.run()
        while !condition() {
            guard elapsed < limit else { return false }
            loop.advanceTime(by: .milliseconds(1))
            elapsed = elapsed + .milliseconds(1)
        }
        return true
    }

    /// Opens a stream from A with a recorder at the end of its pipeline.
    func open(_ service: MeshService, recorder: StreamRecorder = StreamRecorder()) throws -> (any Channel, StreamRecorder) {
        let future = a.openStream(to: keyB.publicKey, service: service) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(recorder)
                return channel
            }
        }
        loop.run()
        return (try future.wait(), recorder)
    }
}

/// Records what reaches the end of a stream's pipeline; optionally echoes data back and closes its output
/// when the input ends. Touched only on the embedded loop (single-threaded), hence `@unchecked Sendable`.
final class StreamRecorder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    var received = ByteBuffer()
    var inputClosed = false
    var inactive = false
    var errors: [any Error] = []
    var writabilityChanges: [Bool] = []
    let echo: Bool

    init(echo: Bool = false) { self.echo = echo }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if echo { context.write(wrapOutboundOut(buffer), promise: nil) }
        received.writeBuffer(&buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if echo { context.flush() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent {
            inputClosed = true
            if echo { context.close(mode: .output, promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { errors.append(error) }
    func channelInactive(context: ChannelHandlerContext) { inactive = true }
    func channelWritabilityChanged(context: ChannelHandlerContext) { writabilityChanges.append(context.channel.isWritable) }
}

extension ByteBuffer {
    /// Deterministic pseudo-random bytes.
    static func pattern(_ count: Int, seed: UInt64) -> ByteBuffer {
        var rng = SplitMix(seed: seed)
        var buffer = ByteBuffer()
        buffer.reserveCapacity(count)
        var left = count
        while left > 0 {
            var word = rng.next()
            let n = Swift.min(8, left)
            withUnsafeBytes(of: &word) { _ = buffer.writeBytes($0.prefix(n)) }
            left -= n
        }
        return buffer
    }
}
