import Foundation
import Gateway
import MeshgateTesting
import NIOCore
import Synchronization
import Testing
import Tunnel

/// Two real mesh nodes on loopback, both on one DERP relay (in-process), as the coordinator would introduce them:
/// DERP carries the first packets, a direct UDP path takes over once probes answer, DERP comes back when the direct
/// path is cut, and a blocked node never leaves DERP. Real time, with generous upper bounds; the timers themselves
/// are tested on an injected clock in DirectPathTests.
@Suite(.serialized, .timeLimit(.minutes(1))) struct DirectPathIntegrationTests {
    static let region = DERPMap.embeddedRegionID

    func withNodes(
        aBlocked: Bool = false, _ body: @escaping @Sendable (MeshNode, MeshNode, DERPServer) async throws -> Void
    ) async throws {
        let relay = DERPServer(privateKey: .generate())
        let a = try await MeshNode.start(privateKey: .generate(), address: .random(), host: "127.0.0.1", direct: .init(blocked: aBlocked, includeLoopback: true))
        let b = try await MeshNode.start(privateKey: .generate(), address: .random(), host: "127.0.0.1", direct: .init(includeLoopback: true))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await a.runDERP(DERPInProcessClient(server: relay, privateKey: a.privateKey), region: Self.region) }
            group.addTask { await b.runDERP(DERPInProcessClient(server: relay, privateKey: b.privateKey), region: Self.region) }
            defer { group.cancelAll() }
            try await eventually("both nodes on the relay") { relay.clientCount == 2 }
            try await body(a, b, relay)
        }
        try await a.close()
        try await b.close()
    }

    func peer(_ node: MeshNode, endpoints: [String]) -> MeshPeer {
        MeshPeer(key: node.privateKey.publicKey, address: node.address, homeRegion: Self.region, endpoints: endpoints)
    }

    func relayed(_ relay: DERPServer) -> Int { relay.counters.packetsReceived.load(ordering: .relaxed) }

    func pingUntilAnswered(_ from: MeshNode, _ to: MeshNode) async throws {
        for attempt in 1...20 {
            do { _ = try await from.ping(to.address, timeout: .milliseconds(500)); return } catch { if attempt == 20 { throw error } }
        }
    }

    func waitForPath(_ node: MeshNode, to peer: MeshNode, _ matches: @escaping @Sendable (Endpoint?) -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while !matches(try await node.path(to: peer.privateKey.publicKey)) {
            guard ContinuousClock.now < deadline else { throw TestFailure("path of \(node.address) to \(peer.address) never changed") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    static func isDirect(_ endpoint: Endpoint?) -> Bool { if case .udp = endpoint { true } else { false } }
    static func isDERP(_ endpoint: Endpoint?) -> Bool { if case .derp = endpoint { true } else { false } }

    /// Introduced without endpoints the nodes talk over DERP; once each learns the other's, both go direct, pings
    /// and a stream no longer touch the relay, and the path shows the probes' round trip.
    @Test func derpFirstThenDirect() async throws {
        try await withNodes { a, b, relay in
            try await a.ensurePeer(peer(b, endpoints: []))
            try await b.ensurePeer(peer(a, endpoints: []))
            try await pingUntilAnswered(a, b)
            #expect(Self.isDERP(try await a.path(to: b.privateKey.publicKey)) && relayed(relay) > 0)

            #expect(a.localEndpoints() == ["127.0.0.1:\(a.localPort!)"])
            try await a.ensurePeer(peer(b, endpoints: b.localEndpoints()))
            try await b.ensurePeer(peer(a, endpoints: a.localEndpoints()))
            try await waitForPath(a, to: b, Self.isDirect)
            try await waitForPath(b, to: a, Self.isDirect)
            #expect(try await a.path(to: b.privateKey.publicKey) == .udp(address: [127, 0, 0, 1], port: UInt16(b.localPort!)))
            let direct = try #require(try await a.directPath(to: b.privateKey.publicKey))
            #expect(direct.rtt.map { $0 > .zero && $0 < .seconds(1) } == true)

            let before = relayed(relay)
            for _ in 0..<5 { _ = try await a.ping(b.address, timeout: .seconds(2)) }
            try await b.listen { _ in .accept { $0.pipeline.addHandler(EchoUntilEnd()) } }
            try await expectEchoRoundTrip(of: 1 << 20) { initializer in
                try await a.openStream(to: b.privateKey.publicKey, service: .other("echo"), initializer: initializer)
            }
            #expect(relayed(relay) == before)
        }
    }

    /// B is known to A only through an impairment link (as if B were behind a middlebox); B finds A from A's
    /// probes, so every direct packet crosses the link. Closing the link cuts the direct path: both sides fall back
    /// to DERP within the trust window, and the mesh keeps working.
    @Test func fallsBackToDERPWhenTheDirectPathIsCut() async throws {
        try await withNodes { a, b, relay in
            let link = try await ImpairmentLink.start(
                upstream: try SocketAddress(ipAddress: "127.0.0.1", port: b.localPort!), forward: .none, backward: .none
            )
            try await a.ensurePeer(peer(b, endpoints: ["127.0.0.1:\(link.port)"]))
            try await b.ensurePeer(peer(a, endpoints: []))
            // Data first: peers that exchange none are not probed.
            try await pingUntilAnswered(a, b)
            try await waitForPath(a, to: b, Self.isDirect)
            try await waitForPath(b, to: a, Self.isDirect)
            #expect(try await a.path(to: b.privateKey.publicKey) == .udp(address: [127, 0, 0, 1], port: UInt16(link.port)))

            try await link.close()
            let cut = ContinuousClock.now
            try await waitForPath(a, to: b, Self.isDERP)
            try await waitForPath(b, to: a, Self.isDERP)
            #expect(ContinuousClock.now - cut > .seconds(5))  // heartbeats lost within the trust window are tolerated
            let before = relayed(relay)
            try await pingUntilAnswered(a, b)
            try await pingUntilAnswered(b, a)
            #expect(relayed(relay) > before)
        }
    }

    /// A node with direct paths blocked announces nothing and answers no probe: both stay on DERP, still working.
    @Test func blockedNodeStaysOnDERP() async throws {
        try await withNodes(aBlocked: true) { a, b, relay in
            #expect(a.localEndpoints().isEmpty)
            try await a.ensurePeer(peer(b, endpoints: b.localEndpoints()))
            try await b.ensurePeer(peer(a, endpoints: ["127.0.0.1:\(a.localPort!)"]))  // even if it were told where A is
            try await pingUntilAnswered(a, b)
            try await Task.sleep(for: DirectPathTimers.initialBackoff * 3)  // rounds of B's probes come and go
            #expect(Self.isDERP(try await a.path(to: b.privateKey.publicKey)))
            #expect(Self.isDERP(try await b.path(to: a.privateKey.publicKey)))
            try await pingUntilAnswered(b, a)
        }
    }
}
