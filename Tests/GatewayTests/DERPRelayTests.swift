import Foundation
import Gateway
import Logging
import NIOCore
import ServiceLifecycle
import Testing
import Tunnel

/// A real gateway (TLS on port 0, self-signed certificate) running in-process for the length of `body`.
func withRunningGateway(
    derp: DERPServer = DERPServer(privateKey: .generate()), _ body: @escaping @Sendable (ListenAddress, GatewayServer) async throws -> Void
) async throws {
    let deployment = try Deployment()
    var environment = deployment.environment
    environment.configuration.tlsAddress = ListenAddress(host: "127.0.0.1", port: 0)
    environment.configuration.accessURL = URL(string: "https://localhost")!
    environment.derp = DERPService(server: derp)
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    let server = try GatewayServer(environment: environment, metricsRegistry: nil, logger: logger)
    let (ready, readyContinuation) = AsyncStream.makeStream(of: ListenAddress.self)
    let group = ServiceGroup(
        configuration: .init(services: server.services { addresses in readyContinuation.yield(addresses[.tls]!) }, logger: logger)
    )
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var iterator = ready.makeAsyncIterator()
        let address = try #require(await iterator.next())
        defer { Task { await group.triggerGracefulShutdown() } }
        try await body(address, server)
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}

/// The pin for the gateway's current certificate, as a DERP map's CertName would carry it.
func pin(_ server: GatewayServer) -> DERPTrust {
    let hex = server.certificates!.currentFingerprint.replacingOccurrences(of: ":", with: "").lowercased()
    return DERPTrust(certName: "sha256-raw:" + hex)
}

@Suite(.serialized) struct DERPRelayTests {
    /// Two clients log in over TLS with `Upgrade: DERP` and exchange packets through the relay.
    @Test func twoClientsExchangePacketsOverUpgrade() async throws {
        let relay = DERPServer(privateKey: .generate())
        try await withRunningGateway(derp: relay) { address, server in
            let url = URL(string: "https://127.0.0.1:\(address.port)/derp")!
            let alice = NodePrivateKey.generate(), bob = NodePrivateKey.generate()
            let a = try await DERPConnection.dial(url: url, privateKey: alice, trust: pin(server))
            let b = try await DERPConnection.dial(url: url, privateKey: bob, trust: pin(server))
            #expect(a.serverKey == relay.publicKey)
            try await a.channel.executeThenClose { aIn, aOut in
                try await b.channel.executeThenClose { bIn, bOut in
                    try await aOut.write(.sendPacket(destination: bob.publicKey, packet: ByteBuffer(string: "hello bob")))
                    var bFrames = bIn.makeAsyncIterator()
                    guard case .recvPacket(let source, let packet)? = try await bFrames.next() else { Issue.record("no packet"); return }
                    #expect(source == alice.publicKey && String(buffer: packet) == "hello bob")
                    try await bOut.write(.ping([1, 2, 3, 4, 5, 6, 7, 8]))
                    #expect(try await bFrames.next() == .pong([1, 2, 3, 4, 5, 6, 7, 8]))
                    // To a key nobody holds: PeerGone(notHere).
                    try await aOut.write(.sendPacket(destination: NodePrivateKey.generate().publicKey, packet: ByteBuffer(string: "x")))
                    var aFrames = aIn.makeAsyncIterator()
                    guard case .peerGone(_, let reason)? = try await aFrames.next() else { Issue.record("no PeerGone"); return }
                    #expect(reason == .notHere)
                }
            }
        }
    }

    /// A wrong certificate pin refuses the TLS handshake.
    @Test func wrongPinIsRefused() async throws {
        try await withRunningGateway { address, _ in
            let url = URL(string: "https://127.0.0.1:\(address.port)/derp")!
            await #expect(throws: (any Error).self) {
                _ = try await DERPConnection.dial(url: url, privateKey: .generate(), trust: .pinnedSHA256([UInt8](repeating: 0, count: 32)))
            }
        }
    }
}
