import CSodium
import Foundation
import NIOCore
import NIOPosix
import NIOSSL

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

/// One DERP client connection: dial, upgrade, log in, then frames both ways.
///
/// `Upgrade: DERP` over TCP (TLS for https URLs). The connection is a NIOAsyncChannel of frames; the
/// owner (`DERPConnection.run` loop in `DERPRegionClient`) reads and writes it and reconnects as needed.
public struct DERPConnection: Sendable {
    public let channel: NIOAsyncChannel<DERPFrame, DERPFrame>
    /// The relay's key, learned from ServerKey.
    public let serverKey: NodePublicKey

    public enum DialError: Error, CustomStringConvertible {
        case badURL(String)
        case upgradeRefused(status: Int)
        case unexpectedServerFrame(UInt8)
        case closedDuringLogin

        public var description: String {
            switch self {
            case .badURL(let url): "not a DERP URL: \(url)"
            case .upgradeRefused(let status): "server answered \(status) to Upgrade: DERP"
            case .unexpectedServerFrame(let type): "unexpected frame 0x\(String(type, radix: 16)) during login"
            case .closedDuringLogin: "connection closed during login"
            }
        }
    }

    /// Dials `url` (http(s)://host[:port][/derp]) and logs in with `privateKey` (and `meshKey`, for servers
    /// of the same region).
    public static func dial(
        url: URL, privateKey: NodePrivateKey, meshKey: String? = nil, trust: DERPTrust = .systemRoots,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> DERPConnection {
        guard let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme), let host = url.host else { throw DialError.badURL(url.absoluteString) }
        let secure = scheme == "https"
        let port = url.port ?? (secure ? 443 : 80)
        let sslContext: NIOSSLContext? = try secure ? {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.applicationProtocols = ["http/1.1"]  // DERP upgrades need HTTP/1.1; h2 cannot carry Upgrade
            if case .pinnedSHA256 = trust { tls.certificateVerification = .none }
            return try NIOSSLContext(configuration: tls)
        }() : nil

        let response = group.any().makePromise(of: Int.self)
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port).get()
        try await channel.eventLoop.submit {
            let sync = channel.pipeline.syncOperations
            if let sslContext {
                let sniHost = host.first?.isNumber == true || host.contains(":") ? nil : host
                switch trust {
                case .systemRoots:
                    try sync.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: sniHost))
                case .pinnedSHA256(let pin):
                    try sync.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: sniHost) { certificates, promise in
                        let der = (try? certificates.first?.toDERBytes()) ?? []
                        promise.succeed(Self.sha256(der) == pin ? .certificateVerified : .failed)
                    })
                }
            }
            try sync.addHandler(UpgradeResponseReader(status: response))
        }.get()

        var request = "GET /derp HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n"
        request += "User-Agent: meshgate/\(DERPLimits.protocolVersion)\r\n\r\n"
        try await channel.writeAndFlush(channel.allocator.buffer(string: request))
        let status = try await response.futureResult.get()
        guard status == 101 else {
            try? await channel.close()
            throw DialError.upgradeRefused(status: status)
        }
        let asyncChannel = try await channel.eventLoop.submit {
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(ByteToMessageHandler(DERPFrameDecoder(maximumFrameLength: DERPLimits.maxFrameLength)))
            try sync.addHandler(MessageToByteHandler(DERPFrameEncoder()))
            let wrapped = try NIOAsyncChannel<DERPFrame, DERPFrame>(wrappingChannelSynchronously: channel)
            _ = sync.removeHandler(context: try sync.context(handlerType: UpgradeResponseReader.self))
            return wrapped
        }.get()
        return try await login(asyncChannel, privateKey: privateKey, meshKey: meshKey)
    }

    /// ServerKey → ClientInfo → ServerInfo, over any frame channel.
    static func login(_ channel: NIOAsyncChannel<DERPFrame, DERPFrame>, privateKey: NodePrivateKey, meshKey: String?) async throws -> DERPConnection {
        var iterator = channel.inbound.makeAsyncIterator()
        guard let first = try await iterator.next() else { throw DialError.closedDuringLogin }
        guard case .serverKey(let serverKey) = first else { throw DialError.unexpectedServerFrame(first.type) }
        try await channel.outbound.write(try .clientInfo(DERPClientInfo(meshKey: meshKey), from: privateKey, to: serverKey))
        guard let second = try await iterator.next() else { throw DialError.closedDuringLogin }
        guard case .serverInfo(let nonce, let sealed) = second else { throw DialError.unexpectedServerFrame(second.type) }
        guard let json = NaClBox.open(sealed, nonce: nonce, from: serverKey, to: privateKey),
            (try? JSONDecoder().decode(DERPServerInfo.self, from: Data(json))) != nil
        else { throw DERPError.badServerInfo("cannot open or parse") }
        return DERPConnection(channel: channel, serverKey: serverKey)
    }

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        _ = crypto_hash_sha256(&out, bytes, UInt64(bytes.count))
        return out
    }
}

/// Reads the HTTP response head to the upgrade request and reports its status; holds any bytes after the
/// head and replays them when removed, so the first DERP frame is never lost.
final class UpgradeResponseReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    static let maximumHeadLength = 16 * 1024

    private let status: EventLoopPromise<Int>
    private var held = ByteBuffer()
    private var done = false

    init(status: EventLoopPromise<Int>) { self.status = status }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        held.writeBuffer(&bytes)
        guard !done else { return }
        let view = Array(held.readableBytesView)
        if let end = view.indices.dropLast(3).first(where: { view[$0] == 13 && view[$0 + 1] == 10 && view[$0 + 2] == 13 && view[$0 + 3] == 10 }) {
            done = true
            held.moveReaderIndex(forwardBy: end + 4)
            let head = String(decoding: view[..<end], as: UTF8.self)
            let fields = head.split(separator: " ", maxSplits: 2)
            status.succeed(fields.count >= 2 ? Int(fields[1]) ?? 0 : 0)
        } else if view.count > Self.maximumHeadLength {
            done = true
            status.succeed(0)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { status.fail(DERPConnection.DialError.closedDuringLogin) }
        done = true
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done { status.fail(error) }
        done = true
        context.close(promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if held.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(held))
            context.fireChannelReadComplete()
        }
    }
}
