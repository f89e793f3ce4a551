import Foundation
import Gateway
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Testing
import Tunnel

/// The gateway's own mesh node reaches an agent node whose only path is the gateway's relay (the agent logs in
/// over TLS, as one behind NAT would), and opens a `tcp:PORT` stream to a TCP service behind it.
@Suite(.timeLimit(.minutes(1))) struct GatewayMeshTests {
    /// A running gateway with its relay, the gateway's mesh node (with `coordinator`, if any), and an agent node
    /// whose only path is the relay over TLS (as one behind NAT would have), serving `tcp:PORT` in front of an
    /// echo server on 127.0.0.1. `body` gets the mesh, the agent and the echo server's port.
    /// With `direct`, both nodes use it (and the gateway's binds loopback, like the agent's).
    func withGatewayAndAgent(
        agentAddress: MeshAddress = .random(), coordinator: Coordinator? = nil, direct: DirectPathConfiguration? = nil,
        _ body: @escaping @Sendable (GatewayMesh, MeshNode, UInt16) async throws -> Void
    ) async throws {
        let relay = DERPServer(privateKey: .generate())
        let echo = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { $0.pipeline.addHandler(EchoUntilEnd()) }
            .bind(host: "127.0.0.1", port: 0).get()
        try await withRunningGateway(derp: relay) { address, server in
            let logger = Logger(label: "gateway-mesh-test")
            let region = DERPMap.embeddedRegionID
            let mesh = try await GatewayMesh.start(
                privateKey: .generate(), address: .random(), relay: relay, region: region, coordinator: coordinator, direct: direct ?? .init(),
                host: direct == nil ? "0.0.0.0" : "127.0.0.1", logger: logger
            )
            let agent = try await MeshNode.start(privateKey: .generate(), address: agentAddress, host: "127.0.0.1", direct: direct ?? .init())
            try await agent.listen { MeshTCPForward().decision(for: $0) ?? .refuse(reason: "tcp only") }
            let agentLink = DERPClient(configuration: .init(url: derpURL(address), privateKey: agent.privateKey, trust: pin(server), isHome: true), logger: logger)
            let meshService = ServiceGroup(configuration: .init(services: [mesh], logger: logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await meshService.run() }
                tasks.addTask { await agent.runDERP(agentLink, region: region) }
                try await eventually("both nodes on the relay") { relay.clientCount == 2 }
                try await body(mesh, agent, UInt16(echo.localAddress!.port!))
                await meshService.triggerGracefulShutdown()
                tasks.cancelAll()
            }
            try await agent.close()
        }
        try await echo.close()
    }

    @Test func dialsAServiceBehindAnAgent() async throws {
        try await withGatewayAndAgent { mesh, agent, port in
            try await agent.ensurePeer(mesh.peer)  // what the coordinator would tell the agent
            let agentPeer = MeshPeer(key: agent.privateKey.publicKey, address: agent.address, homeRegion: DERPMap.embeddedRegionID)
            try await expectEchoRoundTrip(of: 200_000) { initializer in
                try await mesh.openStream(to: agentPeer, service: .tcp(port: port), initializer: initializer)
            }
        }
    }

    /// Through the coordinator: the agent joins as itself and publishes its node; the gateway dials it by id,
    /// which asks for a tunnel, learns the agent's node, and opens the stream. The agent learns the gateway's
    /// node the same way. An agent the coordinator does not know fails with a clear error at once, not after the
    /// lookup timeout.
    @Test func dialsAnAgentByIDThroughTheCoordinator() async throws {
        try await withAgentInCoordinator { mesh, agentID, port in
            try await expectEchoRoundTrip(of: 100_000) { initializer in
                try await mesh.openStream(toAgent: agentID, service: .tcp(port: port), initializer: initializer)
            }
            let started = ContinuousClock.now
            await #expect(throws: GatewayMeshError.self) {
                _ = try await mesh.openStream(toAgent: UUID(), service: .tcp(port: 1)) { $0.eventLoop.makeSucceededFuture(()) }
            }
            #expect(ContinuousClock.now - started < GatewayMesh.agentLookupTimeout)
        }
    }

    /// `withGatewayAndAgent` with a coordinator, which the agent joins in-process as a fresh agent id: it publishes
    /// its node and applies the peers it is told about. `body` gets the mesh, the agent's id and the echo port.
    /// With `direct`, the agent announces its endpoints and takes the gateway's, as a real agent does.
    func withAgentInCoordinator(
        direct: DirectPathConfiguration? = nil, _ body: @escaping @Sendable (GatewayMesh, UUID, UInt16) async throws -> Void
    ) async throws {
        let coordinator = Coordinator(authorizer: TunnelPolicy { _, _ in false }, clock: SystemWallClock())
        let agentID = UUID()
        try await withGatewayAndAgent(agentAddress: .agent(agentID), coordinator: coordinator, direct: direct) { mesh, agent, port in
            let exchangesEndpoints = direct != nil
            let (connection, updates) = await coordinator.connect(.agent(agentID, workspaceID: UUID(), ownerID: UUID()))
            let node = CoordinatorNode(
                key: agent.privateKey.publicKey, addresses: [MeshPrefix(agent.address, length: 128)!], homeRegion: DERPMap.embeddedRegionID,
                endpoints: exchangesEndpoints ? agent.localEndpoints() : [], version: "test"
            )
            await coordinator.receive(Array(CoordinatorWire.encode(CoordinatorRequest.updateSelf(node)).utf8), from: connection)
            let applying = Task {
                for await case .message(.peerUpdates(let peerUpdates)) in updates {
                    for case .node(let peer) in peerUpdates {
                        try await agent.ensurePeer(MeshPeer(
                            key: peer.key, address: peer.addresses[0].address, homeRegion: peer.homeRegion,
                            endpoints: exchangesEndpoints ? peer.endpoints : []
                        ))
                    }
                }
            }
            defer { applying.cancel() }
            try await body(mesh, agentID, port)
            await coordinator.release(connection)
        }
    }
}

/// Opens a stream with `open`, sends `size` bytes, closes its output, and expects them all back (the far end
/// echoes until the input ends).
func expectEchoRoundTrip(
    of size: Int,
    _ open: (@escaping @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<ByteBuffer, ByteBuffer>>) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer>
) async throws {
    let stream = try await open { channel in
        channel.eventLoop.makeCompletedFuture {
            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
        }
    }
    let sent = ByteBuffer(bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) })
    let received = try await stream.executeThenClose { inbound, outbound in
        try await outbound.write(sent)
        outbound.finish()
        var received = ByteBuffer()
        for try await var chunk in inbound { received.writeBuffer(&chunk) }
        return received
    }
    #expect(received == sent)
}

/// Echoes, and half-closes its output when the input ends.
final class EchoUntilEnd: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent { context.close(mode: .output, promise: nil) }
    }
}
