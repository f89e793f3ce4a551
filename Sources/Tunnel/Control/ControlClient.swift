import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// A node's client for the primary's JSON API and its WebSockets (the coordinator): one connection per request,
/// so there is no pool to go stale across server restarts, and the same trust as the DERP relay (system roots,
/// or a pinned self-signed certificate).
///
/// Every request carries `headers` (the agent token, say). Bodies are small JSON: a response over
/// `maxResponseBytes` is refused rather than buffered.
public struct ControlClient: Sendable {
    public let baseURL: URL
    public let trust: DERPTrust
    public let headers: HTTPHeaders
    private let group: any EventLoopGroup

    public static let maxResponseBytes = 4 << 20
    /// Connect plus the whole exchange; the API answers in milliseconds, a slow network in seconds.
    public static let timeout: TimeAmount = .seconds(15)

    public init(baseURL: URL, trust: DERPTrust, headers: HTTPHeaders = [:], group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        (self.baseURL, self.trust, self.headers, self.group) = (baseURL, trust, headers, group)
    }

    /// One request; any status comes back (the caller decides what an error is).
    public func send(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, contentType: String = "application/json") async throws -> ControlResponse {
        let target = try self.target(path)
        let channel = try await connect(target) { channel in
            try channel.pipeline.syncOperations.addHTTPClientHandlers()
        }.channel
        let response = channel.eventLoop.makePromise(of: ControlResponse.self)
        let deadline = channel.eventLoop.scheduleTask(in: Self.timeout) { response.fail(ControlError.timedOut(path)) }
        defer { deadline.cancel() }
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(ResponseCollector(response: response, limit: Self.maxResponseBytes))
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: target.path, headers: requestHeaders(target))
            head.headers.add(name: "Connection", value: "close")
            if let body {
                head.headers.add(name: "Content-Type", value: contentType)
                head.headers.add(name: "Content-Length", value: "\(body.count)")
            }
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }.get()
        do {
            let result = try await response.futureResult.get()
            channel.close(promise: nil)
            return result
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }

    /// GET `path` and decode its JSON; a status outside 2xx throws `ControlError.status` with the API's message.
    public func get<T: Decodable>(_ type: T.Type, _ path: String) async throws -> T {
        let response = try await send(.GET, path)
        try response.checkSuccess(path)
        do {
            return try JSONDecoder().decode(T.self, from: Data(response.body))
        } catch let error as DecodingError {
            throw ControlError.undecodable(path, error.summary)
        }
    }

    /// POST `value` as JSON to `path`; a status outside 2xx throws.
    public func post(_ path: String, json value: some Encodable) async throws {
        let response = try await send(.POST, path, body: Array(try JSONEncoder().encode(value)))
        try response.checkSuccess(path)
    }

    /// Opens a WebSocket at `path`. Fragmented messages arrive whole (up to `maxMessageSize`); pings are not
    /// answered for you. A refused upgrade throws `ControlError.status` with the API's message.
    public func webSocket(_ path: String, maxMessageSize: Int) async throws -> NIOAsyncChannel<WebSocketFrame, WebSocketFrame> {
        let target = try self.target(path)
        let outcome = try await connect(target) { channel in
            let upgrader = NIOTypedWebSocketClientUpgrader<WebSocketOutcome>(maxFrameSize: maxMessageSize) { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 1, maxAccumulatedFrameCount: 1024, maxAccumulatedFrameSize: maxMessageSize)
                    )
                    return .upgraded(try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(wrappingChannelSynchronously: channel))
                }
            }
            let upgrade = NIOTypedHTTPClientUpgradeConfiguration<WebSocketOutcome>(
                upgradeRequestHead: HTTPRequestHead(version: .http1_1, method: .GET, uri: target.path, headers: requestHeaders(target)),
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let response = channel.eventLoop.makePromise(of: ControlResponse.self)
                        try channel.pipeline.syncOperations.addHandler(ResponseCollector(response: response, limit: 64 * 1024))
                        return .refused(response.futureResult)
                    }
                }
            )
            var configuration = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: upgrade)
            // The first message may share a read with the 101.
            configuration.leftOverBytesStrategy = .forwardBytes
            return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: configuration)
        }
        let deadline = outcome.channel.eventLoop.scheduleTask(in: Self.timeout) { outcome.channel.close(promise: nil) }
        defer { deadline.cancel() }
        switch try await outcome.value.get() {
        case .upgraded(let channel):
            return channel
        case .refused(let response):
            let refusal = try await response.get()
            outcome.channel.close(promise: nil)
            try refusal.checkSuccess(path)
            throw ControlError.status(path, refusal.status, message: "the server did not upgrade to a WebSocket")
        }
    }

    private enum WebSocketOutcome: Sendable {
        case upgraded(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
        case refused(EventLoopFuture<ControlResponse>)
    }

    private func target(_ path: String) throws -> ServerTarget {
        let prefix = baseURL.path.hasSuffix("/") ? String(baseURL.path.dropLast()) : baseURL.path
        guard var components = URLComponents(url: baseURL, resolvingAgainstBaseURL: false) else { throw ControlError.badURL(baseURL.absoluteString) }
        components.path = ""
        guard let root = components.url else { throw ControlError.badURL(baseURL.absoluteString) }
        var target: ServerTarget
        do {
            target = try ServerTarget(url: root, defaultPath: "/")
        } catch {
            throw ControlError.badURL(baseURL.absoluteString)
        }
        target = ServerTarget(host: target.host, port: target.port, secure: target.secure, path: prefix + path)
        return target
    }

    private func requestHeaders(_ target: ServerTarget) -> HTTPHeaders {
        var result = HTTPHeaders([("Host", target.hostHeader), ("User-Agent", "meshgate")])
        result.add(contentsOf: headers)
        return result
    }

    /// TCP, then TLS when the URL is https, then `configure` on the channel's loop.
    private func connect<Output: Sendable>(
        _ target: ServerTarget, configure: @escaping @Sendable (any Channel) throws -> Output
    ) async throws -> (channel: any Channel, value: Output) {
        let sslContext = try target.secure ? DERPTrust.makeTLSContext() : nil
        let trust = self.trust
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(Self.timeout)
                .connect(host: target.host, port: target.port).get()
        } catch {
            throw ControlError.unreachable(target.hostHeader, "\(error)")
        }
        do {
            let value = try await channel.eventLoop.submit {
                if let sslContext { try channel.pipeline.syncOperations.addHandler(trust.makeClientHandler(context: sslContext, serverHostname: target.serverName)) }
                return try configure(channel)
            }.get()
            return (channel, value)
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }
}

extension ServerTarget {
    init(host: String, port: Int, secure: Bool, path: String) { (self.host, self.port, self.secure, self.path) = (host, port, secure, path) }
}

/// A whole response: status and body.
public struct ControlResponse: Sendable {
    public let status: Int
    public let body: [UInt8]

    /// The API's `{"message": …}` on an error, or the start of the body.
    public var message: String {
        struct Body: Decodable { let message: String }
        if let decoded = try? JSONDecoder().decode(Body.self, from: Data(body)) { return decoded.message }
        return String(decoding: body.prefix(200), as: UTF8.self)
    }

    func checkSuccess(_ path: String) throws(ControlError) {
        guard (200..<300).contains(status) else { throw ControlError.status(path, status, message: message) }
    }
}

public enum ControlError: Error, Equatable, CustomStringConvertible {
    case badURL(String)
    case unreachable(String, String)
    case timedOut(String)
    case status(String, Int, message: String)
    case responseTooLarge(limit: Int)
    case closedEarly
    case undecodable(String, String)

    public var description: String {
        switch self {
        case .badURL(let url): "not an http(s) URL: \(url)"
        case .unreachable(let host, let why): "cannot connect to \(host): \(why)"
        case .timedOut(let path): "no answer to \(path) within \(ControlClient.timeout.nanoseconds / 1_000_000_000) s"
        case .status(let path, let status, let message): "\(path) answered \(status): \(message)"
        case .responseTooLarge(let limit): "response larger than \(limit) bytes"
        case .closedEarly: "the server closed the connection before answering"
        case .undecodable(let path, let why): "\(path) answered with unexpected JSON: \(why)"
        }
    }

    /// True for answers that will not change by trying again (a refused credential, a missing resource).
    public var isPermanent: Bool {
        if case .status(_, let status, _) = self { return status == 401 || status == 403 || status == 404 }
        return false
    }
}

/// Collects one response (head and body up to `limit`) into a promise.
final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let response: EventLoopPromise<ControlResponse>
    private let limit: Int
    private var status: Int?
    private var body: [UInt8] = []

    init(response: EventLoopPromise<ControlResponse>, limit: Int) { (self.response, self.limit) = (response, limit) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(let chunk):
            guard body.count + chunk.readableBytes <= limit else {
                response.fail(ControlError.responseTooLarge(limit: limit))
                context.close(promise: nil)
                return
            }
            body += chunk.readableBytesView
        case .end:
            if let status { response.succeed(ControlResponse(status: status, body: body)) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        response.fail(ControlError.closedEarly)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        response.fail(error)
        context.close(promise: nil)
    }
}
