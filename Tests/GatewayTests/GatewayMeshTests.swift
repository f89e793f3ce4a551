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
    @Test func dialsAServiceBehindAnAgent() async throws {
        let relay = DERPServer(privateKey: .generate())
        let echo = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { $0.pipeline.addHandler(EchoUntilEnd()) }
            .bind(host: "127.0.0.1", port: 0).get()
        try await withRunningGateway(derp: relay) { address, server in
            let logger = Logger(label: "gateway-mesh-test")
            let region = DERPMap.embeddedRegionID
            let mesh = try await GatewayMesh.start(privateKey: .generate(), address: .random(), relay: relay, region: region, logger: logger)
            let agent = try await MeshNode.start(privateKey: .generate(), address: .random(), host: "127.0.0.1")
            let agentPeer = MeshPeer(key: agent.privateKey.publicKey, address: agent.address, homeRegion: region)
            try await agent.ensurePeer(mesh.peer)  // what the coordinator will tell the agent
            try await agent.listen { MeshTCPForward().decision(for: $0) ?? .refuse(reason: "tcp only") }
            let agentLink = DERPClient(configuration: .init(url: derpURL(address), privateKey: agent.privateKey, trust: pin(server), isHome: true), logger: logger)
            let meshService = ServiceGroup(configuration: .init(services: [mesh], logger: logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await meshService.run() }
                tasks.addTask { await agent.runDERP(agentLink, region: region) }
                try await eventually("both nodes on the relay") { relay.clientCount == 2 }
                try await expectEchoRoundTrip(of: 200_000) { initializer in
                    try await mesh.openStream(to: agentPeer, service: .tcp(port: UInt16(echo.localAddress!.port!)), initializer: initializer)
                }
                await meshService.triggerGracefulShutdown()
                tasks.cancelAll()
            }
            try await agent.close()
        }
        try await echo.close()
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
