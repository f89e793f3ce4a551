import Foundation
import Gateway
import Logging
import NIOCore
import Synchronization
import Testing
import Tunnel

/// WireGuard between two mesh nodes whose only path is the gateway's DERP relay.
@Suite(.serialized) struct DERPPathTests {
    static let region = DERPMap.embeddedRegionID

    /// Two nodes, each with its own DERP link; peers know each other by key and home region only.
    func withNodePair(
        relay: DERPServer,
        links: @escaping @Sendable (MeshNode, MeshNode) -> (any DERPLink, any DERPLink),
        _ body: @escaping @Sendable (MeshNode, MeshNode) async throws -> Void
    ) async throws {
        let a = try await MeshNode.start(privateKey: .generate(), address: .random(), host: "127.0.0.1")
        let b = try await MeshNode.start(privateKey: .generate(), address: .random(), host: "127.0.0.1")
        try await a.addPeer(b.privateKey.publicKey, allowedIPs: [MeshPrefix(b.address, length: 128)!], endpoint: nil)
        try await b.addPeer(a.privateKey.publicKey, allowedIPs: [MeshPrefix(a.address, length: 128)!], endpoint: nil)
        try await a.setDERPEndpoint(region: Self.region, for: b.privateKey.publicKey)
        try await b.setDERPEndpoint(region: Self.region, for: a.privateKey.publicKey)
        let (linkA, linkB) = links(a, b)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await a.runDERP(linkA, region: Self.region) }
            group.addTask { await b.runDERP(linkB, region: Self.region) }
            defer { group.cancelAll() }
            // Until both are logged in the first initiation would be lost and retried only after RekeyTimeout.
            try await eventually("both nodes on the relay") { relay.clientCount == 2 }
            try await body(a, b)
        }
        try await a.close()
        try await b.close()
    }

    /// Pings until one is answered (the first waits for both links to log in and the handshake to run).
    func ping(_ from: MeshNode, _ to: MeshNode) async throws -> Duration {
        var lastError: (any Error)?
        for _ in 0..<20 {
            do { return try await from.ping(to.address, timeout: .milliseconds(500)) } catch { lastError = error }
        }
        throw lastError!
    }

    /// B echoes a stream; A sends `size` bytes, closes its output, and gets them all back.
    func expectEcho(of size: Int, from a: MeshNode, to b: MeshNode) async throws {
        try await b.listen { _ in .accept { $0.pipeline.addHandler(EchoUntilEnd()) } }
        try await expectEchoRoundTrip(of: size) { initializer in
            try await a.openStream(to: b.privateKey.publicKey, service: .other("echo"), initializer: initializer)
        }
    }

    /// Both nodes dial the relay over TLS (Upgrade or WebSocket); pings cross both ways.
    @Test(arguments: [DERPTransport.automatic, .webSocket])
    func wireGuardOverTLSRelay(transport: DERPTransport) async throws {
        let relay = DERPServer(privateKey: .generate())
        try await withRunningGateway(derp: relay) { address, server in
            let logger = Logger(label: "derp-path-test")
            try await withNodePair(relay: relay, links: { a, b in
                let client = { (node: MeshNode) in
                    DERPClient(
                        configuration: .init(url: derpURL(address), privateKey: node.privateKey, trust: pin(server), transport: transport, isHome: true),
                        logger: logger
                    )
                }
                return (client(a), client(b))
            }) { a, b in
                _ = try await ping(a, b)
                _ = try await ping(b, a)
                for _ in 0..<3 { _ = try await ping(a, b) }
                // Handshakes ran over DERP too: it is just another endpoint under WireGuard.
                #expect(try await a.handshakesCompleted(with: b.privateKey.publicKey) >= 1)
                // Mesh streams ride the relayed path unchanged.
                try await expectEcho(of: 1 << 20, from: a, to: b)
            }
            #expect(relay.counters.packetsReceived.load(ordering: .relaxed) > 0)
        }
    }

    /// The gateway's own node uses its relay in-process; a remote node comes in over TLS.
    @Test func inProcessNodeReachesRemoteNode() async throws {
        let relay = DERPServer(privateKey: .generate())
        try await withRunningGateway(derp: relay) { address, server in
            let logger = Logger(label: "derp-path-test")
            try await withNodePair(relay: relay, links: { a, b in
                (
                    DERPInProcessClient(server: relay, privateKey: a.privateKey),
                    DERPClient(configuration: .init(url: derpURL(address), privateKey: b.privateKey, trust: pin(server)), logger: logger)
                )
            }) { a, b in
                _ = try await ping(a, b)
                _ = try await ping(b, a)
            }
        }
    }
}
