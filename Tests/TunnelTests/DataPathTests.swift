import NIOCore
import Testing

@testable import Tunnel

/// The data path on `ByteBuffer`s (`sealTransport`, `receiveTransport`, `UDPDatagram.write`/`payload`) against
/// the device's array path, which the known-answer and wireguard-go tests pin.
@Suite struct DataPathTests {
    /// A stream datagram as `MeshNode` builds it: header room, IPv6/UDP, payload; `offset` bytes already read.
    func streamDatagram(_ pair: Pair, _ payload: [UInt8], offset: Int = 0) -> ByteBuffer {
        var datagram = ByteBuffer()
        datagram.writeRepeatingByte(0xee, count: offset)
        datagram.moveReaderIndex(forwardBy: offset)
        datagram.writeRepeatingByte(0, count: TransportCodec.headerLength)
        UDPDatagram.write(source: pair.aAddress, destination: pair.bAddress, sourcePort: MeshStreamTransport.port,
                          destinationPort: MeshStreamTransport.port, payload: ByteBuffer(bytes: payload), into: &datagram)
        return datagram
    }

    /// Sealed in the buffer, it opens on the array path; opened into a buffer, the stream payload comes out as a
    /// slice. Every padding length (0-15) and both reader offsets.
    @Test func aBufferSealedDatagramOpensOnBothPaths() throws {
        let pair = Pair()
        pair.sendAB("handshake")
        for length in 0..<33 {
            for offset in [0, 3] {
                let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
                var datagram = streamDatagram(pair, payload, offset: offset)
                let endpoint = pair.a.sealTransport(&datagram, to: pair.bKey.publicKey, now: pair.now)
                #expect(endpoint == pair.bEndpoint)
                #expect(datagram.readableBytes == TransportCodec.sealedLength(of: 48 + length))

                // The array path: the packet arrives whole and its checksum verifies.
                let delivered = pair.b.receive(Array(datagram.readableBytesView), from: pair.aEndpoint, now: pair.now)
                guard case .deliver(let packet, _)? = delivered.first else { Issue.record("not delivered: \(delivered)"); continue }
                #expect(UDPDatagram.decode(packet)?.payload == payload)
            }
        }
        // The buffer path, on a datagram that shares storage with another (as recvmmsg's slices do).
        var datagram = streamDatagram(pair, Array("through the buffer".utf8))
        _ = pair.a.sealTransport(&datagram, to: pair.bKey.publicKey, now: pair.now)
        var shared = ByteBuffer(bytes: [1, 2, 3])
        shared.writeImmutableBuffer(datagram)
        let slice = shared.getSlice(at: 3, length: datagram.readableBytes)!
        let (outputs, delivery) = pair.b.receiveTransport(slice, from: pair.aEndpoint, now: pair.now)
        #expect(outputs.isEmpty)
        let (packet, peer) = try #require(delivery)
        #expect(peer == pair.aKey.publicKey)
        let payload = try #require(UDPDatagram.payload(of: packet, to: pair.bAddress, port: MeshStreamTransport.port))
        #expect(Array(payload.readableBytesView) == Array("through the buffer".utf8))
        #expect(shared.getSlice(at: 3, length: datagram.readableBytes) == datagram, "the received datagram is left as it was (decrypted into a buffer of its own)")
        #expect(UDPDatagram.payload(of: packet, to: pair.aAddress, port: MeshStreamTransport.port) == nil, "another destination")
        #expect(UDPDatagram.payload(of: packet, to: pair.bAddress, port: 9) == nil, "another port")

        // A replay of it is dropped, as on the array path.
        #expect(pair.b.receiveTransport(slice, from: pair.aEndpoint, now: pair.now).delivery == nil)
        #expect(pair.b.drops[.replayedCounter] == 1)
    }

    /// Without a session, or with a rekey due, the buffer path declines and the array path (which queues and
    /// handshakes) takes the packet.
    @Test func theBufferPathDeclinesWhatNeedsAHandshake() {
        let pair = Pair()
        var datagram = streamDatagram(pair, [1, 2, 3])
        #expect(pair.a.sealTransport(&datagram, to: pair.bKey.publicKey, now: pair.now) == nil, "no session yet")
        pair.sendAB("handshake")
        pair.now += WireGuardTimers.rekeyAfterTime
        #expect(pair.a.sealTransport(&datagram, to: pair.bKey.publicKey, now: pair.now) == nil, "rekey due")
        #expect(pair.a.sealTransport(&datagram, to: NodePrivateKey.generate().publicKey, now: pair.now) == nil, "unknown peer")
    }

    /// What a peer may not send is dropped on the buffer path too: a forged tag, a source outside its allowed IPs,
    /// a truncated message.
    @Test func theBufferPathDropsWhatTheArrayPathDrops() {
        let pair = Pair()
        pair.sendAB("handshake")
        var forged = streamDatagram(pair, [1, 2, 3])
        _ = pair.a.sealTransport(&forged, to: pair.bKey.publicKey, now: pair.now)
        forged.setInteger(forged.getInteger(at: forged.writerIndex - 1, as: UInt8.self)! ^ 1, at: forged.writerIndex - 1)
        #expect(pair.b.receiveTransport(forged, from: pair.aEndpoint, now: pair.now).delivery == nil)
        #expect(pair.b.drops[.authentication] == 1)

        var spoofed = ByteBuffer()
        spoofed.writeRepeatingByte(0, count: TransportCodec.headerLength)
        UDPDatagram.write(source: .random(), destination: pair.bAddress, sourcePort: 1, destinationPort: 2, payload: ByteBuffer(bytes: [1]), into: &spoofed)
        _ = pair.a.sealTransport(&spoofed, to: pair.bKey.publicKey, now: pair.now)
        #expect(pair.b.receiveTransport(spoofed, from: pair.aEndpoint, now: pair.now).delivery == nil)
        #expect(pair.b.drops[.disallowedSource] == 1)

        #expect(pair.b.receiveTransport(ByteBuffer(bytes: [4, 0, 0, 0, 1, 2]), from: pair.aEndpoint, now: pair.now).delivery == nil)
        #expect(pair.b.drops[.malformed] == 1)
    }

    /// A run for one segmented write: equal sizes, a shorter one only last, one endpoint, within the kernel's limits.
    @Test func segmentRuns() {
        let here = Endpoint.udp(address: [10, 0, 0, 1], port: 1)
        let there = Endpoint.udp(address: [10, 0, 0, 2], port: 1)
        func datagram(_ size: Int) -> ByteBuffer { ByteBuffer(repeating: UInt8(size & 0xff), count: size) }
        var run = UDPOffload.Run(datagram(1312), to: here)
        let appended1 = run.append(datagram(1312), to: here)
        #expect(appended1)
        let appended2 = run.append(datagram(1312), to: there)
        #expect(!appended2, "another endpoint")
        let appended3 = run.append(datagram(1400), to: here)
        #expect(!appended3, "longer than the segment size")
        let appended4 = run.append(datagram(100), to: here)
        #expect(appended4)
        let appended5 = run.append(datagram(100), to: here)
        #expect(!appended5, "a shorter datagram is the last")
        #expect(run.datagrams.count == 3 && run.bytes == 2724 && run.segmentSize == 1312)
        let joined = run.joined(allocator: ByteBufferAllocator())
        var pieces: [ByteBuffer] = []
        UDPOffload.split(joined, segmentSize: run.segmentSize) { pieces.append($0) }
        #expect(pieces == run.datagrams, "a coalesced read splits back into the datagrams")
        var whole: [ByteBuffer] = []
        UDPOffload.split(joined, segmentSize: nil) { whole.append($0) }
        #expect(whole == [joined], "no segment size: one datagram")

        var long = UDPOffload.Run(datagram(1000), to: here)
        while long.append(datagram(1000), to: here) {}
        #expect(long.bytes <= UDPOffload.maxBytes && long.datagrams.count == UDPOffload.maxBytes / 1000)
        var many = UDPOffload.Run(datagram(10), to: here)
        while many.append(datagram(10), to: here) {}
        #expect(many.datagrams.count == UDPOffload.maxSegments)
    }

    /// The route probe: loopback checksums without hardware trouble, so a segmented write to it goes through.
    @Test func segmentationWorksOnLoopback() throws {
        #if os(Linux)
        try #require(UDPOffload.sendAvailable)
        // Loopback's MTU is about 64 KiB (the kernel reports 65535), less 28 bytes of IPv4 and UDP headers.
        #expect(UDPOffload.segmentLimit(to: .udp(address: [127, 0, 0, 1], port: 9)) == 65_535 - 28)
        #expect(UDPOffload.segmentLimit(to: .derp(region: 1, node: NodePrivateKey.generate().publicKey)) == 0)
        #endif
    }
}
