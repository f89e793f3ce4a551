import NIOCore
import NIOHTTP1
import Tunnel

/// WebSocket upgrades to apps. The gateway calls this at its HTTP/1.1 connection-takeover point, with the
/// browser's request head and the connection reduced to raw bytes; the handshake goes to the app on a stream of
/// its own (never pooled: it is the app's from the 101 on), and after the app's 101 the two are spliced byte
/// for byte, so extensions (permessage-deflate) and subprotocols stay between browser and app.
public enum AppWebSocketSplice {
    public enum Outcome: Sendable, Equatable {
        /// The app switched protocols; its 101 went to the browser as it came, and the connections are
        /// spliced until either ends.
        case spliced
        /// The app answered with another status; that response went to the browser and both connections closed.
        case answered(HTTPResponseStatus)
    }

    /// Sends `head` (the browser's upgrade request, header case as received) to `app`, with `path` below its
    /// base path and the headers after `ForwardedHeaders` (`Upgrade`, `Connection: Upgrade` and every
    /// `Sec-WebSocket-*` header kept as they are). `client` must deliver raw bytes from here on; what it reads
    /// meanwhile is held for the app. When no response comes it throws having written nothing to `client`,
    /// which stays open for the caller's error page; a failure after that closes both connections and throws.
    public static func splice(
        client: any Channel, head: HTTPRequestHead, to app: ResolvedApp, path: String, origin: ForwardingOrigin, dialer: any AgentStreamDialer
    ) async throws(AppForwardError) -> Outcome {
        do {
            try await client.eventLoop.submit { try client.pipeline.syncOperations.addHandler(InboundHold()) }.get()
        } catch {
            throw AppForwardError.badGateway(cause: "the browser's connection closed: \(error)", hint: nil)
        }
        var upstream = HTTPRequestHead(version: .http1_1, method: head.method, uri: AppForwarder.joined(app.pathPrefix, path))
        upstream.headers = ForwardedHeaders.request(head.headers, purpose: .webSocketUpgrade, upstreamHost: "127.0.0.1:\(app.port)", origin: origin)
        let https = app.https
        let streams = FreshAgentStreams(dialer: dialer) { channel in
            if https { try AppUpstreamTLS.addHandlers(to: channel) }
            // The codec is taken out after a 101, when the decoder hands on what it read past the head.
            try channel.pipeline.syncOperations.addHandlers([
                RawHeadRecorder(), HTTPRequestEncoder(), ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes)),
            ])
        }
        let exchange: AgentHTTPExchange
        do {
            exchange = try await AgentHTTPExchange.begin(
                upstream, agent: app.agentID, port: app.port, through: streams, retryingStaleStreams: false, acceptsUpgrade: true, body: nil
            )
        } catch {
            throw AppForwardError.from(error, port: app.port, https: https)
        }
        do {
            guard exchange.response.status == .switchingProtocols else {
                try await relay(exchange, to: client)
                return .answered(exchange.response.status)
            }
            try await splice(exchange, client: client)
            return .spliced
        } catch {
            exchange.abort()
            client.close(promise: nil)
            throw AppForwardError.from(error, port: app.port, https: https)
        }
    }

    /// After the 101: the app's head, byte for byte, to the browser, then the splice. The stream side goes first
    /// (with the codec gone, what the browser sends must not meet an HTTP encoder); bytes the app sent after its
    /// head follow the head, because both are handed to `client` from the stream's event loop in that order.
    private static func splice(_ exchange: AgentHTTPExchange, client: any Channel) async throws {
        let stream = exchange.lease.channel
        let response = exchange.response
        try await stream.eventLoop.submit {
            let pipeline = stream.pipeline.syncOperations
            let recorder = try pipeline.handler(type: RawHeadRecorder.self)
            // The exchange handler normally left at the response's end; what the decoder hands on is bytes now.
            if let exchangeHandler = try? pipeline.handler(type: HTTPExchangeHandler.self) { pipeline.removeHandler(exchangeHandler, promise: nil) }
            client.writeAndFlush(recorder.head(of: response) ?? serialized(response), promise: nil)
            try pipeline.addHandler(ByteSplice(to: client))
            pipeline.removeHandler(try pipeline.handler(type: HTTPRequestEncoder.self), promise: nil)
            pipeline.removeHandler(try pipeline.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self), promise: nil)
            pipeline.removeHandler(recorder, promise: nil)
        }.get()
        try await client.eventLoop.submit {
            let pipeline = client.pipeline.syncOperations
            try pipeline.addHandler(ByteSplice(to: stream))
            pipeline.removeHandler(try pipeline.handler(type: InboundHold.self), promise: nil)
        }.get()
    }

    /// Anything but a 101 goes to the browser as a response of its own (headers after `ForwardedHeaders`, then
    /// `Connection: close`), the body one chunk at a time as the browser takes it; then both connections close.
    private static func relay(_ exchange: AgentHTTPExchange, to client: any Channel) async throws {
        var head = exchange.response
        head.headers = ForwardedHeaders.response(head.headers)
        head.headers.add(name: "Connection", value: "close")
        try await client.eventLoop.submit { try client.pipeline.syncOperations.addHandler(HTTPResponseEncoder()) }.get()
        try await client.writeAndFlush(HTTPServerResponsePart.head(head)).get()
        while case .bytes(let chunk) = try await exchange.nextBodyPart() {
            try await client.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(chunk))).get()
        }
        try await client.writeAndFlush(HTTPServerResponsePart.end(nil)).get()
        exchange.abort()
        try? await client.close()
    }

    /// A response head in HTTP/1.1's wire form, for when the app's own bytes are not at hand.
    static func serialized(_ head: HTTPResponseHead) -> ByteBuffer {
        var text = "HTTP/\(head.version.major).\(head.version.minor) \(head.status.code) \(head.status.reasonPhrase)\r\n"
        for (name, value) in head.headers { text += "\(name): \(value)\r\n" }
        return ByteBuffer(string: text + "\r\n")
    }
}

/// Between TLS and the HTTP decoder on a WebSocket stream: keeps the app's first response head as it came, so
/// the 101 reaches the browser unchanged (NIO's decoder would normalise spacing and the reason phrase).
final class RawHeadRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// A head longer than this is not kept (the decoded head is serialized instead).
    static let limit = 16 << 10
    private var bytes = ByteBuffer()
    private var head: ByteBuffer?
    private var done = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !done {
            var chunk = unwrapInboundIn(data)
            let searchFrom = max(0, bytes.readableBytes - 3)
            bytes.writeBuffer(&chunk)
            if let end = bytes.readableBytesView.dropFirst(searchFrom).firstRange(of: [13, 10, 13, 10]) {
                head = bytes.getSlice(at: bytes.readerIndex, length: end.upperBound - bytes.readableBytesView.startIndex)
                done = true
            } else if bytes.readableBytes > Self.limit {
                done = true
            }
            if done { bytes = ByteBuffer() }
        }
        context.fireChannelRead(data)
    }

    /// The recorded head, if it is the one decoded as `response` (not an interim 1xx before it).
    func head(of response: HTTPResponseHead) -> ByteBuffer? {
        guard let head, let line = head.getString(at: head.readerIndex, length: min(head.readableBytes, 16)) else { return nil }
        let status = line.split(separator: " ", maxSplits: 2).dropFirst().first.map(String.init)
        return status == String(response.status.code) ? head : nil
    }
}

@available(*, unavailable)
extension RawHeadRecorder: Sendable {}
