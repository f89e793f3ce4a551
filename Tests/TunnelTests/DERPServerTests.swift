import Foundation
import NIOCore
import Testing

@testable import Tunnel

/// One client's in-memory link to a `DERPServer`: bytes up, parsed by the `DERPFrameSequence` the WebSocket
/// path uses (so malformed bytes reach the server as they would from a socket), frames down.
final class MemoryLink: Sendable {
    let up: AsyncStream<ByteBuffer>
    private let upContinuation: AsyncStream<ByteBuffer>.Continuation
    let down: AsyncStream<DERPFrame>
    private let downContinuation: AsyncStream<DERPFrame>.Continuation

    init() {
        (up, upContinuation) = AsyncStream.makeStream(of: ByteBuffer.self)
        (down, downContinuation) = AsyncStream.makeStream(of: DERPFrame.self)
    }

    func send(_ frame: DERPFrame) {
        var buffer = ByteBuffer()
        frame.encode(into: &buffer)
        upContinuation.yield(buffer)
    }

    func send(bytes: [UInt8]) { upContinuation.yield(ByteBuffer(bytes: bytes)) }
    func deliver(_ frame: DERPFrame) { downContinuation.yield(frame) }

    /// Ends both directions, as closing a socket would.
    func close() {
        upContinuation.finish()
        downContinuation.finish()
    }

    /// Serves this link on `server` the way `DERPService` serves a socket: the transport closes when
    /// `serve` returns or throws.
    func serve(on server: DERPServer) -> Task<Void, any Error> {
        Task {
            defer { close() }
            try await server.serve(
                frames: DERPFrameSequence(bytes: up, maximumFrameLength: DERPLimits.maxClientInfoLength),
                write: { [self] frames in frames.forEach(deliver) },
                close: { [self] in close() }
            )
        }
    }
}

/// The client end of a `MemoryLink`, logged in with the real NaCl-box handshake.
struct MemoryClient {
    let key: NodePrivateKey
    let link: MemoryLink
    let task: Task<Void, any Error>
    private var inbound: AsyncStream<DERPFrame>.AsyncIterator

    static func login(to server: DERPServer, key: NodePrivateKey = .generate()) async throws -> MemoryClient {
        let link = MemoryLink()
        var client = MemoryClient(key: key, link: link, task: link.serve(on: server), inbound: link.down.makeAsyncIterator())
        guard case .serverKey(let serverKey)? = await client.next() else { throw DERPError.unexpectedFrame(type: 0, during: "test login") }
        link.send(try .clientInfo(DERPClientInfo(), from: key, to: serverKey))
        guard case .serverInfo(let nonce, let sealed)? = await client.next(),
            let json = NaClBox.open(sealed, nonce: nonce, from: serverKey, to: key),
            (try? JSONDecoder().decode(DERPServerInfo.self, from: Data(json))) != nil
        else { throw DERPError.badServerInfo("test login") }
        // The server registers the client after ServerInfo; a Ping answered proves the read loop runs.
        link.send(.ping([9, 9, 9, 9, 9, 9, 9, 9]))
        guard await client.next() == .pong([9, 9, 9, 9, 9, 9, 9, 9]) else { throw DERPError.unexpectedFrame(type: 0x13, during: "test login") }
        return client
    }

    var publicKey: NodePublicKey { key.publicKey }

    mutating func next() async -> DERPFrame? {
        while let frame = await inbound.next() {
            if frame != .keepAlive { return frame }
        }
        return nil
    }

    /// Sends a packet to `peer` and checks that exactly it arrives there.
    mutating func relay(_ text: String, to peer: inout MemoryClient) async {
        link.send(.sendPacket(destination: peer.publicKey, packet: ByteBuffer(string: text)))
        guard case .recvPacket(let source, let packet)? = await peer.next() else {
            Issue.record("\(text): nothing relayed")
            return
        }
        #expect(source == publicKey && String(buffer: packet) == text)
    }
}

/// Runs `body`, failing the test instead of hanging if it takes longer than `limit` (a guard only: every
/// await in these tests finishes on its own).
func withTestTimeout(_ limit: Duration = .seconds(20), _ body: @escaping @Sendable () async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask {
            try await body()
            return true
        }
        group.addTask {
            try? await Task.sleep(for: limit)
            return false
        }
        let finished = try await group.next()!
        group.cancelAll()
        if !finished { Issue.record("timed out after \(limit)") }
    }
}

@Suite struct DERPServerHostileInputTests {
    /// What the offending client sends after logging in.
    enum Offence: Sendable, CustomTestStringConvertible {
        case frame(DERPFrame, expected: DERPError)
        case bytes(String, expected: DERPError)

        var testDescription: String {
            switch self {
            case .frame(let frame, _): "frame type 0x\(String(frame.type, radix: 16))"
            case .bytes(let hex, _): "bytes \(hex)"
            }
        }

        static let all: [Offence] = [
            // Mesh-only frames from a client without the mesh key.
            .frame(.forwardPacket(source: GoldenFrame.a, destination: GoldenFrame.b, packet: ByteBuffer(string: "x")), expected: .meshKeyRequired),
            .frame(.watchConns, expected: .meshKeyRequired),
            .frame(.closePeer(GoldenFrame.b), expected: .meshKeyRequired),
            // Server-to-client frames sent by a client.
            .frame(.serverKey(GoldenFrame.a), expected: .unexpectedFrame(type: 0x01, during: "relay")),
            .frame(.recvPacket(source: GoldenFrame.a, packet: ByteBuffer()), expected: .unexpectedFrame(type: 0x05, during: "relay")),
            .frame(.restarting(reconnectIn: 0, tryFor: 0), expected: .unexpectedFrame(type: 0x15, during: "relay")),
            // Bytes that are not a valid frame.
            .bytes("12 00000007 01020304050607", expected: .malformedFrame(type: 0x12, reason: "payload of 7 bytes, want at least 8")),
            .bytes("04 00000004 00010203", expected: .malformedFrame(type: 0x04, reason: "short key")),
            // A header announcing 256 KiB + 1: refused before any payload.
            .bytes("04 00040001", expected: .frameTooLarge(type: 0x04, length: 0x40001, limit: DERPLimits.maxClientInfoLength)),
        ]
    }

    /// One client breaks the protocol: its connection alone ends, with the error; the others keep relaying
    /// both ways, and the offender's key is gone from the table.
    @Test(arguments: Offence.all) func onlyTheOffendingConnectionCloses(_ offence: Offence) async throws {
        try await withTestTimeout {
            let server = DERPServer(privateKey: .generate())
            var bob = try await MemoryClient.login(to: server)
            var carol = try await MemoryClient.login(to: server)
            var mallory = try await MemoryClient.login(to: server)
            #expect(server.clientCount == 3)
            await bob.relay("before", to: &carol)

            let expected: DERPError
            switch offence {
            case .frame(let frame, let error):
                mallory.link.send(frame)
                expected = error
            case .bytes(let hex, let error):
                mallory.link.send(bytes: Hex.decode(hex.filter { !$0.isWhitespace })!)
                expected = error
            }
            await #expect(throws: expected) { try await mallory.task.value }
            let afterError = await mallory.next()
            #expect(afterError == nil, "the offender's transport is closed")
            #expect(!server.isConnected(mallory.publicKey) && server.clientCount == 2)

            await bob.relay("after", to: &carol)
            await carol.relay("reply", to: &bob)
            // Packets for the offender now say it is not here.
            bob.link.send(.sendPacket(destination: mallory.publicKey, packet: ByteBuffer(string: "gone?")))
            let answer = await bob.next()
            #expect(answer == .peerGone(mallory.publicKey, reason: .notHere))

            for client in [bob, carol] { client.link.close() }
            for client in [bob, carol] { try await client.task.value }  // a clean end, not an error
            #expect(server.clientCount == 0)
        }
    }

    /// Seeded garbage after a good login, from 200 connections in turn: each ends cleanly or with a
    /// `DERPError`, never a crash, and two well-behaved clients relay throughout.
    @Test func garbageConnectionsDoNotDisturbOthers() async throws {
        let seed = DERPFrameTests.fuzzSeed
        print("DERPServerHostileInputTests.garbageConnectionsDoNotDisturbOthers seed \(seed)")
        try await withTestTimeout(.seconds(60)) {
            var rng = SplitMix(seed: seed)
            let server = DERPServer(privateKey: .generate())
            var bob = try await MemoryClient.login(to: server)
            var carol = try await MemoryClient.login(to: server)
            var (clean, refused) = (0, 0)
            for round in 0..<200 {
                let mallory = try await MemoryClient.login(to: server)
                let garbage = (0..<Int.random(in: 1..<128, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                mallory.link.send(bytes: garbage)
                mallory.link.close()  // ends a frame the garbage may have started
                switch await mallory.task.result {
                case .success: clean += 1
                case .failure(let error) where error is DERPError: refused += 1
                case .failure(let error): Issue.record("seed \(seed) round \(round): \(error) for \(Hex.encode(garbage))")
                }
                if round % 20 == 0 { await bob.relay("round \(round)", to: &carol) }
            }
            await carol.relay("still here", to: &bob)
            #expect(clean + refused == 200 && refused > 0)
            #expect(server.clientCount == 2)
            for client in [bob, carol] { client.link.close() }
        }
    }
}
