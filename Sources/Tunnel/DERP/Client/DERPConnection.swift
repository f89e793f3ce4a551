import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// How a DERP client trusts the server's certificate.
public enum DERPTrust: Sendable, Equatable {
    /// The system's roots and the host name (the normal case).
    case systemRoots
    /// A self-signed server: the SHA-256 of its certificate's DER must match (`CertName` "sha256-raw:<hex>"
    /// in a DERP map).
    case pinnedSHA256([UInt8])

    /// Parses a DERP map `CertName`: "sha256-raw:<64 hex>" pins; anything else uses the system roots.
    public init(certName: String?) {
        if let certName, certName.hasPrefix("sha256-raw:"), let bytes = Hex.decode(certName.dropFirst("sha256-raw:".count)), bytes.count == 32 {
            self = .pinnedSHA256(bytes)
        } else {
            self = .systemRoots
        }
    }
}

/// Which HTTP mechanism carries the DERP byte stream.
public enum DERPTransport: Sendable, Equatable {
    /// `Upgrade: DERP` first; a WebSocket when the server (or a proxy in front of it) answers 4xx.
    case automatic
    /// Only a WebSocket with subprotocol `derp` (`--derp-force-websockets`: for networks whose proxies
    /// pass WebSockets but not other upgrades).
    case webSocket
}

/// One logged-in DERP connection: dialed, upgraded, ServerKey → ClientInfo → ServerInfo done.
///
/// `channel` carries whole frames both ways; its inbound stream has not been iterated yet, so the owner
/// can `executeThenClose` it. `DERPClient` adds reconnects on top.
public struct DERPConnection: Sendable {
    public let channel: NIOAsyncChannel<DERPFrame, DERPFrame>
    /// The relay's key, learned from ServerKey.
    public let serverKey: NodePublicKey
    public let transport: Kind

    public enum Kind: String, Sendable { case upgrade = "upgrade", webSocket = "websocket", inProcess = "in-process" }

    public enum DialError: Error, CustomStringConvertible, Equatable {
        case badURL(String)
        case upgradeRefused(status: Int)
        case unexpectedServerFrame(UInt8)
        case closedDuringLogin
        case loginTimeout

        public var description: String {
            switch self {
            case .badURL(let url): "not a DERP URL: \(url)"
            case .upgradeRefused(let status): "server answered \(status) instead of 101 Switching Protocols"
            case .unexpectedServerFrame(let type): "unexpected frame 0x\(String(type, radix: 16)) during login"
            case .closedDuringLogin: "connection closed during login"
            case .loginTimeout: "no ServerInfo within the handshake deadline"
            }
        }
    }

    /// The deadline for upgrade plus login (the server gives a client 10 s; we don't wait longer).
    public static let loginTimeout: TimeAmount = .seconds(10)
    /// Two missed KeepAlives (60 s + up to 5 s jitter each): the connection is closed and redialed.
    static let silenceLimit: TimeAmount = .seconds(130)

    /// Dials `url` (http(s)://host[:port][/derp]) and logs in with `privateKey` (and `meshKey`, for servers of
    /// the same region). With `.automatic`, a 4xx answer to `Upgrade: DERP` retries once as a WebSocket.
    public static func dial(
        url: URL, privateKey: NodePrivateKey, meshKey: String? = nil, trust: DERPTrust = .systemRoots,
        transport: DERPTransport = .automatic, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> DERPConnection {
        let target = try ServerTarget(url: url, defaultPath: "/derp")
        if transport == .automatic {
            do {
                return try await dial(target, kind: .upgrade, privateKey: privateKey, meshKey: meshKey, trust: trust, group: group)
            } catch DialError.upgradeRefused(let status) where (400..<500).contains(status) {
                // Tailscale's fallback: something in the path (or the server) refused the custom upgrade.
            }
        }
        return try await dial(target, kind: .webSocket, privateKey: privateKey, meshKey: meshKey, trust: trust, group: group)
    }

    private enum UpgradeOutcome: Sendable {
        case upgraded(NIOAsyncChannel<DERPFrame, DERPFrame>, EventLoopFuture<NodePublicKey>)
        case refused(EventLoopFuture<Int>)
    }

    private static func dial(
        _ target: ServerTarget, kind: Kind, privateKey: NodePrivateKey, meshKey: String?, trust: DERPTrust, group: any EventLoopGroup
    ) async throws -> DERPConnection {
        let sslContext = try target.secure ? DERPTrust.makeTLSContext() : nil
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(loginTimeout)
            .connect(host: target.host, port: target.port).get()
        let deadline = channel.eventLoop.scheduleTask(in: loginTimeout) { channel.close(promise: nil) }
        defer { deadline.cancel() }
        do {
            let outcome = try await channel.eventLoop.flatSubmit {
                let outcome = channel.eventLoop.makePromise(of: UpgradeOutcome.self)
                // A failed TLS handshake closes the channel without an HTTP answer: fail fast, not at the deadline.
                channel.closeFuture.whenComplete { _ in outcome.fail(DialError.closedDuringLogin) }
                channel.eventLoop.makeCompletedFuture {
                    try configure(channel, target: target, kind: kind, sslContext: sslContext, trust: trust, privateKey: privateKey, meshKey: meshKey)
                }.flatMap { $0 }.cascade(to: outcome)
                return outcome.futureResult
            }.get()
            switch outcome {
            case .refused(let status):
                let code = try await status.get()
                try? await channel.close()
                throw DialError.upgradeRefused(status: code)
            case .upgraded(let asyncChannel, let login):
                let serverKey = try await login.get()
                return DERPConnection(channel: asyncChannel, serverKey: serverKey, transport: kind)
            }
        } catch {
            try? await channel.close()
            if !channel.isActive, case ChannelError.ioOnClosedChannel = error { throw DialError.loginTimeout }
            throw error
        }
    }

    /// TLS, the HTTP/1.1 upgrade request, and what happens after the 101, all set up on the channel's loop.
    private static func configure(
        _ channel: any Channel, target: ServerTarget, kind: Kind, sslContext: NIOSSLContext?, trust: DERPTrust,
        privateKey: NodePrivateKey, meshKey: String?
    ) throws -> EventLoopFuture<UpgradeOutcome> {
        let sync = channel.pipeline.syncOperations
        if let sslContext { try sync.addHandler(trust.makeClientHandler(context: sslContext, serverHostname: target.serverName)) }
        // Once the stream is upgraded: frames, then the login, then the async channel that owners iterate.
        let afterUpgrade: @Sendable (any Channel) -> EventLoopFuture<UpgradeOutcome> = { channel in
            channel.eventLoop.makeCompletedFuture {
                let sync = channel.pipeline.syncOperations
                // The server sends KeepAlive every 60-65 s: silence for longer means a dead path (a half-open
                // TCP connection would otherwise look connected until retransmissions give up, minutes later).
                try sync.addHandler(IdleStateHandler(readTimeout: silenceLimit))
                try sync.addHandler(CloseOnReadIdle())
                if kind == .webSocket { try sync.addHandler(WebSocketByteStreamHandler()) }
                try sync.addHandler(ByteToMessageHandler(DERPFrameDecoder(maximumFrameLength: DERPLimits.maxFrameLength)))
                try sync.addHandler(MessageToByteHandler(DERPFrameEncoder()))
                let login = DERPLoginHandler(privateKey: privateKey, meshKey: meshKey, serverKey: channel.eventLoop.makePromise())
                try sync.addHandler(login)
                let frames = try NIOAsyncChannel<DERPFrame, DERPFrame>(wrappingChannelSynchronously: channel)
                return .upgraded(frames, login.serverKey.futureResult)
            }
        }
        let upgrader: any NIOTypedHTTPClientProtocolUpgrader<UpgradeOutcome> =
            kind == .webSocket
            // A DERP frame (≤ 1 MiB) may arrive as one WebSocket message.
            ? NIOTypedWebSocketClientUpgrader(maxFrameSize: DERPLimits.maxFrameLength + DERPLimits.frameHeaderLength) { channel, _ in afterUpgrade(channel) }
            : DERPUpgrader(afterUpgrade: afterUpgrade)
        var headers = HTTPHeaders([("Host", target.hostHeader), ("User-Agent", "meshgate")])
        if kind == .webSocket { headers.add(name: "Sec-WebSocket-Protocol", value: "derp") }
        let upgrade = NIOTypedHTTPClientUpgradeConfiguration<UpgradeOutcome>(
            upgradeRequestHead: HTTPRequestHead(version: .http1_1, method: .GET, uri: target.path, headers: headers),
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                // The refused response's head reaches the pipeline right after this returns.
                channel.eventLoop.makeCompletedFuture {
                    let status = channel.eventLoop.makePromise(of: Int.self)
                    try channel.pipeline.syncOperations.addHandler(ResponseStatusReader(status: status))
                    return .refused(status.futureResult)
                }
            }
        )
        var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: upgrade)
        // ServerKey often shares a read with the 101; the default would drop it.
        pipeline.leftOverBytesStrategy = .forwardBytes
        return try sync.configureUpgradableHTTPClientPipeline(configuration: pipeline)
    }

}

/// `Upgrade: DERP`: the server answers 101 with `Derp-Version` and `Derp-Public-Key`; the key is learned
/// again, authenticated, from ServerKey, so the headers are informational.
private struct DERPUpgrader<Result: Sendable>: NIOTypedHTTPClientProtocolUpgrader {
    typealias UpgradeResult = Result
    let supportedProtocol = "DERP"
    let requiredUpgradeHeaders: [String] = []
    let afterUpgrade: @Sendable (any Channel) -> EventLoopFuture<Result>

    func addCustom(upgradeRequestHeaders: inout HTTPHeaders) {}
    func shouldAllowUpgrade(upgradeResponse: HTTPResponseHead) -> Bool { true }
    func upgrade(channel: any Channel, upgradeResponse: HTTPResponseHead) -> EventLoopFuture<Result> { afterUpgrade(channel) }
}
