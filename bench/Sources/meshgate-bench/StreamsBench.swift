// `meshgate-bench streams …`: mesh streams between two MeshNodes in this process (one event loop each, so
// both cores work), over loopback UDP, or through the impairment relay in-process when --delay / --loss
// are given (each way). Prints one JSON object.
//
// bulk: one stream carries --bytes to a sink that acknowledges the FIN; MB/s from open to acknowledgement.
// rr:   --rr-count sequential 64-byte requests, each answered with 64 bytes, on one stream; p50/p99.
// seal: libsodium's ChaCha20-Poly1305 seal of 1232-byte datagrams on one core (the crypto limit).
import CSodium
import Foundation
import MeshgateTesting
import NIOCore
import NIOPosix
import Tunnel

enum StreamsBench {
    struct Options {
        var bytes = 200 << 20
        var requests = 2000
        var congestion = MeshStreamTransport.Parameters().congestion
        var timeout: Duration = .seconds(300)
        var ackEvery = MeshStreamTransport.Parameters().ackElicitingThreshold
        /// When set, the nodes talk through an in-process impairment relay with this configuration each way.
        var impairment: Impairment.Configuration?

        init(_ arguments: ArraySlice<String>) throws {
            let flags = try Flags(arguments)
            bytes = try flags.parsed("bytes") { Int($0) } ?? bytes
            requests = try flags.parsed("rr-count") { Int($0) } ?? requests
            congestion = try flags.parsed("congestion") { CongestionAlgorithm(rawValue: $0) } ?? congestion
            timeout = try flags.parsed("timeout", ImpairCommand.duration) ?? timeout
            ackEvery = try flags.parsed("ack-every") { Int($0) } ?? ackEvery
            let delay = try flags.parsed("delay", ImpairCommand.duration)
            let loss = try flags.parsed("loss") { Double($0) }
            if delay != nil || loss != nil {
                impairment = Impairment.Configuration(delay: delay ?? .zero, loss: loss ?? 0)
            }
        }
    }

    static func run(_ arguments: ArraySlice<String>) async throws -> [String: Any] {
        let options = try Options(arguments)
        var result: [String: Any] = ["seal_mb_s": sealSpeed(), "congestion": options.congestion.rawValue]
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var parameters = MeshStreamTransport.Parameters()
        parameters.congestion = options.congestion
        parameters.ackElicitingThreshold = options.ackEvery
        let (aKey, bKey) = (NodePrivateKey.generate(), NodePrivateKey.generate())
        let (aAddress, bAddress) = (MeshAddress.random(), MeshAddress.random())
        let a = try await MeshNode.start(privateKey: aKey, address: aAddress, host: "127.0.0.1", streamParameters: parameters, group: group)
        let b = try await MeshNode.start(privateKey: bKey, address: bAddress, host: "127.0.0.1", streamParameters: parameters, group: group)
        let direct = try SocketAddress(ipAddress: "127.0.0.1", port: b.localPort!)
        var relay: ImpairmentLink?
        if let impairment = options.impairment {
            relay = try await ImpairmentLink.start(upstream: direct, forward: impairment, backward: impairment, seed: 1)
            result["impairment"] = "delay \(impairment.delay) each way, loss \(impairment.loss) each way"
        }
        try await a.addPeer(bKey.publicKey, allowedIPs: [MeshPrefix(bAddress, length: 128)!], endpoint: relay?.localAddress ?? direct)
        try await b.addPeer(aKey.publicKey, allowedIPs: [MeshPrefix(aAddress, length: 128)!], endpoint: nil)
        try await b.listen { request in
            switch request.service.name {
            case "sink": .accept { $0.pipeline.addHandler(Sink()) }
            case "echo": .accept { $0.pipeline.addHandler(Echo()) }
            default: .refuse(reason: "bench serves sink and echo")
            }
        }
        _ = try await a.ping(bAddress, timeout: .seconds(10))  // handshake outside the timings

        if options.bytes > 0 {
            let done = group.next().makePromise(of: Void.self)
            let start = ContinuousClock.now
            _ = try await a.openStream(to: bKey.publicKey, service: .other("sink")) { stream in
                stream.pipeline.addHandler(BulkWriter(bytes: options.bytes, done: done))
            }
            try await withDeadline(options.timeout) { try await done.futureResult.get() }
            let seconds = (ContinuousClock.now - start).inSeconds
            result["bulk_bytes"] = options.bytes
            result["bulk_seconds"] = seconds
            result["bulk_mb_s"] = Double(options.bytes) / seconds / 1e6
            if let statistics = try await a.streamStatistics(with: bKey.publicKey) {
                result["bulk_packets_sent"] = statistics.packetsSent
                result["bulk_packets_lost"] = statistics.packetsLost
                result["bulk_bytes_retransmitted"] = statistics.bytesRetransmitted
            }
        }
        if options.requests > 0 {
            let stream = try await a.openStream(to: bKey.publicKey, service: .other("echo")) { stream in
                stream.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: stream) }
            }
            var samples = try await withDeadline(options.timeout) {
                try await stream.executeThenClose { inbound, outbound in
                    var samples: [Double] = []
                    var iterator = inbound.makeAsyncIterator()
                    let request = ByteBuffer(repeating: 0x61, count: 64)
                    for _ in 0..<options.requests {
                        let sent = ContinuousClock.now
                        try await outbound.write(request)
                        var received = 0
                        while received < 64, let chunk = try await iterator.next() { received += chunk.readableBytes }
                        samples.append((ContinuousClock.now - sent).inSeconds * 1e6)
                    }
                    return samples
                }
            }
            samples.sort()
            result["rr_count"] = samples.count
            result["rr_p50_us"] = samples[samples.count / 2]
            result["rr_p99_us"] = samples[samples.count * 99 / 100]
        }
        try await a.close()
        try await b.close()
        try await relay?.close()
        try await group.shutdownGracefully()
        return result
    }

    /// libsodium ChaCha20-Poly1305 seal of one 1232-byte datagram after another, for half a second.
    static func sealSpeed() -> Double {
        var buffer = [UInt8](repeating: 7, count: MeshStreamTransport.maxDatagramSize + 40 + 8)
        var tag = [UInt8](repeating: 0, count: 16)
        let key = AEAD.randomBytes(32)
        var nonce = [UInt8](repeating: 0, count: 12)
        var count = 0
        let start = ContinuousClock.now
        while ContinuousClock.now - start < .milliseconds(500) {
            for _ in 0..<1000 {
                count += 1
                nonce[4] = UInt8(truncatingIfNeeded: count)
                _ = crypto_aead_chacha20poly1305_ietf_encrypt_detached(&buffer, &tag, nil, buffer, UInt64(buffer.count), nil, 0, nil, nonce, key)
            }
        }
        return Double(count * buffer.count) / (ContinuousClock.now - start).inSeconds / 1e6
    }

    static func withDeadline<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw BenchError("timed out after \(timeout)")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }
}

/// Writes `bytes` as fast as the stream stays writable, closes its output, and finishes when the sink's
/// acknowledgement (its own FIN) arrives.
final class BulkWriter: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var remaining: Int
    private let done: EventLoopPromise<Void>
    private let chunk = ByteBuffer(repeating: 0x5a, count: 64 << 10)

    init(bytes: Int, done: EventLoopPromise<Void>) { (remaining, self.done) = (bytes, done) }

    func channelActive(context: ChannelHandlerContext) { pump(context) }
    func channelWritabilityChanged(context: ChannelHandlerContext) { pump(context) }

    private func pump(_ context: ChannelHandlerContext) {
        guard remaining > 0 else { return }
        while remaining > 0, context.channel.isWritable {
            let size = min(remaining, chunk.readableBytes)
            context.write(wrapOutboundOut(chunk.getSlice(at: 0, length: size)!), promise: nil)
            remaining -= size
        }
        context.flush()
        if remaining == 0 { context.close(mode: .output, promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent { done.succeed(()) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { done.fail(error) }
}

/// Reads everything; answers the FIN with its own.
final class Sink: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent { context.close(mode: .output, promise: nil) }
    }
}

final class Echo: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
}
