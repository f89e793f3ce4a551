import Foundation
import NIOCore
import PropertyBased
import Testing
import Tunnel

func hexBytes(_ hex: String) -> [UInt8] {
    let digits = Array(hex)
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

@Suite struct VarIntTests {
    /// RFC 9000 Appendix A.1's examples, including a non-shortest encoding of 37.
    @Test(arguments: [
        ("c2197c5eff14e88c", UInt64(151_288_809_941_952_652)), ("9d7f3e7d", 494_878_333), ("7bbd", 15_293), ("25", 37), ("4025", 37),
    ])
    func rfcExamples(hex: String, value: UInt64) throws {
        var buffer = ByteBuffer(bytes: hexBytes(hex))
        #expect(VarInt.read(from: &buffer) == value)
        #expect(buffer.readableBytes == 0)
        if hex != "4025" {
            var written = ByteBuffer()
            VarInt.write(value, to: &written)
            #expect(written.readableBytesView.map { String(format: "%02x", $0) }.joined() == hex)
        }
    }

    /// Every length boundary round-trips; a varint cut short reads as nil and consumes nothing.
    @Test func boundaries() {
        for value: UInt64 in [0, 63, 64, 16_383, 16_384, (1 << 30) - 1, 1 << 30, VarInt.maximum] {
            var buffer = ByteBuffer()
            VarInt.write(value, to: &buffer)
            #expect(buffer.readableBytes == VarInt.length(of: value))
            var short = buffer.getSlice(at: 0, length: buffer.readableBytes - 1)!
            #expect(VarInt.read(from: &short) == nil && short.readerIndex == 0)
            #expect(VarInt.read(from: &buffer) == value)
        }
    }
}

@Suite struct StreamFrameTests {
    static let frames: [StreamFrame] = [
        .padding, .ping,
        .ack(AckFrame(ranges: [90...100, 50...80, 7...7], delay: 1234)),
        .resetStream(id: 4, errorCode: 0x101, finalSize: 70_000),
        .stopSending(id: 8, errorCode: 2),
        .stream(id: 0, offset: 0, data: ByteBuffer(string: "GET / HTTP/1.1"), fin: false),
        .stream(id: 4, offset: 1 << 40, data: ByteBuffer(), fin: true),
        .maxData(1 << 24), .maxStreamData(id: 12, limit: 1 << 20), .maxStreams(100),
        .dataBlocked(1 << 24), .streamDataBlocked(id: 12, limit: 1 << 20),
        .connectionClose(errorCode: 0x0a, frameType: 0x08, reason: "protocol violation"),
    ]

    /// All frame kinds packed into one packet decode back in order.
    @Test func roundTrip() throws {
        var packet = ByteBuffer()
        for frame in Self.frames { frame.encode(into: &packet) }
        #expect(try StreamFrame.decodeAll(packet) == Self.frames)
    }

    /// Golden bytes for an ACK frame written from RFC 9000 §19.3: type, largest, delay, count, first range,
    /// then gap (unacknowledged − 1) and length per range.
    @Test func ackGoldenBytes() {
        var buffer = ByteBuffer()
        StreamFrame.ack(AckFrame(ranges: [90...100, 50...80, 7...7], delay: 5)).encode(into: &buffer)
        // 02 | 64 (100, 2 bytes: 0x4064) | 05 | 02 | 0a (100−90) | gap 90−80−2 = 8, len 30 | gap 50−7−2 = 41, len 0
        #expect(Array(buffer.readableBytesView) == [0x02, 0x40, 0x64, 0x05, 0x02, 0x0a, 0x08, 0x1e, 0x29, 0x00])
    }

    /// Every truncation of a valid packet, and hostile ACKs, fail cleanly instead of trapping.
    @Test func malformedInputIsRefused() {
        var packet = ByteBuffer()
        for frame in Self.frames where frame != .padding { frame.encode(into: &packet) }
        for length in 1..<packet.readableBytes {
            let cut = packet.getSlice(at: 0, length: length)!
            // A cut may land on a frame boundary (then it decodes); never a crash.
            _ = try? StreamFrame.decodeAll(cut)
        }
        let hostile: [[UInt8]] = [
            [0x02, 0x05, 0x00, 0x00, 0x06],  // first range reaches below 0
            [0x02, 0x05, 0x00, 0x01, 0x00, 0x04, 0x00],  // gap below 0
            [0x02, 0x05, 0x00, 0xbf, 0xff, 0xff, 0xff, 0x00],  // a billion ranges announced, none present
            [0x1f],  // unknown type
            [0x0b, 0x00, 0x10, 0x41],  // STREAM length beyond the packet
        ]
        for bytes in hostile {
            #expect(throws: StreamFrameError.self) { try StreamFrame.decodeAll(ByteBuffer(bytes: bytes)) }
        }
    }
}

@Suite struct PacketNumberSetTests {
    /// Against a plain Set: after random inserts the ranges cover exactly the numbers seen, stay sorted and
    /// apart, and an ACK frame of them decodes to the same numbers.
    @Test func matchesASet() async {
        await propertyCheck(count: 300, input: Gen.int(in: 0...120).array(of: 0...300)) { numbers in
            var set = PacketNumberSet(maximumRanges: 1000)
            var reference = Set<UInt64>()
            for number in numbers.map(UInt64.init) {
                #expect(set.insert(number) == reference.insert(number).inserted)
            }
            let covered = set.ranges.flatMap { Array($0) }
            #expect(covered == reference.sorted())
            #expect(zip(set.ranges, set.ranges.dropFirst()).allSatisfy { $0.upperBound + 1 < $1.lowerBound })
            guard let ack = AckFrame(set, delay: 0) else { return #expect(reference.isEmpty) }
            var buffer = ByteBuffer()
            StreamFrame.ack(ack).encode(into: &buffer)
            guard case .ack(let decoded)? = try? StreamFrame.decodeAll(buffer).first else { Issue.record("ACK did not decode"); return }
            #expect(Set(decoded.ranges.flatMap { Array($0) }) == reference)
        }
    }

    /// Past the bound the oldest ranges go; the newest are kept.
    @Test func boundedRanges() {
        var set = PacketNumberSet(maximumRanges: 3)
        for number: UInt64 in [1, 3, 5, 7, 9] { set.insert(number) }
        #expect(set.ranges == [5...5, 7...7, 9...9])
        set.insert(8)
        #expect(set.ranges == [5...5, 7...9])
    }
}

@Suite struct ReassemblyBufferTests {
    /// A peer cutting a stream into slivers with gaps is refused past `maxChunks` pieces, before memory or
    /// time run away; what arrived before still reads back once the gaps fill.
    @Test func sliversAreBounded() throws {
        var buffer = ReassemblyBuffer()
        for index in 0..<ReassemblyBuffer.maxChunks {
            try buffer.receive(ByteBuffer(bytes: [UInt8(truncatingIfNeeded: index)]), at: UInt64(index * 2 + 1), fin: false)
        }
        #expect(buffer.chunkCount == ReassemblyBuffer.maxChunks)
        #expect(throws: StreamFrameError.self) { try buffer.receive(ByteBuffer(bytes: [0]), at: UInt64(ReassemblyBuffer.maxChunks * 2 + 1), fin: false) }
        // The piece at the read offset is still accepted: it is readable at once (with the piece after it).
        try buffer.receive(ByteBuffer(bytes: [0xaa]), at: 0, fin: false)
        #expect(buffer.read()?.readableBytes == 2)
    }

    /// Random data cut into random overlapping pieces, delivered shuffled and partly twice, reads back whole.
    @Test func reassemblesAnyOrder() async {
        await propertyCheck(count: 200, input: Gen.int(in: 1...4000), Gen.int(in: 1...60).array(of: 1...400)) { size, cuts in
            let data = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            // Pieces start at every cut point and run a little past the next one (overlaps).
            var pieces: [(offset: Int, end: Int)] = []
            var offset = 0
            var index = 0
            while offset < size {
                let step = cuts[index % cuts.count]
                pieces.append((offset, min(size, offset + step + step / 3)))
                offset += step
                index += 1
            }
            var delivery = pieces + pieces.prefix(pieces.count / 3)  // some duplicates
            delivery.shuffle()
            var buffer = ReassemblyBuffer()
            var output: [UInt8] = []
            for piece in delivery {
                try? buffer.receive(ByteBuffer(bytes: data[piece.offset..<piece.end]), at: UInt64(piece.offset), fin: piece.end == size)
                while let chunk = buffer.read() { output += chunk.readableBytesView }
            }
            #expect(output == data)
            #expect(buffer.isComplete && buffer.bufferedBytes == 0)
        }
    }

    /// A FIN fixes the final size: data beyond it, or a different FIN, is a FINAL_SIZE_ERROR.
    @Test func finalSizeIsEnforced() throws {
        var buffer = ReassemblyBuffer()
        try buffer.receive(ByteBuffer(string: "hello"), at: 0, fin: true)
        #expect(throws: StreamFrameError.self) { try buffer.receive(ByteBuffer(string: "!"), at: 5, fin: false) }
        #expect(throws: StreamFrameError.self) { try buffer.receive(ByteBuffer(string: "hell"), at: 0, fin: true) }
        try buffer.receive(ByteBuffer(string: "ell"), at: 1, fin: false)  // a retransmission inside: fine
        #expect(buffer.read().map { String(buffer: $0) } == "hello")
        #expect(buffer.isComplete)
    }
}
