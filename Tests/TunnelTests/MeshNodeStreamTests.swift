import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
@testable import Tunnel

/// Streams between two real MeshNodes over loopback UDP (WireGuard sessions and all): NIO's HTTP/1.1 client
/// runs on a stream unchanged, through the `tcp:PORT` forward to a real HTTP server.
@Suite(.timeLimit(.minutes(1))) struct MeshNodeStreamTests {
    static func pair() async throws -> (MeshNode, MeshNode) {
        let a = try await MeshNode.start(privateKey: .generate(), address: .random(), host: "127.0.0.1")
        let b = try await MeshNode.start(privateKey: .generate(), address: .random(), host: "127.0.0.1")
        try await a.addPeer(b.privateKey.publicKey, allowedIPs: [MeshPrefix(b.address, length: 128)!], endpoint: try SocketAddress(ipAddress: "127.0.0.1", port: b.localPort!))
        try await b.addPeer(a.privateKey.publicKey, allowedIPs: [MeshPrefix(a.address, length: 128)!], endpoint: nil)
        try await b.listen { MeshTCPForward(allows: { $0 != 9 }).decision(for: $0) ?? .refuse(reason: "tcp only") }
        return (a, b)
    }

    /// A GET through the mesh to an HTTP server behind the listening node: a 2 MB body arrives whole, with the
    /// sender's UDP segmentation offload (GSO) on and off. Loopback checksums in software-free "hardware", so on
    /// Linux the runs go out segmented and arrive coalesced (GRO).
    @Test(arguments: [true, false]) func httpClientOverStream(segmentation: Bool) async throws {
        let (a, b) = try await Self.pair()
        try await b.setSegmentationOffload(segmentation)
        let server = try await HTTPTestServer.start(bodySize: 2 << 20)
        defer { Task { try? await server.close(); try? await a.close(); try? await b.close() } }
        let stream = try await a.openStream(to: b.privateKey.publicKey, service: .tcp(port: UInt16(server.port))) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
            }
        }
        var body = ByteBuffer()
        var status: HTTPResponseStatus?
        try await stream.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/file")
            head.headers.add(name: "Host", value: "app")
            try await outbound.write(.head(head))
            try await outbound.write(.end(nil))
            loop: for try await part in inbound {
                switch part {
                case .head(let response): status = response.status
                case .body(var chunk): body.writeBuffer(&chunk)
                case .end: break loop
                }
            }
        }
        #expect(status == .ok)
        #expect(body == HTTPTestServer.body(2 << 20))
        #if os(Linux)
        let (sent, received) = (try await b.offloadCounts(), try await a.offloadCounts())
        if segmentation && UDPOffload.sendAvailable {
            #expect(sent.segmentedWrites > 0)
            if UDPOffload.receiveAvailable { #expect(received.coalescedReads > 0) }
        } else {
            #expect(sent.segmentedWrites == 0 && received.coalescedReads == 0)
        }
        #endif
    }

    /// A port the listener does not forward, and one where nothing listens: both refused with the reason.
    @Test func refusals() async throws {
        let (a, b) = try await Self.pair()
        defer { Task { try? await a.close(); try? await b.close() } }
        let closedPort = try await HTTPTestServer.unusedPort()
        for (port, reason) in [(UInt16(9), "port 9 is not forwarded"), (closedPort, "connect to 127.0.0.1:\(closedPort) failed")] {
            let error = ErrorBox()
            let stream = try await a.openStream(to: b.privateKey.publicKey, service: .tcp(port: port)) { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ErrorCatcher(box: error)) }.map { channel }
            }
            try await stream.closeFuture.get()
            let caught = try #require(error.value as? MeshStreamError)
            guard case .refused(let service, let text) = caught else {
                Issue.record("expected a refusal, got \(caught)")
                continue
            }
            #expect(service == "tcp:\(port)" && text.contains(reason))
        }
    }

    /// A datagram longer than any peer's (the GRO slots would hold 64 KiB) is dropped unread and counted; the node
    /// goes on serving.
    @Test func anOversizedDatagramIsDroppedUnread() async throws {
        let (a, b) = try await Self.pair()
        defer { Task { try? await a.close(); try? await b.close() } }
        let sender = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        var forged = ByteBuffer(bytes: [4, 0, 0, 0])
        forged.writeRepeatingByte(0x42, count: 4000)
        try await sender.writeAndFlush(AddressedEnvelope(remoteAddress: try SocketAddress(ipAddress: "127.0.0.1", port: b.localPort!), data: forged))
        try await sender.close()
        var dropped = 0
        for _ in 0..<200 where dropped == 0 {
            dropped = try await b.drops()[.malformed] ?? 0
            if dropped == 0 { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(dropped == 1)
        #expect(try await b.drops()[.authentication] == nil, "no work was spent on it")
        #expect(try await a.ping(b.address) > .zero)
    }

    /// No route to a node we have no peer entry for.
    @Test func unknownPeer() async throws {
        let (a, b) = try await Self.pair()
        defer { Task { try? await a.close(); try? await b.close() } }
        await #expect(throws: MeshStreamError.unknownPeer) {
            _ = try await a.openStream(to: NodePrivateKey.generate().publicKey, service: .pty)
        }
    }
}

final class ErrorBox: @unchecked Sendable { var value: (any Error)? }

final class ErrorCatcher: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let box: ErrorBox
    init(box: ErrorBox) { self.box = box }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { box.value = box.value ?? error }
}

/// A tiny HTTP/1.1 server on 127.0.0.1: every request gets a deterministic body of `bodySize` bytes.
struct HTTPTestServer {
    let channel: any Channel
    var port: Int { channel.localAddress!.port! }

    static func body(_ size: Int) -> ByteBuffer { ByteBuffer.pattern(size, seed: 42) }

    static func start(bodySize: Int) async throws -> HTTPTestServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Responder(bodySize: bodySize))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return HTTPTestServer(channel: channel)
    }

    /// A port that was free a moment ago.
    static func unusedPort() async throws -> UInt16 {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = UInt16(channel.localAddress!.port!)
        try await channel.close()
        return port
    }

    func close() async throws { try await channel.close() }

    final class Responder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let bodySize: Int
        init(bodySize: Int) { self.bodySize = bodySize }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            var head = HTTPResponseHead(version: .http1_1, status: .ok)
            head.headers.add(name: "Content-Length", value: "\(bodySize)")
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(HTTPTestServer.body(bodySize)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
