import NIOCore
import NIOEmbedded
import Testing
@testable import Tunnel

/// Backpressure, resets, timeouts, restarts and hostile input, over the in-memory link.
@Suite struct MeshStreamBehaviourTests {
    final class Accepted: @unchecked Sendable { var byPort: [UInt16: [StreamRecorder]] = [:]; var channels: [UInt16: [any Channel]] = [:] }

    /// B accepts tcp:PORT; port 1 streams do not read (autoRead off), others echo.
    func listen(_ pair: StreamLinkPair) -> Accepted {
        let accepted = Accepted()
        pair.b.acceptor = { request in
            guard case .tcp(let port) = request.service else { return .refuse(reason: "tcp only") }
            return .accept { channel in
                channel.eventLoop.makeCompletedFuture {
                    let recorder = StreamRecorder(echo: port != 1)
                    if port == 1 { try channel.syncOptions!.setOption(.autoRead, value: false) }
                    try channel.pipeline.syncOperations.addHandler(recorder)
                    accepted.byPort[port, default: []].append(recorder)
                    accepted.channels[port, default: []].append(channel)
                }
            }
        }
        return accepted
    }

    /// A reader that stops reading holds back only its own stream: the sender's channel turns unwritable, the
    /// receiver buffers no more than the stream window, and five other streams finish meanwhile. When it reads
    /// again, everything arrives intact.
    @Test func stalledReaderDoesNotStallOthers() throws {
        var parameters = MeshStreamTransport.Parameters()
        (parameters.streamWindow, parameters.connectionWindow) = (256 << 10, 1 << 20)
        let pair = StreamLinkPair(parameters: parameters)
        let accepted = listen(pair)
        let (stalled, stalledRecorder) = try pair.open(.tcp(port: 1))
        let big = ByteBuffer.pattern(2 << 20, seed: 5)
        var chunks = big
        while let chunk = chunks.readSlice(length: min(64 << 10, chunks.readableBytes)), chunk.readableBytes > 0 { stalled.write(chunk, promise: nil) }
        stalled.flush()
        var others: [(ByteBuffer, StreamRecorder)] = []
        for index in 0..<5 {
            let (stream, recorder) = try pair.open(.tcp(port: 2))
            let payload = ByteBuffer.pattern(512 << 10, seed: UInt64(index))
            stream.writeAndFlush(payload, promise: nil)
            stream.close(mode: .output, promise: nil)
            others.append((payload, recorder))
        }
        #expect(pair.run(for: .seconds(30)) { others.allSatisfy { $0.1.inputClosed } })
        for (payload, recorder) in others { #expect(recorder.received == payload) }
        #expect(stalledRecorder.writabilityChanges.first == false)
        #expect(!stalled.isWritable)
        let receiver = try #require(pair.b.connections[pair.keyA.publicKey]?.streams[(stalled as! MeshStreamChannel).id])
        #expect(receiver.reassembly.bufferedBytes <= Int(pair.parameters.streamWindow))
        #expect(accepted.byPort[1]?.first?.received.readableBytes == 0)

        // Reading again drains the stream; credit flows back and the sender finishes.
        try accepted.channels[1]!.first!.syncOptions!.setOption(.autoRead, value: true)
        stalled.close(mode: .output, promise: nil)
        #expect(pair.run(for: .seconds(30)) { accepted.byPort[1]?.first?.inputClosed == true })
        #expect(accepted.byPort[1]?.first?.received == big)
        #expect(stalled.isWritable)
    }

    /// RESET_STREAM reaches the peer's pipeline as `.reset(code)` and closes both channels; the stream is then
    /// forgotten on both sides.
    @Test func resetStream() throws {
        let pair = StreamLinkPair()
        let accepted = listen(pair)
        let (stream, recorder) = try pair.open(.tcp(port: 1))
        stream.writeAndFlush(ByteBuffer.pattern(50_000, seed: 1), promise: nil)
        pair.run(for: .milliseconds(50))
        try stream.triggerUserOutboundEvent(MeshStreamEvent.reset(code: 42)).wait()
        #expect(pair.run(for: .seconds(2)) { accepted.byPort[1]?.first?.inactive == true })
        #expect(accepted.byPort[1]?.first?.errors.first as? MeshStreamError == .reset(code: 42))
        #expect(recorder.inactive)
        #expect(pair.run(for: .seconds(2)) { pair.a.connections.values.allSatisfy { $0.streams.isEmpty } && pair.b.connections.values.allSatisfy { $0.streams.isEmpty } })
    }

    /// Data and a RESET_STREAM that arrive in one turn of the loop: the data reaches the pipeline first (delivery
    /// waits for the end of the turn, and the reset must not overtake it), then the reset.
    @Test func dataBeforeAResetInTheSameTurnArrivesFirst() throws {
        let pair = StreamLinkPair()
        let accepted = listen(pair)
        let (stream, _) = try pair.open(.tcp(port: 2))
        stream.writeAndFlush(ByteBuffer(string: "open. "), promise: nil)
        #expect(pair.run(for: .seconds(1)) { accepted.byPort[2]?.first?.received.readableBytes == 6 })
        stream.writeAndFlush(ByteBuffer(string: "before the reset"), promise: nil)
        pair.loop.run()  // the data leaves now, the reset right after it: both arrive 1 ms later, in one turn
        try stream.triggerUserOutboundEvent(MeshStreamEvent.reset(code: 7)).wait()
        pair.loop.run()
        #expect(pair.run(for: .seconds(2)) { accepted.byPort[2]?.first?.inactive == true })
        let peer = try #require(accepted.byPort[2]?.first)
        #expect(peer.received == ByteBuffer(string: "open. before the reset"))
        #expect(peer.errors.first as? MeshStreamError == .reset(code: 7))
    }

    /// Closing the input sends STOP_SENDING: the writer learns it with `.stopSending` and its output is reset.
    @Test func stopSending() throws {
        let pair = StreamLinkPair()
        let accepted = listen(pair)
        let (stream, recorder) = try pair.open(.tcp(port: 1))
        stream.writeAndFlush(ByteBuffer(string: "first"), promise: nil)
        #expect(pair.run(for: .seconds(1)) { accepted.channels[1] != nil })
        accepted.channels[1]!.first!.close(mode: .input, promise: nil)
        #expect(pair.run(for: .seconds(2)) { !recorder.errors.isEmpty })
        #expect(recorder.errors.first as? MeshStreamError == .stopSending(code: 0))
        let write = stream.writeAndFlush(ByteBuffer(string: "more"))
        pair.run(for: .milliseconds(10))
        #expect(throws: (any Error).self) { try write.wait() }
    }

    /// A peer that goes silent: its streams fail with `.idleTimeout` after the idle timeout, not before.
    /// A live but quiet peer is kept by keepalive PINGs well past it.
    @Test func idleTimeoutAndKeepalive() throws {
        var parameters = MeshStreamTransport.Parameters()
        (parameters.idleTimeout, parameters.keepAliveInterval) = (.seconds(30), .seconds(10))
        let pair = StreamLinkPair(parameters: parameters)
        _ = listen(pair)
        let (stream, recorder) = try pair.open(.tcp(port: 2))
        stream.writeAndFlush(ByteBuffer(string: "hi"), promise: nil)
        #expect(pair.run(for: .seconds(1)) { recorder.received.readableBytes == 2 })
        // Quiet but alive: still open after twice the idle timeout.
        pair.run(for: .seconds(60))
        #expect(recorder.errors.isEmpty && stream.isActive)
        // Silent: fails once 30 s pass without a packet from the peer.
        pair.cut = true
        pair.run(for: .seconds(29))
        #expect(recorder.errors.isEmpty)
        #expect(pair.run(for: .seconds(2)) { recorder.inactive })
        #expect(recorder.errors.first as? MeshStreamError == .idleTimeout)
        #expect(pair.a.connections.isEmpty)
    }

    /// The peer restarts (new epoch, no state): our next packet gets a "no such connection" reply and the old
    /// stream fails with `.peerRestarted`; a new stream to the new process works.
    @Test func peerRestart() throws {
        let pair = StreamLinkPair()
        _ = listen(pair)
        let (stream, recorder) = try pair.open(.tcp(port: 2))
        stream.writeAndFlush(ByteBuffer(string: "before"), promise: nil)
        #expect(pair.run(for: .seconds(1)) { recorder.received.readableBytes == 6 })
        pair.restartB()
        _ = listen(pair)
        stream.writeAndFlush(ByteBuffer(string: "after"), promise: nil)
        #expect(pair.run(for: .seconds(5)) { recorder.inactive })
        #expect(recorder.errors.first as? MeshStreamError == .peerRestarted)
        let (fresh, echo) = try pair.open(.tcp(port: 2))
        fresh.writeAndFlush(ByteBuffer(string: "again"), promise: nil)
        #expect(pair.run(for: .seconds(2)) { echo.received == ByteBuffer(string: "again") })
    }

    /// Garbage and protocol violations from one peer close only that peer's connection (with CONNECTION_CLOSE
    /// naming the problem); a stream with another peer carries on.
    @Test func badPeerHarmsNoOneElse() throws {
        let pair = StreamLinkPair()
        _ = listen(pair)
        let (stream, recorder) = try pair.open(.tcp(port: 2))
        let mallory = NodePrivateKey(bytes: (0..<32).map { UInt8(200 - $0) })!.publicKey
        func packet(_ frames: [StreamFrame], number: UInt64 = 0) -> ByteBuffer {
            var buffer = ByteBuffer()
            MeshStreamPacketHeader(sourceEpoch: 5, destinationEpoch: 0, packetNumber: number).encode(into: &buffer)
            for frame in frames { frame.encode(into: &buffer) }
            return buffer
        }
        // An unknown frame type, then data past the stream window: each closes Mallory's connection.
        var unknown = packet([])
        unknown.writeInteger(UInt8(0x3f))
        pair.b.receive(unknown, from: mallory)
        pair.run(for: .milliseconds(5))
        #expect(pair.b.connections[mallory] == nil)
        #expect(pair.sentToOthers[mallory]?.count == 1)
        let beyond = StreamFrame.stream(id: mallory.bytes.lexicographicallyPrecedes(pair.keyB.publicKey.bytes) ? 0 : 1,
                                        offset: pair.parameters.streamWindow, data: ByteBuffer(string: "x"), fin: false)
        pair.b.receive(packet([beyond]), from: mallory)
        pair.run(for: .milliseconds(5))
        #expect(pair.b.connections[mallory] == nil)
        var close = try #require(pair.sentToOthers[mallory]?.last)
        _ = MeshStreamPacketHeader.decode(from: &close)
        guard case .connectionClose(let code, _, let reason) = try StreamFrame.decodeAll(close).last else {
            Issue.record("no CONNECTION_CLOSE")
            return
        }
        #expect(code == MeshTransportErrorCode.flowControl.rawValue && reason.contains("flow-control"))
        // A truncated header is counted and ignored.
        pair.b.receive(ByteBuffer(bytes: [1, 2, 3]), from: mallory)
        #expect(pair.b.malformedPackets == 1)
        stream.writeAndFlush(ByteBuffer(string: "unharmed"), promise: nil)
        #expect(pair.run(for: .seconds(1)) { recorder.received == ByteBuffer(string: "unharmed") })
    }

    /// A lost packet delays only the stream whose data it carried: the other stream's later data is delivered
    /// first, and the lost bytes follow once recovery resends them.
    @Test func lossDelaysOnlyItsStream() throws {
        let pair = StreamLinkPair()
        let accepted = listen(pair)
        let (first, _) = try pair.open(.tcp(port: 3))
        let (second, _) = try pair.open(.tcp(port: 4))
        first.writeAndFlush(ByteBuffer(string: "hello"), promise: nil)
        second.writeAndFlush(ByteBuffer(string: "hello"), promise: nil)
        #expect(pair.run(for: .seconds(1)) { accepted.byPort[3]?.first?.received.readableBytes == 5 && accepted.byPort[4]?.first?.received.readableBytes == 5 })
        // Drop the next packet that carries data of the first stream.
        let firstID = (first as! MeshStreamChannel).id
        var droppedOne = false
        pair.tapAToB = { datagram in
            var payload = datagram
            guard !droppedOne, MeshStreamPacketHeader.decode(from: &payload) != nil,
                let frames = try? StreamFrame.decodeAll(payload),
                frames.contains(where: { if case .stream(let id, _, _, _) = $0 { id == firstID } else { false } })
            else { return true }
            droppedOne = true
            return false
        }
        first.writeAndFlush(ByteBuffer(string: "-lost-and-resent"), promise: nil)
        pair.loop.run()
        second.writeAndFlush(ByteBuffer(string: "-on-time"), promise: nil)
        pair.loop.run()
        let firstReceiver = accepted.byPort[3]!.first!, secondReceiver = accepted.byPort[4]!.first!
        #expect(pair.run(for: .seconds(1)) { secondReceiver.received.readableBytes == 5 + 8 })
        #expect(droppedOne && firstReceiver.received.readableBytes == 5)
        #expect(pair.run(for: .seconds(2)) { firstReceiver.received == ByteBuffer(string: "hello-lost-and-resent") })
    }

    /// Refused streams whose request and FIN arrived with the header give their bytes back to the connection
    /// window; 120 of them (each request in the header's packet) through a 64 KiB window leave it open for the
    /// next stream. Empty writes complete.
    @Test func refusalsAndEmptyWritesLeakNothing() throws {
        var parameters = MeshStreamTransport.Parameters()
        (parameters.streamWindow, parameters.connectionWindow) = (32 << 10, 64 << 10)
        let pair = StreamLinkPair(parameters: parameters)
        let accepted = listen(pair)
        for _ in 0..<120 {
            // Request and FIN written by the initializer: they leave in the header's packet.
            let recorder = StreamRecorder()
            _ = pair.a.openStream(to: pair.keyB.publicKey, service: .pty) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(recorder)
                    channel.writeAndFlush(ByteBuffer.pattern(1000, seed: 3), promise: nil)
                    channel.close(mode: .output, promise: nil)
                }
            }
            #expect(pair.run(for: .seconds(2)) { recorder.inactive })
        }
        let (stream, _) = try pair.open(.tcp(port: 5))
        let empty = stream.write(ByteBuffer())
        stream.writeAndFlush(ByteBuffer.pattern(200 << 10, seed: 4), promise: nil)
        stream.close(mode: .output, promise: nil)
        #expect(pair.run(for: .seconds(5)) { accepted.byPort[5]?.first?.inputClosed == true })
        #expect(accepted.byPort[5]?.first?.received == ByteBuffer.pattern(200 << 10, seed: 4))
        pair.loop.run()
        #expect(throws: Never.self) { try empty.wait() }
    }
}
