import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization
import Testing
import Tunnel

@testable import AppProxy

/// WebSocket upgrades through the splice: a raw client, a gateway stand-in that takes the connection over
/// after the request head, a real mesh pair and a NIO WebSocket echo server as the app.
@Suite(.timeLimit(.minutes(2))) struct AppWebSocketSpliceTests {
    static let key = "dGhlIHNhbXBsZSBub25jZQ=="

    @Test func splicesAnUpgradedConnection() async throws {
        try await ForwardingFixture.with { fixture in
            let app = try await WebSocketEchoApp.start()
            let gateway = try await TakeoverGateway.start(fixture: fixture, app: fixture.app(port: app.port, pathPrefix: "/ui"))
            let client = try await RawWebSocketClient.connect(port: gateway.port)
            let head = try await client.handshake(path: "/ws", extraHeaders: "Cookie: meshgate_session_token=s; app=1\r\n")

            // The app's 101 as it came: its accept key, its header case.
            #expect(head.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
            #expect(head.contains("\r\nSec-WebSocket-Accept: \(Self.accept(Self.key))\r\n"))
            #expect(head.contains("\r\nSec-WebSocket-Protocol: chat\r\n"))
            // The browser's handshake as the app saw it: names in their case, no meshgate cookie, who asked.
            let seen = app.requests
            #expect(seen.first?.uri == "/ui/ws")
            let names = seen.first?.headers.map(\.name) ?? []
            #expect(names.contains("Sec-WebSocket-Protocol") && names.contains("Sec-WebSocket-Key") && names.contains("Upgrade"))
            #expect(seen.first?.headers["Cookie"] == ["app=1"])
            #expect(seen.first?.headers["X-Forwarded-For"] == ["192.0.2.10"])

            try await client.send(.text, ByteBuffer(string: "hello"))
            #expect(try await client.nextMessage() == (.text, ByteBuffer(string: "hello")))
            var large = ByteBuffer()
            for index in 0..<(1 << 20) { large.writeInteger(UInt8(truncatingIfNeeded: index &* 31)) }
            try await client.send(.binary, large)
            let echoed = try await client.nextMessage()
            #expect(echoed.0 == .binary && echoed.1 == large)
            #expect(gateway.outcomes == [.spliced])

            // The browser closes: the app's side goes too.
            try await client.close()
            try await eventually("the app saw its connection close") { app.openConnections == 0 }
            await gateway.close()
            await app.close()
        }
    }

    /// An app that does not upgrade: its answer reaches the browser, then both connections close.
    @Test func relaysARefusedUpgrade() async throws {
        try await ForwardingFixture.with { fixture in
            let app = try await WebSocketEchoApp.start()
            let gateway = try await TakeoverGateway.start(fixture: fixture, app: fixture.app(port: app.port))
            let client = try await RawWebSocketClient.connect(port: gateway.port)
            let answer = try await client.handshake(path: "/not-a-socket", extraHeaders: "")
            #expect(answer.hasPrefix("HTTP/1.1 403 Forbidden\r\n") && answer.lowercased().contains("connection: close"))
            try await client.channel.closeFuture.get()
            #expect(client.received.contains("no sockets here"))
            #expect(gateway.outcomes == [.answered(.forbidden)])
            await gateway.close()
            await app.close()
        }
    }

    static func accept(_ key: String) -> String {
        Data(Insecure.SHA1.hash(data: Data((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))).base64EncodedString()
    }
}

/// Waits until `condition` holds (polling), or fails the test after `timeout`.
func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting for: \(what)")
            return
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// The app: a NIO WebSocket server echoing every frame at `/ui/ws` (subprotocol `chat`), answering anything
/// else with 403. It records each handshake head as it arrived.
final class WebSocketEchoApp: Sendable {
    final class Seen: Sendable {
        let requests = Mutex([HTTPRequestHead]())
        let open = Atomic(0)
    }

    let channel: any Channel
    let seen: Seen
    var requests: [HTTPRequestHead] { seen.requests.withLock { $0 } }
    var openConnections: Int { seen.open.load(ordering: .relaxed) }

    var port: Int { channel.localAddress!.port! }

    private init(channel: any Channel, seen: Seen) { (self.channel, self.seen) = (channel, seen) }

    static func start() async throws -> WebSocketEchoApp {
        let app = Seen()
        let channel = try await loopbackServer { channel in
            app.open.add(1, ordering: .relaxed)
            channel.closeFuture.whenComplete { _ in app.open.subtract(1, ordering: .relaxed) }
            let upgrader = NIOWebSocketServerUpgrader(
                maxFrameSize: 2 << 20,
                shouldUpgrade: { channel, head in
                    app.requests.withLock { $0.append(head) }
                    guard head.uri == "/ui/ws" else { return channel.eventLoop.makeSucceededFuture(nil) }
                    return channel.eventLoop.makeSucceededFuture(HTTPHeaders([("Sec-WebSocket-Protocol", "chat")]))
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        // The upgrader removes the HTTP handlers it knows; the refusal is ours to remove.
                        let pipeline = channel.pipeline.syncOperations
                        pipeline.removeHandler(try pipeline.handler(type: Refuse.self), promise: nil)
                        try pipeline.addHandler(EchoFrames())
                    }
                }
            )
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
            try channel.pipeline.syncOperations.addHandler(Refuse())
        }
        return WebSocketEchoApp(channel: channel, seen: app)
    }

    func close() async { try? await channel.close() }

    private final class EchoFrames: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            switch frame.opcode {
            case .connectionClose:
                let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)
                context.writeAndFlush(wrapOutboundOut(close)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            default:
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: frame.unmaskedData)), promise: nil)
            }
        }
    }

    /// What a request that is not an upgrade gets.
    private final class Refuse: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            let body = ByteBuffer(string: "no sockets here")
            let head = HTTPResponseHead(version: .http1_1, status: .forbidden, headers: ["Content-Length": "\(body.readableBytes)"])
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

/// The gateway's part: reads a request head with NIO's decoder, then takes the connection over (the decoder
/// goes, the bytes are raw) and hands it to `AppWebSocketSplice`.
final class TakeoverGateway: Sendable {
    final class Outcomes: Sendable {
        let list = Mutex([AppWebSocketSplice.Outcome]())
    }

    let channel: any Channel
    private let recorded: Outcomes
    var outcomes: [AppWebSocketSplice.Outcome] { recorded.list.withLock { $0 } }

    var port: Int { channel.localAddress!.port! }

    private init(channel: any Channel, outcomes: Outcomes) { (self.channel, self.recorded) = (channel, outcomes) }

    static func start(fixture: ForwardingFixture, app: ResolvedApp) async throws -> TakeoverGateway {
        let outcomes = Outcomes()
        let dialer = fixture.mesh.dialer
        let channel = try await loopbackServer(halfClosure: true) { channel in
            let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes))
            try channel.pipeline.syncOperations.addHandler(decoder)
            try channel.pipeline.syncOperations.addHandler(
                Takeover(decoder: decoder) { head in
                    Task {
                        let outcome = try await AppWebSocketSplice.splice(
                            client: channel, head: head, to: app, path: head.uri, origin: ForwardingFixture.origin, dialer: dialer
                        )
                        outcomes.list.withLock { $0.append(outcome) }
                    }
                }
            )
        }
        return TakeoverGateway(channel: channel, outcomes: outcomes)
    }

    func close() async { try? await channel.close() }

    private final class Takeover: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPServerRequestPart
        let decoder: ByteToMessageHandler<HTTPRequestDecoder>
        let takeOver: @Sendable (HTTPRequestHead) -> Void
        private var head: HTTPRequestHead?

        init(decoder: ByteToMessageHandler<HTTPRequestDecoder>, takeOver: @escaping @Sendable (HTTPRequestHead) -> Void) {
            (self.decoder, self.takeOver) = (decoder, takeOver)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): self.head = head
            case .body: break
            case .end:
                let pipeline = context.pipeline.syncOperations
                pipeline.removeHandler(context: context, promise: nil)
                pipeline.removeHandler(decoder, promise: nil)
                takeOver(head!)
            }
        }
    }
}

/// A browser, by hand: writes the upgrade request, reads the response head as raw text, then speaks WebSocket
/// frames (masked, as clients must) with NIO's codec.
final class RawWebSocketClient: Sendable {
    final class Received: Sendable {
        let bytes = Mutex(ByteBuffer())
    }

    let channel: any Channel
    private let raw: Received
    var received: String { raw.bytes.withLock { String(buffer: $0) } }
    private let messages: AsyncThrowingStream<(WebSocketOpcode, ByteBuffer), any Error>
    private let sink: AsyncThrowingStream<(WebSocketOpcode, ByteBuffer), any Error>.Continuation

    private init(channel: any Channel, raw: Received) {
        (self.channel, self.raw) = (channel, raw)
        (messages, sink) = AsyncThrowingStream.makeStream()
    }

    static func connect(port: Int) async throws -> RawWebSocketClient {
        let raw = Received()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawBytes { bytes in raw.bytes.withLock { _ = $0.writeImmutableBuffer(bytes) } })
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawWebSocketClient(channel: channel, raw: raw)
    }

    /// Sends the upgrade request and returns the response head (through its blank line).
    func handshake(path: String, extraHeaders: String) async throws -> String {
        let request =
            "GET \(path) HTTP/1.1\r\nHost: gateway.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(AppWebSocketSpliceTests.key)\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\(extraHeaders)\r\n"
        try await channel.writeAndFlush(ByteBuffer(string: request)).get()
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let text = received
            if let end = text.range(of: "\r\n\r\n") { return String(text[..<end.upperBound]) }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw ChannelError.inputClosed
    }

    /// Switches to frames: what came after the head goes to the frame decoder first.
    private func startFrames() async throws {
        let sink = self.sink
        let rest = raw.bytes.withLock { buffer -> ByteBuffer in
            let text = String(buffer: buffer)
            let headLength = text.range(of: "\r\n\r\n").map { text.utf8.distance(from: text.startIndex, to: $0.upperBound) } ?? 0
            return buffer.getSlice(at: buffer.readerIndex + headLength, length: buffer.readableBytes - headLength) ?? ByteBuffer()
        }
        try await channel.eventLoop.submit {
            let pipeline = self.channel.pipeline.syncOperations
            try pipeline.removeHandler(pipeline.handler(type: RawBytes.self), promise: nil)
            try pipeline.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 2 << 20)))
            try pipeline.addHandler(WebSocketFrameEncoder())
            try pipeline.addHandler(Messages(sink: sink))
            if rest.readableBytes > 0 { self.channel.pipeline.fireChannelRead(rest) }
        }.get()
    }

    private let framing = Mutex(false)

    func send(_ opcode: WebSocketOpcode, _ data: ByteBuffer) async throws {
        let first = framing.withLock { started in
            defer { started = true }
            return !started
        }
        if first { try await startFrames() }
        try await channel.writeAndFlush(WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: data)).get()
    }

    func nextMessage() async throws -> (WebSocketOpcode, ByteBuffer) {
        var iterator = messages.makeAsyncIterator()
        guard let message = try await iterator.next() else { throw ChannelError.inputClosed }
        return message
    }

    func close() async throws {
        try await channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: ByteBuffer(integer: UInt16(1000)))).get()
        try await channel.closeFuture.get()
    }

    private final class RawBytes: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        let onBytes: @Sendable (ByteBuffer) -> Void
        init(onBytes: @escaping @Sendable (ByteBuffer) -> Void) { self.onBytes = onBytes }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { onBytes(unwrapInboundIn(data)) }
    }

    /// Whole messages (continuation frames joined) to the stream.
    private final class Messages: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        let sink: AsyncThrowingStream<(WebSocketOpcode, ByteBuffer), any Error>.Continuation
        private var partial: (WebSocketOpcode, ByteBuffer)?

        init(sink: AsyncThrowingStream<(WebSocketOpcode, ByteBuffer), any Error>.Continuation) { self.sink = sink }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            var data = frame.unmaskedData
            if frame.opcode == .continuation, partial != nil { partial!.1.writeBuffer(&data) } else { partial = (frame.opcode, data) }
            if frame.fin, let message = partial {
                partial = nil
                sink.yield(message)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            sink.finish()
            context.fireChannelInactive()
        }
    }
}
