import Foundation
import Gateway
import MeshgateTesting
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Tunnel

/// The gateway's side and an agent's node, joined over loopback UDP (WireGuard and all). The agent forwards
/// `tcp:` streams to 127.0.0.1, except port 9; `dialer` reaches it by the agent ids it was told to answer for.
struct LoopbackAgent {
    let gateway: MeshNode
    let agent: MeshNode
    let dialer: LoopbackAgentDialer

    static func start() async throws -> LoopbackAgent {
        let mesh = try await LoopbackAgentMesh.start()
        let peer = MeshPeer(key: mesh.agent.privateKey.publicKey, address: mesh.agent.address, homeRegion: nil)
        return LoopbackAgent(gateway: mesh.gateway, agent: mesh.agent, dialer: LoopbackAgentDialer(node: mesh.gateway, agent: peer))
    }

    func close() async {
        try? await gateway.close()
        try? await agent.close()
    }
}

/// Stands in for `GatewayMesh` (which finds agents through the coordinator): the ids in `connected` are the
/// one agent node; any other id is not connected, with the mesh's own error.
final class LoopbackAgentDialer: AgentStreamDialer {
    let node: MeshNode
    let agent: MeshPeer
    private let connected = Mutex(Set<UUID>())
    private let opened = Atomic(0)

    init(node: MeshNode, agent: MeshPeer) { (self.node, self.agent) = (node, agent) }

    func connect(_ id: UUID) { _ = connected.withLock { $0.insert(id) } }

    /// Streams opened so far.
    var streamsOpened: Int { opened.load(ordering: .relaxed) }

    func openStream<Output: Sendable>(
        toAgent id: UUID, service: MeshService, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws -> Output {
        guard connected.withLock({ $0.contains(id) }) else { throw GatewayMeshError.agentNotConnected(id) }
        opened.add(1, ordering: .relaxed)
        return try await node.openStream(to: agent, service: service, initializer: initializer)
    }
}

/// The pool's idle sweep on a clock that moves only when a test says so.
final class ManualIdleTimer: IdleStreamTimer {
    private struct Pending {
        let due: NIODeadline
        let fire: @Sendable () -> Void
    }

    private let state = Mutex((now: NIODeadline.uptimeNanoseconds(0), timers: [Pending]()))

    /// Sweeps scheduled and not yet run.
    var count: Int { state.withLock { $0.timers.count } }

    func now() -> NIODeadline { state.withLock { $0.now } }

    func schedule(after delay: Duration, on loop: any EventLoop, _ fire: @escaping @Sendable () -> Void) {
        state.withLock { $0.timers.append(Pending(due: $0.now + TimeAmount(delay), fire: fire)) }
    }

    /// Moves the clock on by `amount` and runs the sweeps due by then.
    func advance(by amount: Duration) {
        let due = state.withLock { state in
            state.now = state.now + TimeAmount(amount)
            let now = state.now
            defer { state.timers.removeAll { $0.due <= now } }
            return state.timers.filter { $0.due <= now }
        }
        for timer in due { timer.fire() }
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that counts its TCP connections. By path: `/close` answers with
/// `Connection: close` and closes, `/big` sends 2 MiB, `/hang` never answers, `/drop-next` answers but drops the
/// connection at its next request (a server timing out keep-alive just as a request arrives); anything else gets
/// `hello from <uri>` with `X-Test: yes`, keep-alive.
final class KeepAliveTestServer: Sendable {
    private let channel: any Channel
    private let connections: Connections

    private init(channel: any Channel, connections: Connections) { (self.channel, self.connections) = (channel, connections) }

    static let bigBodySize = 2 << 20

    static func start() async throws -> KeepAliveTestServer {
        let connections = Connections()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                connections.accepted(channel)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(PathResponder())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return KeepAliveTestServer(channel: channel, connections: connections)
    }

    var port: UInt16 { UInt16(channel.localAddress!.port!) }
    /// TCP connections accepted so far.
    var accepted: Int { connections.state.withLock { $0.accepted } }
    /// TCP connections open now.
    var open: Int { connections.state.withLock { $0.open.count } }

    /// Closes every connection, as a server dropping its idle keep-alive connections does.
    func closeConnections() {
        for connection in connections.state.withLock({ $0.open }) { connection.close(promise: nil) }
    }

    func close() async throws {
        closeConnections()
        try await channel.close()
    }

    private final class Connections: Sendable {
        let state = Mutex((accepted: 0, open: [any Channel]()))

        func accepted(_ channel: any Channel) {
            state.withLock {
                $0.accepted += 1
                $0.open.append(channel)
            }
            channel.closeFuture.whenComplete { _ in self.state.withLock { $0.open.removeAll { $0 === channel } } }
        }
    }

    private final class PathResponder: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        private var uri = "/"
        private var dropNext = false

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): uri = head.uri
            case .body: break
            case .end: respond(context)
            }
        }

        private func respond(_ context: ChannelHandlerContext) {
            guard !dropNext else { return context.close(promise: nil) }
            dropNext = uri == "/drop-next"
            var head = HTTPResponseHead(version: .http1_1, status: .ok)
            let body: ByteBuffer
            switch uri {
            case "/hang":
                return
            case "/big":
                body = ByteBuffer(repeating: UInt8(ascii: "x"), count: KeepAliveTestServer.bigBodySize)
            case "/close":
                head.headers.add(name: "Connection", value: "close")
                body = ByteBuffer(string: "bye")
            default:
                head.headers.add(name: "X-Test", value: "yes")
                body = ByteBuffer(string: "hello from \(uri)")
            }
            head.headers.add(name: "Content-Length", value: "\(body.readableBytes)")
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            let done = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
            if !head.isKeepAlive { done.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
        }
    }
}

/// A port that was free a moment ago.
func unusedLocalPort() async throws -> UInt16 {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
    let port = UInt16(channel.localAddress!.port!)
    try await channel.close()
    return port
}
