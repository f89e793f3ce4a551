import NIOCore
import NIOConcurrencyHelpers
import NIOEmbedded
import Testing
@testable import Tunnel

/// Mesh streams between two multiplexers over an in-memory link on an embedded loop (time advanced by the test).
@Suite struct MeshStreamTests {
    /// B echoes every stream it accepts.
    func echoing(_ pair: StreamLinkPair, recorders: Recorders = Recorders()) -> Recorders {
        pair.b.acceptor = { request in
            guard case .tcp = request.service else { return .refuse(reason: "only tcp here") }
            return .accept { channel in
                channel.eventLoop.makeCompletedFuture {
                    let recorder = StreamRecorder(echo: true)
                    recorders.all.append(recorder)
                    try channel.pipeline.syncOperations.addHandler(recorder)
                }
            }
        }
        return recorders
    }

    final class Recorders: @unchecked Sendable { var all: [StreamRecorder] = [] }

    /// The first packet carries the service header and data; the echo comes back whole, both sides see the
    /// other's FIN, and the streams close themselves and are forgotten.
    @Test func echoAndGracefulClose() throws {
        let pair = StreamLinkPair()
        _ = echoing(pair)
        let (stream, recorder) = try pair.open(.tcp(port: 8080))
        let payload = ByteBuffer.pattern(300_000, seed: 1)
        stream.writeAndFlush(payload, promise: nil)
        stream.close(mode: .output, promise: nil)
        #expect(pair.run(for: .seconds(10)) { recorder.inputClosed && recorder.inactive })
        #expect(recorder.received == payload)
        #expect(recorder.errors.isEmpty)
        #expect(pair.run(for: .seconds(1)) { pair.a.connections.values.allSatisfy { $0.streams.isEmpty } && pair.b.connections.values.allSatisfy { $0.streams.isEmpty } })
    }

    /// A service the listener does not offer is refused with its reason; nothing else breaks.
    @Test func refusedService() throws {
        let pair = StreamLinkPair()
        _ = echoing(pair)
        let (stream, recorder) = try pair.open(.pty)
        stream.writeAndFlush(ByteBuffer(string: "hello"), promise: nil)
        #expect(pair.run(for: .seconds(5)) { recorder.inactive })
        #expect(recorder.errors.first as? MeshStreamError == .refused(service: "pty", reason: "only tcp here"))
        // The connection still carries other streams.
        let (second, echo) = try pair.open(.tcp(port: 1))
        second.writeAndFlush(ByteBuffer(string: "still here"), promise: nil)
        #expect(pair.run(for: .seconds(5)) { echo.received.readableBytes == 10 })
    }

    /// 40 concurrent streams of random sizes through 5 % loss, 5 % reordering and 5 % duplication come back
    /// byte-identical, and recovery really happened, with every congestion controller.
    @Test(arguments: CongestionAlgorithm.allCases) func integrityUnderFaults(algorithm: CongestionAlgorithm) throws {
        var parameters = MeshStreamTransport.Parameters()
        parameters.congestion = algorithm
        let pair = StreamLinkPair(parameters: parameters, seed: 11)
        (pair.loss, pair.reorder, pair.duplicate) = (0.05, 0.05, 0.05)
        _ = echoing(pair)
        var rng = SplitMix(seed: 99)
        var streams: [(ByteBuffer, StreamRecorder)] = []
        for index in 0..<40 {
            let (stream, recorder) = try pair.open(.tcp(port: 8080))
            let payload = ByteBuffer.pattern(Int.random(in: 0...200_000, using: &rng), seed: UInt64(index))
            stream.writeAndFlush(payload, promise: nil)
            stream.close(mode: .output, promise: nil)
            streams.append((payload, recorder))
        }
        #expect(pair.run(for: .seconds(300)) { streams.allSatisfy { $0.1.inputClosed } })
        for (payload, recorder) in streams {
            #expect(recorder.received == payload)
            #expect(recorder.errors.isEmpty)
        }
        let statistics = try #require(pair.a.statistics(with: pair.keyB.publicKey))
        #expect(statistics.packetsLost > 0 && statistics.bytesRetransmitted > 0)
        #expect(pair.dropped > 0)
    }

    /// More streams over time than the concurrent limit: MAX_STREAMS keeps raising it as streams finish.
    @Test func streamLimitRisesAsStreamsFinish() throws {
        var parameters = MeshStreamTransport.Parameters()
        parameters.maxConcurrentStreams = 16
        let pair = StreamLinkPair(parameters: parameters)
        _ = echoing(pair)
        for round in 0..<5 {
            var recorders: [StreamRecorder] = []
            for _ in 0..<16 {
                let (stream, recorder) = try pair.open(.tcp(port: 1))
                stream.writeAndFlush(ByteBuffer(string: "round \(round)"), promise: nil)
                stream.close(mode: .output, promise: nil)
                recorders.append(recorder)
            }
            #expect(pair.run(for: .seconds(5)) { recorders.allSatisfy { $0.inactive } })
            #expect(recorders.allSatisfy { $0.received == ByteBuffer(string: "round \(round)") })
            // Wait for the peer's MAX_STREAMS before the next round.
            #expect(pair.run(for: .seconds(1)) { pair.a.connections.values.first?.localStreamLimit == UInt64(16 * (round + 2)) })
        }
    }

    /// Opening past the peer's limit waits for it to rise, in order, up to a bound past which it fails at once;
    /// closing the connection fails whatever still waits.
    @Test func opensPastTheLimitWaitForIt() throws {
        var parameters = MeshStreamTransport.Parameters()
        parameters.maxConcurrentStreams = 16
        let pair = StreamLinkPair(parameters: parameters)
        _ = echoing(pair)
        let open = (0..<16).map { _ in try? pair.open(.tcp(port: 1)) }.compactMap { $0 }
        #expect(open.count == 16)
        let recorder = StreamRecorder()
        let waiting = pair.a.openStream(to: pair.keyB.publicKey, service: .tcp(port: 1)) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(recorder)
                return channel
            }
        }
        let opened = NIOLockedValueBox(false)
        waiting.whenSuccess { _ in opened.withLockedValue { $0 = true } }
        pair.run(for: .seconds(1))
        #expect(!opened.withLockedValue { $0 }, "the 17th stream waits while 16 are open")

        for (stream, _) in open {
            stream.writeAndFlush(ByteBuffer(string: "done"), promise: nil)
            stream.close(mode: .output, promise: nil)
        }
        #expect(pair.run(for: .seconds(5)) { opened.withLockedValue { $0 } }, "it opens once the peer raises the limit")
        let stream = try waiting.wait()
        stream.writeAndFlush(ByteBuffer(string: "late"), promise: nil)
        stream.close(mode: .output, promise: nil)
        #expect(pair.run(for: .seconds(5)) { recorder.inactive })
        #expect(recorder.received == ByteBuffer(string: "late"))

        // Fill the limit again, then the waiting room: one more fails at once.
        let connection = try #require(pair.a.connections.values.first)
        let opener = { pair.a.openStream(to: pair.keyB.publicKey, service: .tcp(port: 1)) { $0.eventLoop.makeSucceededFuture($0) } }
        // The peer may still raise the limit for the streams that just finished: open until it stays put.
        for _ in 0..<10 where connection.openedLocal < connection.localStreamLimit {
            for _ in connection.openedLocal..<connection.localStreamLimit { _ = opener() }
            pair.run(for: .milliseconds(50))
        }
        try #require(connection.openedLocal == connection.localStreamLimit)
        let queued = (0..<MeshConnection.maxWaitingOpens).map { _ in opener() }
        pair.run(for: .milliseconds(10))
        let overflow = NIOLockedValueBox<(any Error)?>(nil)
        opener().whenFailure { error in overflow.withLockedValue { $0 = error } }
        #expect(overflow.withLockedValue { $0 } as? MeshStreamError == .tooManyStreams, "failed at once, not queued")
        let failures = NIOLockedValueBox(0)
        for future in queued { future.whenFailure { _ in failures.withLockedValue { $0 += 1 } } }
        pair.a.closeAll(reason: "test over")
        pair.run(for: .milliseconds(10))
        #expect(failures.withLockedValue { $0 } == MeshConnection.maxWaitingOpens, "closing fails every waiting open")
    }
}
