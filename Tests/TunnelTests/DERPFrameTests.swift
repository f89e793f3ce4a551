import Foundation
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import Tunnel

/// Known-answer frames written from Tailscale's `derp/derp.go` (layouts), `derp_client.go` (what a client
/// accepts) and `derpserver/derpserver.go` (what a server sends): header = type u8 + length u32 BE.
struct GoldenFrame: Sendable, CustomTestStringConvertible {
    let name: String
    let frame: DERPFrame
    let hex: String
    /// False for wire forms we must read but never write (old servers, reserved trailing bytes).
    var encodes = true

    var testDescription: String { name }
    var bytes: [UInt8] { Hex.decode(hex.filter { !$0.isWhitespace })! }
    var buffer: ByteBuffer { ByteBuffer(bytes: bytes) }

    // Two recognisable keys: 00 01 … 1f and 20 21 … 3f.
    static let keyA = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    static let keyB = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    static let nonce = "404142434445464748494a4b4c4d4e4f5051525354555657"
    static let a = NodePublicKey(bytes: Array(0..<32))!
    static let b = NodePublicKey(bytes: Array(32..<64))!
    static let hello = ByteBuffer(string: "hello")  // 68 65 6c 6c 6f

    static let all: [GoldenFrame] = [
        // 8B magic "DERP🔑" + 32B key = 40 = 0x28
        .init(name: "ServerKey", frame: .serverKey(a), hex: "01 00000028 44455250 f09f9491" + keyA),
        // Trailing bytes after the key are reserved for future use ("0+ bytes future use").
        .init(name: "ServerKey with future bytes", frame: .serverKey(a), hex: "01 0000002a 44455250f09f9491" + keyA + "beef", encodes: false),
        // 32B key + 24B nonce + box (opaque here) = 60 = 0x3c
        .init(name: "ClientInfo", frame: .clientInfo(key: a, nonce: Array(0x40..<0x58), sealed: [0xde, 0xad, 0xbe, 0xef]),
              hex: "02 0000003c" + keyA + nonce + "deadbeef"),
        // 24B nonce + box = 28 = 0x1c
        .init(name: "ServerInfo", frame: .serverInfo(nonce: Array(0x40..<0x58), sealed: [0xde, 0xad, 0xbe, 0xef]), hex: "03 0000001c" + nonce + "deadbeef"),
        // 32B destination + 5B packet = 37 = 0x25
        .init(name: "SendPacket", frame: .sendPacket(destination: b, packet: hello), hex: "04 00000025" + keyB + "68656c6c6f"),
        .init(name: "SendPacket empty", frame: .sendPacket(destination: b, packet: ByteBuffer()), hex: "04 00000020" + keyB),
        // Protocol version 2: the source key comes first.
        .init(name: "RecvPacket", frame: .recvPacket(source: a, packet: hello), hex: "05 00000025" + keyA + "68656c6c6f"),
        .init(name: "KeepAlive", frame: .keepAlive, hex: "06 00000000"),
        .init(name: "NotePreferred true", frame: .notePreferred(true), hex: "07 00000001 01"),
        .init(name: "NotePreferred false", frame: .notePreferred(false), hex: "07 00000001 00"),
        // Tailscale's sendPeerGone always writes the reason byte: 33 = 0x21.
        .init(name: "PeerGone disconnected", frame: .peerGone(a, reason: .disconnected), hex: "08 00000021" + keyA + "00"),
        .init(name: "PeerGone notHere", frame: .peerGone(a, reason: .notHere), hex: "08 00000021" + keyA + "01"),
        .init(name: "PeerGone without reason (old server)", frame: .peerGone(a, reason: .disconnected), hex: "08 00000020" + keyA, encodes: false),
        // 32B key + 16B IP (IPv4-mapped) + 2B port BE + 1B flags = 51 = 0x33; 192.0.2.1:443, IsRegular.
        .init(name: "PeerPresent IPv4", frame: .peerPresent(a, endpoint: ([192, 0, 2, 1], 443), flags: 0x01),
              hex: "09 00000033" + keyA + "00000000000000000000ffffc0000201 01bb 01"),
        // [2001:db8::1]:41641, IsRegular|IsMeshPeer.
        .init(name: "PeerPresent IPv6", frame: .peerPresent(a, endpoint: ([0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [1], 41641), flags: 0x03),
              hex: "09 00000033" + keyA + "20010db8000000000000000000000001 a2a9 03"),
        // No endpoint: Go's zero AddrPort (16 zero bytes, port 0), and the flags byte is still sent.
        .init(name: "PeerPresent without endpoint", frame: .peerPresent(a, endpoint: nil, flags: 0x01),
              hex: "09 00000033" + keyA + "00000000000000000000000000000000 0000 01"),
        .init(name: "PeerPresent key only (old server)", frame: .peerPresent(a, endpoint: nil, flags: 0), hex: "09 00000020" + keyA, encodes: false),
        .init(name: "PeerPresent without flags (old server)", frame: .peerPresent(a, endpoint: ([192, 0, 2, 1], 443), flags: 0),
              hex: "09 00000032" + keyA + "00000000000000000000ffffc0000201 01bb", encodes: false),
        // 32B source + 32B destination + 5B = 69 = 0x45
        .init(name: "ForwardPacket", frame: .forwardPacket(source: a, destination: b, packet: hello), hex: "0a 00000045" + keyA + keyB + "68656c6c6f"),
        .init(name: "WatchConns", frame: .watchConns, hex: "10 00000000"),
        .init(name: "ClosePeer", frame: .closePeer(b), hex: "11 00000020" + keyB),
        .init(name: "Ping", frame: .ping([1, 2, 3, 4, 5, 6, 7, 8]), hex: "12 00000008 0102030405060708"),
        // Longer pings: Tailscale reads 8 bytes and discards the rest.
        .init(name: "Ping with extra bytes", frame: .ping([1, 2, 3, 4, 5, 6, 7, 8]), hex: "12 0000000a 0102030405060708 ffff", encodes: false),
        .init(name: "Pong", frame: .pong([8, 7, 6, 5, 4, 3, 2, 1]), hex: "13 00000008 0807060504030201"),
        .init(name: "Health", frame: .health("unhealthy"), hex: "14 00000009 756e6865616c746879"),
        .init(name: "Health cleared", frame: .health(""), hex: "14 00000000"),
        // Two u32 BE in milliseconds: reconnect in 1500 ms (0x5dc), try for 10000 ms (0x2710).
        .init(name: "Restarting", frame: .restarting(reconnectIn: 1500, tryFor: 10_000), hex: "15 00000008 000005dc 00002710"),
        // Types this version does not know are kept opaque, to be skipped.
        .init(name: "Unknown 0x7f", frame: .unknown(type: 0x7f, payload: ByteBuffer(bytes: [0xaa, 0xbb, 0xcc])), hex: "7f 00000003 aabbcc"),
        .init(name: "Unknown 0x0b, empty", frame: .unknown(type: 0x0b, payload: ByteBuffer()), hex: "0b 00000000"),
    ]
}

/// One malformed frame and the error it must raise.
struct MalformedFrame: Sendable, CustomTestStringConvertible {
    let name: String
    let hex: String
    let error: DERPError
    var testDescription: String { name }
    var bytes: [UInt8] { Hex.decode(hex.filter { !$0.isWhitespace })! }

    static func malformed(_ type: UInt8, _ reason: String) -> DERPError { .malformedFrame(type: type, reason: reason) }
    static let keyA = GoldenFrame.keyA

    static let all: [MalformedFrame] = [
        .init(name: "ServerKey: short key", hex: "01 0000000c 44455250f09f9491 00010203", error: malformed(0x01, "short key")),
        .init(name: "ServerKey: bad magic", hex: "01 00000028 44455250f09f9490" + keyA, error: malformed(0x01, "bad magic")),
        .init(name: "ServerKey: empty", hex: "01 00000000", error: malformed(0x01, "bad magic")),
        .init(name: "ClientInfo: short nonce", hex: "02 0000002a" + keyA + "4041424344454647 4849", error: malformed(0x02, "short nonce")),
        .init(name: "ClientInfo: short key", hex: "02 00000004 00010203", error: malformed(0x02, "short key")),
        .init(name: "ServerInfo: short nonce", hex: "03 00000002 4041", error: malformed(0x03, "short nonce")),
        .init(name: "SendPacket: 31-byte key", hex: "04 0000001f" + keyA.dropLast(2), error: malformed(0x04, "short key")),
        .init(name: "RecvPacket: empty", hex: "05 00000000", error: malformed(0x05, "short key")),
        .init(name: "ForwardPacket: one key only", hex: "0a 00000020" + keyA, error: malformed(0x0a, "short key")),
        .init(name: "NotePreferred: empty", hex: "07 00000000", error: malformed(0x07, "payload of 0 bytes, want 1")),
        .init(name: "NotePreferred: two bytes", hex: "07 00000002 0101", error: malformed(0x07, "payload of 2 bytes, want 1")),
        .init(name: "PeerGone: short key", hex: "08 00000010 000102030405060708090a0b0c0d0e0f", error: malformed(0x08, "short key")),
        .init(name: "PeerPresent: short key", hex: "09 00000001 00", error: malformed(0x09, "short key")),
        .init(name: "WatchConns: payload", hex: "10 00000001 00", error: malformed(0x10, "payload of 1 bytes, want 0")),
        .init(name: "ClosePeer: 33 bytes", hex: "11 00000021" + keyA + "00", error: malformed(0x11, "payload of 33 bytes, want 32")),
        .init(name: "ClosePeer: empty", hex: "11 00000000", error: malformed(0x11, "payload of 0 bytes, want 32")),
        .init(name: "Ping: 7 bytes", hex: "12 00000007 01020304050607", error: malformed(0x12, "payload of 7 bytes, want at least 8")),
        .init(name: "Pong: empty", hex: "13 00000000", error: malformed(0x13, "payload of 0 bytes, want at least 8")),
        .init(name: "Restarting: one u32", hex: "15 00000004 000005dc", error: malformed(0x15, "short restarting payload")),
        .init(name: "Restarting: 7 bytes", hex: "15 00000007 000005dc000027", error: malformed(0x15, "short restarting payload")),
    ]
}

@Suite struct DERPFrameTests {
    static let clientDecoderLimit = DERPLimits.maxFrameLength
    static let serverDecoderLimit = DERPLimits.maxClientInfoLength

    /// Each frame type encodes to the bytes Tailscale writes.
    @Test(arguments: GoldenFrame.all.filter(\.encodes)) func encodesGoldenBytes(_ golden: GoldenFrame) throws {
        var buffer = ByteBuffer()
        golden.frame.encode(into: &buffer)
        #expect(Hex.encode(Array(buffer.readableBytesView)) == Hex.encode(golden.bytes))
        var encoded = ByteBuffer()
        try DERPFrameEncoder().encode(data: golden.frame, out: &encoded)
        #expect(encoded == buffer)
    }

    /// Each golden decodes to its frame, consuming exactly its bytes; and decode ∘ encode is the identity.
    @Test(arguments: GoldenFrame.all) func decodesGoldenBytes(_ golden: GoldenFrame) throws {
        var buffer = golden.buffer
        let frame = try #require(try DERPFrameDecoder.next(from: &buffer, maximumFrameLength: Self.clientDecoderLimit))
        #expect(frame == golden.frame)
        #expect(frame.type == golden.bytes[0])
        #expect(buffer.readableBytes == 0)
        var again = ByteBuffer()
        frame.encode(into: &again)
        #expect(try DERPFrameDecoder.next(from: &again, maximumFrameLength: Self.clientDecoderLimit) == frame)
    }

    /// The decoded values themselves, not just their encodings (== compares encodings).
    @Test func decodedFieldValues() throws {
        func decode(_ name: String) throws -> DERPFrame {
            var buffer = try #require(GoldenFrame.all.first { $0.name == name }).buffer
            return try #require(try DERPFrameDecoder.next(from: &buffer, maximumFrameLength: Self.clientDecoderLimit))
        }
        guard case .peerPresent(let key, let endpoint?, let flags) = try decode("PeerPresent IPv4") else { Issue.record("no endpoint"); return }
        #expect(key == GoldenFrame.a && endpoint.address == [192, 0, 2, 1] && endpoint.port == 443 && flags == 1)
        guard case .peerPresent(_, nil, 0x01) = try decode("PeerPresent without endpoint") else { Issue.record("zero endpoint is none"); return }
        guard case .peerGone(_, .notHere) = try decode("PeerGone notHere") else { Issue.record("reason lost"); return }
        guard case .peerGone(_, .disconnected) = try decode("PeerGone without reason (old server)") else { Issue.record("default reason"); return }
        guard case .restarting(1500, 10_000) = try decode("Restarting") else { Issue.record("restarting durations"); return }
        guard case .notePreferred(true) = try decode("NotePreferred true") else { Issue.record("preferred"); return }
        guard case .unknown(0x7f, let payload) = try decode("Unknown 0x7f") else { Issue.record("unknown kept"); return }
        #expect(Array(payload.readableBytesView) == [0xaa, 0xbb, 0xcc])
        guard case .serverKey(let serverKey) = try decode("ServerKey with future bytes") else { Issue.record("server key"); return }
        #expect(serverKey == GoldenFrame.a)
    }

    /// Payloads that do not fit their type raise `malformedFrame`, naming the type.
    @Test(arguments: MalformedFrame.all) func malformedSeeds(_ seed: MalformedFrame) {
        var buffer = ByteBuffer(bytes: seed.bytes)
        #expect(throws: seed.error) { try DERPFrameDecoder.next(from: &buffer, maximumFrameLength: Self.clientDecoderLimit) }
    }

    /// Drip-fed byte by byte, all at once, and in every split NIO's verifier tries: the same frames.
    @Test func dripFeedThroughVerifier() throws {
        let pairs = GoldenFrame.all.map { ($0.buffer, [$0.frame]) }
        for limit in [Self.clientDecoderLimit, Self.serverDecoderLimit] {
            try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) { DERPFrameDecoder(maximumFrameLength: limit) }
        }
    }

    /// The WebSocket path parses the same byte stream with `DERPFrameSequence`; one byte per message.
    @Test func dripFeedThroughFrameSequence() async throws {
        var stream = ByteBuffer()
        for golden in GoldenFrame.all { stream.writeBytes(golden.bytes) }
        let (bytes, continuation) = AsyncStream.makeStream(of: ByteBuffer.self)
        for byte in stream.readableBytesView { continuation.yield(ByteBuffer(bytes: [byte])) }
        continuation.finish()
        var decoded: [DERPFrame] = []
        for try await frame in DERPFrameSequence(bytes: bytes, maximumFrameLength: Self.serverDecoderLimit) { decoded.append(frame) }
        #expect(decoded == GoldenFrame.all.map(\.frame))
    }

    // MARK: Limits

    /// A SendPacket (or RecvPacket, ForwardPacket) of 64 KiB passes; one byte more is refused by the decoder
    /// and by the encoder, before it reaches the wire.
    @Test(arguments: [DERPFrameType.sendPacket, .recvPacket, .forwardPacket]) func packetLimit(_ type: DERPFrameType) throws {
        func frame(_ size: Int) -> DERPFrame {
            let packet = ByteBuffer(repeating: 0x5a, count: size)
            switch type {
            case .sendPacket: return .sendPacket(destination: GoldenFrame.b, packet: packet)
            case .recvPacket: return .recvPacket(source: GoldenFrame.a, packet: packet)
            default: return .forwardPacket(source: GoldenFrame.a, destination: GoldenFrame.b, packet: packet)
            }
        }
        var largest = ByteBuffer()
        try DERPFrameEncoder().encode(data: frame(DERPLimits.maxPacketSize), out: &largest)
        #expect(try DERPFrameDecoder.next(from: &largest, maximumFrameLength: Self.serverDecoderLimit) == frame(DERPLimits.maxPacketSize))

        var tooLarge = ByteBuffer()
        #expect(throws: DERPError.packetTooLarge(DERPLimits.maxPacketSize + 1)) { try DERPFrameEncoder().encode(data: frame(DERPLimits.maxPacketSize + 1), out: &tooLarge) }
        frame(DERPLimits.maxPacketSize + 1).encode(into: &tooLarge)  // a peer that ignores the limit
        #expect(throws: DERPError.packetTooLarge(DERPLimits.maxPacketSize + 1)) {
            try DERPFrameDecoder.next(from: &tooLarge, maximumFrameLength: Self.serverDecoderLimit)
        }
    }

    /// A header announcing more than the limit throws on its 5 bytes alone, before any payload arrives;
    /// at the limit the decoder just waits for the payload.
    @Test(arguments: [(DERPLimits.maxClientInfoLength, "server"), (DERPLimits.maxFrameLength, "client")])
    func frameLimitBeforePayload(limit: Int, side: String) throws {
        var atLimit = ByteBuffer(bytes: [0x02])
        atLimit.writeInteger(UInt32(limit))
        #expect(try DERPFrameDecoder.next(from: &atLimit, maximumFrameLength: limit) == nil, "\(side): at the limit, wait for the payload")
        #expect(atLimit.readerIndex == 0)

        var over = ByteBuffer(bytes: [0x02])
        over.writeInteger(UInt32(limit + 1))
        #expect(throws: DERPError.frameTooLarge(type: 0x02, length: limit + 1, limit: limit)) {
            try DERPFrameDecoder.next(from: &over, maximumFrameLength: limit)
        }

        // In a pipeline: the error comes out of the header write, and nothing is buffered for the payload.
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(DERPFrameDecoder(maximumFrameLength: limit)))
        var header = ByteBuffer(bytes: [0x04])
        header.writeInteger(UInt32.max)
        #expect(throws: DERPError.frameTooLarge(type: 0x04, length: Int(UInt32.max), limit: limit)) { try channel.writeInbound(header) }
        _ = try? channel.finish()
    }

    /// A server accepts a ClientInfo of exactly 256 KiB (Tailscale: `fl > 256<<10` is "long client info");
    /// a client accepts frames up to 1 MiB.
    @Test func clientInfoLimitOnTheServer() throws {
        let sealed = [UInt8](repeating: 7, count: DERPLimits.maxClientInfoLength - DERPLimits.keyLength - DERPLimits.nonceLength)
        let largest = DERPFrame.clientInfo(key: GoldenFrame.a, nonce: Array(0x40..<0x58), sealed: sealed)
        var buffer = ByteBuffer()
        largest.encode(into: &buffer)
        #expect(buffer.readableBytes == DERPLimits.frameHeaderLength + (256 << 10))
        var copy = buffer
        #expect(try DERPFrameDecoder.next(from: &copy, maximumFrameLength: Self.serverDecoderLimit) == largest)

        var oneMore = ByteBuffer()
        DERPFrame.clientInfo(key: GoldenFrame.a, nonce: Array(0x40..<0x58), sealed: sealed + [0]).encode(into: &oneMore)
        #expect(throws: DERPError.frameTooLarge(type: 0x02, length: (256 << 10) + 1, limit: 256 << 10)) {
            try DERPFrameDecoder.next(from: &oneMore, maximumFrameLength: Self.serverDecoderLimit)
        }
        var health = ByteBuffer()
        DERPFrame.health(String(repeating: "x", count: 1 << 20)).encode(into: &health)
        #expect(try DERPFrameDecoder.next(from: &health, maximumFrameLength: Self.clientDecoderLimit) != nil)
    }

    /// Unknown types are skipped: the frames around them still arrive, in order.
    @Test func unknownFramesAreSkipped() throws {
        var stream = ByteBuffer()
        for hex in ["06 00000000", "0c 00000004 01020304", "ff 00000000", "12 00000008 0102030405060708"] {
            stream.writeBytes(Hex.decode(hex.filter { !$0.isWhitespace })!)
        }
        var frames: [DERPFrame] = []
        while let frame = try DERPFrameDecoder.next(from: &stream, maximumFrameLength: Self.serverDecoderLimit) {
            if case .unknown = frame { continue }
            frames.append(frame)
        }
        #expect(frames == [.keepAlive, .ping([1, 2, 3, 4, 5, 6, 7, 8])])
    }

    /// The login frames carry Go's JSON field names inside a real NaCl box.
    @Test func loginBoxes() throws {
        let client = NodePrivateKey.generate(), server = NodePrivateKey.generate()
        guard case .clientInfo(let key, let nonce, let sealed) = try DERPFrame.clientInfo(DERPClientInfo(meshKey: "secret"), from: client, to: server.publicKey)
        else { Issue.record("not ClientInfo"); return }
        #expect(key == client.publicKey && nonce.count == DERPLimits.nonceLength)
        let json = try #require(NaClBox.open(sealed, nonce: nonce, from: client.publicKey, to: server))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
        #expect(object["version"] as? Int == 2 && object["meshKey"] as? String == "secret")
        #expect(NaClBox.open(sealed, nonce: nonce, from: client.publicKey, to: .generate()) == nil)

        guard case .serverInfo(let serverNonce, let serverSealed) = try DERPFrame.serverInfo(DERPServerInfo(), from: server, to: client.publicKey)
        else { Issue.record("not ServerInfo"); return }
        let reply = try #require(NaClBox.open(serverSealed, nonce: serverNonce, from: server.publicKey, to: client))
        #expect(try JSONDecoder().decode(DERPServerInfo.self, from: Data(reply)).version == 2)
    }

    // MARK: Fuzz-style

    /// Seeded so a failure reproduces; `DERP_FUZZ_SEED=<n>` explores other sequences.
    static let fuzzSeed = ProcessInfo.processInfo.environment["DERP_FUZZ_SEED"].flatMap(UInt64.init) ?? 0xDE_2B_F7A3

    /// Thousands of random, random-typed and mutated-golden byte strings: the decoder never crashes, throws
    /// only `DERPError`, and every frame it returns survives a re-encode unchanged.
    @Test func randomInputNeverCrashes() throws {
        print("DERPFrameTests.randomInputNeverCrashes seed \(Self.fuzzSeed)")
        var rng = SplitMix(seed: Self.fuzzSeed)
        let goldens = GoldenFrame.all.map(\.bytes)
        let types = DERPFrameType.allCases.map(\.rawValue) + [0x00, 0x0b, 0x16, 0xff]
        var (frames, errors) = (0, 0)
        for round in 0..<6000 {
            var bytes: [UInt8]
            switch round % 3 {
            case 0:  // pure noise
                bytes = (0..<Int.random(in: 0..<96, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:  // a plausible header over a random payload, length sometimes lying
                let length = Int.random(in: 0..<80, using: &rng)
                bytes = [types.randomElement(using: &rng)!]
                let announced = Bool.random(using: &rng) ? length : Int.random(in: 0..<100, using: &rng)
                bytes += withUnsafeBytes(of: UInt32(announced).bigEndian, Array.init)
                bytes += (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            default:  // a golden frame with flipped, dropped or inserted bytes
                bytes = goldens.randomElement(using: &rng)!
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let index = Int.random(in: 0...bytes.count, using: &rng)
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0 where index < bytes.count: bytes[index] ^= UInt8.random(in: 1...255, using: &rng)
                    case 1 where index < bytes.count: bytes.remove(at: index)
                    default: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: index)
                    }
                }
            }
            var buffer = ByteBuffer(bytes: bytes)
            do {
                while let frame = try DERPFrameDecoder.next(from: &buffer, maximumFrameLength: 1 << 16) {
                    frames += 1
                    var encoded = ByteBuffer()
                    frame.encode(into: &encoded)
                    let again = try DERPFrameDecoder.next(from: &encoded, maximumFrameLength: 1 << 20)
                    #expect(again == frame, "seed \(Self.fuzzSeed) round \(round): \(Hex.encode(bytes))")
                }
            } catch is DERPError {
                errors += 1
            } catch {
                Issue.record("seed \(Self.fuzzSeed) round \(round): non-DERP error \(error) for \(Hex.encode(bytes))")
            }
        }
        // Both outcomes must be exercised, or the generator has drifted into testing nothing.
        #expect(frames > 500 && errors > 500, "frames \(frames), errors \(errors)")
    }

    /// The same noise through a NIO pipeline: errors surface as `DERPError`s from the write, nothing traps.
    @Test func randomInputThroughPipeline() throws {
        var rng = SplitMix(seed: Self.fuzzSeed ^ 0xFFFF)
        for _ in 0..<500 {
            let channel = EmbeddedChannel(handler: ByteToMessageHandler(DERPFrameDecoder(maximumFrameLength: DERPLimits.maxClientInfoLength)))
            let bytes = (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            do {
                for chunk in bytes.chunks(of: Int.random(in: 1...8, using: &rng)) { try channel.writeInbound(ByteBuffer(bytes: chunk)) }
                while try channel.readInbound(as: DERPFrame.self) != nil {}
            } catch {
                #expect(error is DERPError, "\(error) for \(Hex.encode(bytes))")
            }
            _ = try? channel.finish()
        }
    }
}

extension Array {
    fileprivate func chunks(of size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
