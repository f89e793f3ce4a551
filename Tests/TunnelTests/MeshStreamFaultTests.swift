import Crypto
import Foundation
import MeshgateTesting
import NIOCore
import NIOPosix
import Testing
@testable import Tunnel

/// Integrity under faults between two real MeshNodes (WireGuard over UDP) through the impairment relay:
/// 100 concurrent streams of random sizes cross 5 % loss, reordering, duplication and corruption each way,
/// and the SHA-256 of what each receiver got matches what its sender wrote.
///
/// The total is `MESHGATE_FAULT_BYTES` (default 32 MB; the full 100 MB run: MESHGATE_FAULT_BYTES=100000000).
@Suite(.timeLimit(.minutes(5))) struct MeshStreamFaultTests {
    static var totalBytes: Int { ProcessInfo.processInfo.environment["MESHGATE_FAULT_BYTES"].flatMap { Int($0) } ?? 32_000_000 }

    @Test func hundredStreamsThroughALossyLink() async throws {
        let a = try await MeshNode.start(privateKey: .generate(), address: .random(), host: "127.0.0.1")
        let b = try await MeshNode.start(privateKey: .generate(), address: .random(), host: "127.0.0.1")
        let faults = Impairment.Configuration(delay: .milliseconds(1), loss: 0.05, reorder: 0.05, reorderDelay: .milliseconds(3), duplicate: 0.05, corrupt: 0.01)
        let relay = try await ImpairmentLink.start(upstream: try SocketAddress(ipAddress: "127.0.0.1", port: b.localPort!), forward: faults, backward: faults, seed: 5)
        try await a.addPeer(b.privateKey.publicKey, allowedIPs: [MeshPrefix(b.address, length: 128)!], endpoint: relay.localAddress)
        try await b.addPeer(a.privateKey.publicKey, allowedIPs: [MeshPrefix(a.address, length: 128)!], endpoint: nil)
        try await b.listen { _ in .accept { $0.pipeline.addHandler(DigestReply()) } }

        // Random sizes summing to the total: 100 cuts of [0, total].
        var rng = SplitMix(seed: 2024)
        let cuts = ([0, Self.totalBytes] + (0..<99).map { _ in Int.random(in: 0...Self.totalBytes, using: &rng) }).sorted()
        let sizes = zip(cuts, cuts.dropFirst()).map { $1 - $0 }
        let results = try await withThrowingTaskGroup(of: (expected: [UInt8], received: [UInt8]).self) { group in
            for (index, size) in sizes.enumerated() {
                group.addTask {
                    let done = a.channel.eventLoop.makePromise(of: [UInt8].self)
                    let writer = HashingWriter(bytes: size, seed: UInt64(index), done: done)
                    _ = try await a.openStream(to: b.privateKey.publicKey, service: .other("digest")) { $0.pipeline.addHandler(writer) }
                    let received = try await done.futureResult.get()
                    return (writer.digest, received)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 100)
        for result in results { #expect(result.expected == result.received) }
        let stats = try await relay.stats()
        #expect(stats.forward.lost > 0 && stats.forward.duplicated > 0 && stats.forward.reordered > 0 && stats.forward.corrupted > 0)
        let connection = try #require(try await a.streamStatistics(with: b.privateKey.publicKey))
        #expect(connection.bytesRetransmitted > 0)
        try await a.close()
        try await b.close()
        try await relay.close()
    }
}

/// Writes `bytes` of seeded pseudo-random data while the stream is writable, hashing what it writes; closes
/// its output and completes `done` with the digest the receiver sends back.
final class HashingWriter: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var remaining: Int
    private var rng: SplitMix
    private var hasher = Crypto.SHA256()
    private(set) var digest: [UInt8] = []
    private var reply = ByteBuffer()
    private let done: EventLoopPromise<[UInt8]>

    init(bytes: Int, seed: UInt64, done: EventLoopPromise<[UInt8]>) { (remaining, rng, self.done) = (bytes, SplitMix(seed: seed), done) }

    func channelActive(context: ChannelHandlerContext) { pump(context) }
    func channelWritabilityChanged(context: ChannelHandlerContext) { pump(context) }

    private func pump(_ context: ChannelHandlerContext) {
        guard remaining > 0 || digest.isEmpty else { return }
        while remaining > 0, context.channel.isWritable {
            let size = min(remaining, 32 << 10)
            var chunk = context.channel.allocator.buffer(capacity: size)
            for _ in 0..<(size / 8) { chunk.writeInteger(rng.next()) }
            chunk.writeRepeatingByte(0x42, count: size % 8)
            chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
            context.write(wrapOutboundOut(chunk), promise: nil)
            remaining -= size
        }
        context.flush()
        if remaining == 0, digest.isEmpty {
            digest = Array(hasher.finalize())
            context.close(mode: .output, promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        reply.writeBuffer(&buffer)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent { done.succeed(Array(reply.readableBytesView)) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { done.fail(error) }
}

/// Hashes everything it reads; answers the FIN with the digest and its own FIN.
final class DigestReply: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var hasher = Crypto.SHA256()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        unwrapInboundIn(data).withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .inputClosed = event as? ChannelEvent else { return }
        context.write(wrapOutboundOut(ByteBuffer(bytes: Array(hasher.finalize()))), promise: nil)
        context.close(mode: .output, promise: nil)
    }
}
