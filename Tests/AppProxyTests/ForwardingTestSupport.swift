import AppProxy
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import MeshgateTesting
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SwiftASN1
import ServiceLifecycle
import Synchronization
import Tunnel
import X509

/// The loopback agent mesh (the agent forwards `tcp:` to 127.0.0.1 except port 9), reached as `agentID`.
struct MeshPair {
    let nodes: LoopbackAgentMesh
    let dialer: TestAgentDialer

    static func start(agentID: UUID) async throws -> MeshPair {
        let nodes = try await LoopbackAgentMesh.start()
        return MeshPair(nodes: nodes, dialer: TestAgentDialer(node: nodes.gateway, agent: nodes.agent.privateKey.publicKey, agentID: agentID))
    }

    func close() async { await nodes.close() }
}

/// Opens streams to the one agent node for `agentID`; any other id is "not connected".
final class TestAgentDialer: AgentStreamDialer {
    struct NotConnected: Error, CustomStringConvertible {
        var description: String { "the agent is not connected" }
    }

    let node: MeshNode
    let agent: NodePublicKey
    let agentID: UUID
    private let opened = Atomic(0)
    private let gone = Atomic(false)

    init(node: MeshNode, agent: NodePublicKey, agentID: UUID) { (self.node, self.agent, self.agentID) = (node, agent, agentID) }

    var streamsOpened: Int { opened.load(ordering: .relaxed) }

    /// From now on the agent is "not connected" too.
    func disconnect() { gone.store(true, ordering: .relaxed) }

    func openStream<Output: Sendable>(
        toAgent id: UUID, service: MeshService, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws -> Output {
        guard id == agentID, !gone.load(ordering: .relaxed) else { throw NotConnected() }
        opened.add(1, ordering: .relaxed)
        return try await node.openStream(to: agent, service: service, initializer: initializer)
    }
}

/// The gateway's stream pool in miniature: checked-in streams are kept per port and handed out again, newest
/// first. Unlike the real pool it does not watch idle streams, so a stream the app closed meanwhile is handed
/// out as it is: what the forwarder's retry is for.
final class IdleStreams: AgentStreamFailureReporting, IdleAgentStreamSource {
    private let dialer: any AgentStreamDialer
    private let idle = Mutex([AgentStreamLease]())

    init(dialer: any AgentStreamDialer) { self.dialer = dialer }

    var idleCount: Int { idle.withLock { $0.count } }

    func checkoutReportingFailure(agent: UUID, port: UInt16) async throws -> (lease: AgentStreamLease, failure: AgentStreamFailureRecord?) {
        if let kept = idleLease(agent: agent, port: port) { return (kept, nil) }
        return try await FreshAgentStreams(dialer: dialer) { try $0.pipeline.syncOperations.addHTTPClientHandlers() }
            .checkoutReportingFailure(agent: agent, port: port)
    }

    func idleLease(agent: UUID, port: UInt16) -> AgentStreamLease? {
        let kept = idle.withLock { idle in idle.lastIndex { $0.port == port }.map { idle.remove(at: $0) } }
        if let kept { leased.withLock { $0 = kept.channel } }
        return kept.map { AgentStreamLease(channel: $0.channel, agent: agent, port: port, reused: true) }
    }

    /// The stream the last idle lease handed out.
    var lastLeased: (any Channel)? { leased.withLock { $0 } }
    private let leased = Mutex<(any Channel)?>(nil)

    func checkin(_ lease: AgentStreamLease) async { checkinOnLoop(lease) }

    func checkinOnLoop(_ lease: AgentStreamLease) {
        guard lease.channel.isActive else { return }
        idle.withLock { $0.append(lease) }
    }

    /// Closes the idle streams but keeps listing them, as a pool that has not heard of the close yet would.
    func endIdleStreamsButKeepThem() async throws {
        for lease in idle.withLock({ $0 }) { try await lease.channel.close() }
    }

    func closeAll() {
        for lease in idle.withLock({ idle in defer { idle.removeAll() }; return idle }) { lease.channel.close(promise: nil) }
    }
}

/// New streams handed over only once they have ended (at most a second): the agent's answer always comes
/// before the exchange is set up, as it may when the hand-over is slow.
struct LateStreams: AgentStreamFailureReporting {
    let dialer: any AgentStreamDialer

    func checkoutReportingFailure(agent: UUID, port: UInt16) async throws -> (lease: AgentStreamLease, failure: AgentStreamFailureRecord?) {
        let fresh = try await FreshAgentStreams(dialer: dialer) { try $0.pipeline.syncOperations.addHTTPClientHandlers() }
            .checkoutReportingFailure(agent: agent, port: port)
        _ = try? await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await fresh.lease.channel.closeFuture.get() }
            group.addTask { try await Task.sleep(for: .seconds(1)) }
            defer { group.cancelAll() }
            try await group.next()
        }
        return fresh
    }

    func checkin(_ lease: AgentStreamLease) async { checkinOnLoop(lease) }
    func checkinOnLoop(_ lease: AgentStreamLease) { lease.channel.close(promise: nil) }
}

/// A forwarder to an agent over a real mesh pair, with everything a test needs to look at.
struct ForwardingFixture {
    let agentID: UUID
    let mesh: MeshPair
    let streams: IdleStreams
    let forwarder: AppForwarder
    static let origin = ForwardingOrigin(clientAddress: "192.0.2.10", scheme: "https", host: "8080--main--dev--alice.apps.example.com")

    static func with<T>(_ body: (ForwardingFixture) async throws -> T) async throws -> T {
        let agentID = UUID()
        let mesh = try await MeshPair.start(agentID: agentID)
        let streams = IdleStreams(dialer: mesh.dialer)
        let fixture = ForwardingFixture(mesh: mesh, streams: streams, forwarder: AppForwarder(streams: streams, dialer: mesh.dialer), agentID: agentID)
        do {
            let value = try await body(fixture)
            streams.closeAll()
            await mesh.close()
            return value
        } catch {
            streams.closeAll()
            await mesh.close()
            throw error
        }
    }

    private init(mesh: MeshPair, streams: IdleStreams, forwarder: AppForwarder, agentID: UUID) {
        (self.mesh, self.streams, self.forwarder) = (mesh, streams, forwarder)
        self.agentID = agentID
    }

    func app(port: Int, https: Bool = false, pathPrefix: String = "", agent: UUID? = nil) -> ResolvedApp {
        let request = AppRequest(accessMethod: .subdomain, user: "alice", workspace: "dev", agent: "main", target: .port(UInt16(port), https: https), basePath: "/")
        return ResolvedApp(
            request: request, ownerID: UUID(), workspaceID: UUID(), agentID: agent ?? agentID, agentName: "main", agentConnected: true,
            port: UInt16(port), https: https, pathPrefix: pathPrefix, sharingLevel: .owner, displayName: "app", health: nil
        )
    }

    func forward(
        _ method: HTTPRequest.Method, _ path: String, headers: HTTPFields = [:], body: RequestBody = RequestBody(buffer: ByteBuffer()), to app: ResolvedApp
    ) async throws(AppForwardError) -> Response {
        let head = HTTPRequest(method: method, scheme: "https", authority: Self.origin.host, path: path, headerFields: headers)
        return try await forwarder.forward(Request(head: head, body: body), to: app, path: path, origin: Self.origin)
    }
}

/// Collects a response body, or counts it through `onChunk` without keeping it.
struct BodyCollector: ResponseBodyWriter {
    final class Sink: Sendable {
        let bytes = Mutex(ByteBuffer())
        let trailers = Mutex<HTTPFields?>(nil)
        var string: String { bytes.withLock { String(buffer: $0) } }
    }

    let sink: Sink
    var keep = true
    var onChunk: (@Sendable (ByteBuffer) async throws -> Void)?

    mutating func write(_ buffer: ByteBuffer) async throws {
        try await onChunk?(buffer)
        if keep { sink.bytes.withLock { _ = $0.writeImmutableBuffer(buffer) } }
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws { sink.trailers.withLock { $0 = trailingHeaders } }
}

extension Response {
    /// The whole body as a string (small bodies only).
    func bodyString() async throws -> String {
        let sink = BodyCollector.Sink()
        try await body.write(BodyCollector(sink: sink))
        return sink.string
    }
}

/// The request context of the test apps: which TCP connection a request came on (its client port).
struct ConnectionContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let connectionPort: Int

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        connectionPort = source.channel.remoteAddress?.port ?? 0
    }
}

/// Starts a test app's graceful shutdown from inside its body.
final class ShutdownSwitch: Sendable {
    private let services = Mutex<ServiceGroup?>(nil)

    fileprivate func attach(_ group: ServiceGroup) { services.withLock { $0 = group } }

    func trigger() async { await services.withLock { $0 }?.triggerGracefulShutdown() }
}

/// Runs a Hummingbird app on 127.0.0.1 (an ephemeral port, TLS if given) for `body`.
/// `server` replaces the default HTTP/1.1 (or TLS) server; `shutdown` lets the body begin a graceful shutdown.
func withTestApp<T: Sendable>(
    _ router: Router<ConnectionContext>, tls: TLSConfiguration? = nil, server: HTTPServerBuilder? = nil, shutdown: ShutdownSwitch? = nil,
    _ body: @Sendable (Int) async throws -> T
) async throws -> T {
    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    var logger = Logger(label: "test-app")
    logger.logLevel = .warning
    let server: HTTPServerBuilder = try server ?? tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1()
    let app = Application(
        router: router, server: server, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { continuation.yield($0.localAddress!.port!) }, logger: logger
    )
    // Stopped gracefully: cancelling it would log its connections' shutdown as errors.
    let services = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
    shutdown?.attach(services)
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask {
            try await services.run()
            return nil
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        do {
            let value = try await body(port)
            await services.triggerGracefulShutdown()
            return value
        } catch {
            await services.triggerGracefulShutdown()
            throw error
        }
    }
}

/// A self-signed certificate for 127.0.0.1 and its key, as a server's TLS configuration.
func selfSignedTLS() throws -> TLSConfiguration {
    let key = P256.Signing.PrivateKey()
    let name = try DistinguishedName { CommonName("127.0.0.1") }
    let certificate = try Certificate(
        version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: Date() - 3600, notValidAfter: Date() + 86_400,
        issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: .init(), issuerPrivateKey: .init(key)
    )
    let pem = try certificate.serializeAsPEM().pemString
    return TLSConfiguration.makeServerConfiguration(
        certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(pem.utf8), format: .pem))],
        privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem))
    )
}

/// A TCP server on 127.0.0.1 (an ephemeral port) whose connections `configure` sets up on their event loop.
func loopbackServer(halfClosure: Bool = false, _ configure: @escaping @Sendable (any Channel) throws -> Void) async throws -> any Channel {
    try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .childChannelOption(.allowRemoteHalfClosure, value: halfClosure)
        .childChannelInitializer { channel in channel.eventLoop.makeCompletedFuture { try configure(channel) } }
        .bind(host: "127.0.0.1", port: 0).get()
}

/// A raw TCP server that answers each request (up to its blank line) on each connection as `script` says, by
/// connection and request number (both from 0) and the request line: for the apps that break HTTP.
final class ScriptedServer: Sendable {
    enum Action: Sendable {
        case respond(String)
        /// The head now and the body after `later`, in two reads at the other end.
        case respondInTwoParts(head: String, body: String, later: TimeAmount)
        case respondAndClose(String)
        case close
        /// Read the request and never answer.
        case hold
    }

    private final class Count: Sendable {
        let value = Atomic(0)
    }

    private let channel: any Channel
    private let connections: Count

    var port: Int { channel.localAddress!.port! }
    /// TCP connections accepted so far.
    var accepted: Int { connections.value.load(ordering: .relaxed) }

    private init(channel: any Channel, connections: Count) { (self.channel, self.connections) = (channel, connections) }

    static func start(_ script: @escaping @Sendable (_ connection: Int, _ request: Int, _ line: String) -> Action) async throws -> ScriptedServer {
        let connections = Count()
        let server = try await loopbackServer { channel in
            let connection = connections.value.add(1, ordering: .relaxed).oldValue
            try channel.pipeline.syncOperations.addHandler(Responder(connection: connection, script: script))
        }
        return ScriptedServer(channel: server, connections: connections)
    }

    func close() async { try? await channel.close() }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let connection: Int
        let script: @Sendable (Int, Int, String) -> Action
        private var pending = ""
        private var request = 0

        init(connection: Int, script: @escaping @Sendable (Int, Int, String) -> Action) { (self.connection, self.script) = (connection, script) }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            pending += String(buffer: unwrapInboundIn(data))
            while let end = pending.range(of: "\r\n\r\n") {
                // "\r\n" is one Character to Swift: split on the string, not on "\r".
                let line = pending[..<end.lowerBound].components(separatedBy: "\r\n").first ?? ""
                pending.removeSubrange(..<end.upperBound)
                let action = script(connection, request, line)
                request += 1
                switch action {
                case .respond(let text):
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text)), promise: nil)
                case .respondInTwoParts(let head, let body, let later):
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: head)), promise: nil)
                    context.eventLoop.assumeIsolated().scheduleTask(in: later) {
                        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: body)), promise: nil)
                    }
                case .respondAndClose(let text):
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                    return
                case .close:
                    context.close(promise: nil)
                    return
                case .hold:
                    break
                }
            }
        }
    }
}
