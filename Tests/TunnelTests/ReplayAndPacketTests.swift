import MeshgateTesting
import Testing

@testable import Tunnel

/// Reference wrapper so `#expect` can call the mutating `accept`.
final class Window {
    var window = ReplayWindow()
    func accept(_ counter: UInt64) -> Bool { window.accept(counter) }
}

@Suite struct ReplayWindowTests {
    /// In order, each counter is accepted once.
    @Test func sequentialAndDuplicates() {
        let window = Window()
        for counter: UInt64 in 0..<20_000 { #expect(window.accept(counter)) }
        #expect(!window.accept(19_999))
        #expect(!window.accept(0))
    }

    /// Reordering inside the 8128-counter window is fine; older than the window is refused.
    @Test func reorderingWithinWindowAndStaleCounters() {
        let window = Window()
        #expect(window.accept(10_000))
        #expect(window.accept(10_000 - 8128))  // oldest still inside
        #expect(!window.accept(10_000 - 8129))  // one past the window
        #expect(window.accept(9_999))
        #expect(!window.accept(9_999))
        #expect(window.accept(10_001))
        #expect(!window.accept(ReplayWindow.counterLimit))
    }

    /// A big jump forward forgets everything behind the new window, without refusing fresh counters.
    @Test func jumpForward() {
        let window = Window()
        for counter: UInt64 in 0..<100 { _ = window.accept(counter) }
        #expect(window.accept(1_000_000))
        #expect(window.accept(1_000_000 - 5))
        #expect(!window.accept(50))
    }

    /// Against a model (a set plus the window rule) over random orders with duplicates.
    @Test(arguments: [1, 2, 3, 4, 5]) func matchesModel(seed: UInt64) {
        var rng = SplitMix(seed: seed)
        let window = Window()
        var seen = Set<UInt64>()
        var highest: UInt64 = 0
        for _ in 0..<50_000 {
            let base = highest + UInt64.random(in: 0..<64, using: &rng)
            let counter = base >= 9000 ? base - UInt64.random(in: 0..<9000, using: &rng) : UInt64.random(in: 0...base, using: &rng)
            let expected = !seen.contains(counter) && (counter > highest || highest - counter <= 8128)
            #expect(window.accept(counter) == expected)
            if expected { seen.insert(counter) }
            highest = max(highest, expected ? counter : highest)
        }
    }
}

/// A deterministic generator for reproducible tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct PacketTests {
    let a = MeshAddress("fd7a:115c:a1e0::1")!
    let b = MeshAddress("fd7a:115c:a1e0::2")!

    /// An echo request gets a reply with the same id, sequence and data, and a valid checksum.
    @Test func echoReply() throws {
        let request = ICMPv6.packet(reply: false, source: b, destination: a, echo: .init(identifier: 7, sequence: 9, data: [1, 2, 3]))
        let reply = try #require(ICMPv6.reply(to: request, local: a))
        let (header, echo) = try #require(ICMPv6.parse(reply, reply: true))
        #expect(header.source == a.bytes && header.destination == b.bytes)
        #expect(echo == .init(identifier: 7, sequence: 9, data: [1, 2, 3]))
        #expect(ICMPv6.reply(to: request, local: b) == nil)  // not addressed to b
        var corrupted = request
        corrupted[corrupted.count - 1] ^= 0xff
        #expect(ICMPv6.reply(to: corrupted, local: a) == nil)
    }

    /// The checksum matches one computed by hand for a known packet (RFC 1071 arithmetic).
    @Test func knownChecksum() {
        // Echo request ::1 → ::2 inside fd7a:115c:a1e0::/48, id 0, seq 1, no data.
        let packet = ICMPv6.packet(reply: false, source: a, destination: b, echo: .init(identifier: 0, sequence: 1, data: []))
        let checksum = UInt16(packet[42]) << 8 | UInt16(packet[43])
        // Sum of pseudo-header and message words, folded and inverted.
        var sum: UInt32 = 0
        for word in [0xfd7a, 0x115c, 0xa1e0, 0, 0, 0, 0, 1, 0xfd7a, 0x115c, 0xa1e0, 0, 0, 0, 0, 2, 0, 8, 0, 58, 0x8000, 0, 0, 1] as [UInt32] {
            sum += word
        }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        #expect(checksum == ~UInt16(sum))
    }

    /// The word-at-a-time sum agrees with RFC 1071's 16-bit arithmetic for every length and alignment of data.
    @Test func checksumAgreesWithSixteenBitWords() {
        var random = SplitMix64(seed: 3)
        for length in 0..<70 {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            var words: [UInt32] = []
            let bytes = a.bytes + b.bytes + [0, 0, UInt8(length >> 8), UInt8(length & 0xff), 0, 0, 0, 17] + data
            for index in stride(from: 0, to: bytes.count, by: 2) {
                words.append(UInt32(bytes[index]) << 8 | UInt32(index + 1 < bytes.count ? bytes[index + 1] : 0))
            }
            var sum = words.reduce(0, +)
            while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
            #expect(IPv6Header.checksum(source: a.bytes, destination: b.bytes, nextHeader: 17, upperLayer: data) == ~UInt16(sum), "length \(length)")
            #expect(IPv6Header.checksum(source: a.bytes, destination: b.bytes, nextHeader: 17, upperLayer: data.lazy.map { $0 }) == ~UInt16(sum))
            // Read in place from a whole packet, at an odd address too (loads are unaligned).
            let packet = [0x55] + IPv6Header.packet(source: a, destination: b, nextHeader: 17, payload: data)
            #expect(packet.withUnsafeBytes { IPv6Header.checksum(packet: UnsafeRawBufferPointer(rebasing: $0[1...]), nextHeader: 17) } == ~UInt16(sum))
        }
    }

    @Test func udpRoundTripAndCorruption() throws {
        let packet = UDPDatagram.packet(source: a, destination: b, sourcePort: 4242, destinationPort: 80, payload: Array("stream".utf8))
        let decoded = try #require(UDPDatagram.decode(packet))
        #expect(decoded == .init(source: a, destination: b, sourcePort: 4242, destinationPort: 80, payload: Array("stream".utf8)))
        var corrupted = packet
        corrupted[45] ^= 1
        #expect(UDPDatagram.decode(corrupted) == nil)
        #expect(UDPDatagram.decode(Array(packet.prefix(44))) == nil)
    }
}
