import Foundation
import Gateway
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
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
func pin(_ server: GatewayServer) -> DERPTrust { DERPTrust(certName: server.certificates!.derpCertName) }

func derpURL(_ address: ListenAddress) -> URL { URL(string: "https://127.0.0.1:\(address.port)/derp")! }

/// Polls `condition` until it holds; a guard against hanging, not a timing assertion.
func eventually(_ what: String, within limit: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Sends `text` from `from` to `to` and expects `to` to receive exactly it, from `from`.
func expectRelayed(
    _ text: String, from sender: NodePublicKey, via outbound: NIOAsyncChannelOutboundWriter<DERPFrame>,
    to receiver: NodePublicKey, reading frames: inout NIOAsyncChannelInboundStream<DERPFrame>.AsyncIterator
) async throws {
    try await outbound.write(.sendPacket(destination: receiver, packet: ByteBuffer(string: text)))
    while let frame = try await frames.next() {
        if case .keepAlive = frame { continue }
        guard case .recvPacket(let source, let packet) = frame else { throw TestFailure("expected a packet, got \(frame)") }
        #expect(source == sender && String(buffer: packet) == text)
        return
    }
    throw TestFailure("connection ended before the packet arrived")
}

@Suite(.serialized) struct DERPRelayTests {
    /// Two clients log in over TLS and exchange packets, pings and PeerGone, in both transports.
    @Test(arguments: [DERPTransport.automatic, .webSocket])
    func twoClientsExchangePackets(transport: DERPTransport) async throws {
        let relay = DERPServer(privateKey: .generate())
        try await withRunningGateway(derp: relay) { address, server in
            let alice = NodePrivateKey.generate(), bob = NodePrivateKey.generate()
            let a = try await DERPConnection.dial(url: derpURL(address), privateKey: alice, trust: pin(server), transport: transport)
            let b = try await DERPConnection.dial(url: derpURL(address), privateKey: bob, trust: pin(server), transport: transport)
            #expect(a.serverKey == relay.publicKey)
            #expect(a.transport == (transport == .webSocket ? .webSocket : .upgrade))
            try await a.channel.executeThenClose { aIn, aOut in
                try await b.channel.executeThenClose { bIn, bOut in
                    var bFrames = bIn.makeAsyncIterator()
                    var aFrames = aIn.makeAsyncIterator()
                    try await expectRelayed("hello bob", from: alice.publicKey, via: aOut, to: bob.publicKey, reading: &bFrames)
                    try await expectRelayed("hello alice", from: bob.publicKey, via: bOut, to: alice.publicKey, reading: &aFrames)
                    // A packet larger than one WebSocket message the client would send unfragmented.
                    let big = String(repeating: "x", count: 60_000)
                    try await expectRelayed(big, from: alice.publicKey, via: aOut, to: bob.publicKey, reading: &bFrames)
                    try await bOut.write(.ping([1, 2, 3, 4, 5, 6, 7, 8]))
                    #expect(try await bFrames.next() == .pong([1, 2, 3, 4, 5, 6, 7, 8]))
                    // To a key nobody holds: PeerGone(notHere).
                    try await aOut.write(.sendPacket(destination: NodePrivateKey.generate().publicKey, packet: ByteBuffer(string: "x")))
                    guard case .peerGone(_, let reason)? = try await aFrames.next() else { throw TestFailure("no PeerGone") }
                    #expect(reason == .notHere)
                }
            }
        }
    }

    /// A restarting relay tells its clients when to come back: the client reconnects on its own, says again
    /// that this is its home region, and pings work again.
    @Test func clientReconnectsAfterRestarting() async throws {
        let relay = DERPServer(privateKey: .generate())
        try await withRunningGateway(derp: relay) { address, server in
            let key = NodePrivateKey.generate()
            let client = DERPClient(
                configuration: .init(url: derpURL(address), privateKey: key, trust: pin(server), isHome: true), logger: Logger(label: "test")
            )
            let (events, continuation) = AsyncStream.makeStream(of: DERPClient.Event.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run { continuation.yield($0) } }
                defer { group.cancelAll() }
                var iterator = events.makeAsyncIterator()
                func next(_ what: String, _ matches: (DERPClient.Event) -> Bool) async throws {
                    while let event = await iterator.next() { if matches(event) { return } }
                    throw TestFailure("events ended before \(what)")
                }
                try await next("connected") { if case .connected = $0 { true } else { false } }
                _ = try await client.ping()
                try await eventually("NotePreferred") { relay.isPreferred(key.publicKey) }

                relay.shutdown(reconnectIn: .milliseconds(20))
                try await next("disconnected") { if case .disconnected = $0 { true } else { false } }
                try await next("reconnected") { if case .connected = $0 { true } else { false } }
                _ = try await client.ping()
                try await eventually("NotePreferred again") { relay.isPreferred(key.publicKey) }
            }
        }
    }

    /// A wrong certificate pin refuses the TLS handshake.
    @Test func wrongPinIsRefused() async throws {
        try await withRunningGateway { address, _ in
            await #expect(throws: (any Error).self) {
                _ = try await DERPConnection.dial(url: derpURL(address), privateKey: .generate(), trust: .pinnedSHA256([UInt8](repeating: 0, count: 32)))
            }
        }
    }

    /// A newer connection with the same key replaces the older one, which is closed.
    @Test func newerConnectionReplacesOlder() async throws {
        let relay = DERPServer(privateKey: .generate())
        try await withRunningGateway(derp: relay) { address, server in
            let key = NodePrivateKey.generate()
            let first = try await DERPConnection.dial(url: derpURL(address), privateKey: key, trust: pin(server))
            try await eventually("first registered") { relay.isConnected(key.publicKey) }
            let second = try await DERPConnection.dial(url: derpURL(address), privateKey: key, trust: pin(server))
            try await first.channel.executeThenClose { inbound, _ in
                for try await frame in inbound where frame != .keepAlive { throw TestFailure("unexpected \(frame)") }
            }
            #expect(relay.isConnected(key.publicKey))
            try await second.channel.executeThenClose { _, _ in }
        }
    }

    /// Clients on two meshed relays reach each other with ForwardPacket; a wrong mesh key is refused.
    @Test func meshBetweenServers() async throws {
        let meshKey = String(repeating: "ab", count: 32)
        let relayA = DERPServer(privateKey: .generate(), meshKey: meshKey)
        let relayB = DERPServer(privateKey: .generate(), meshKey: meshKey)
        let logger = Logger(label: "mesh-test")
        try await withRunningGateway(derp: relayA) { addressA, serverA in
            try await withRunningGateway(derp: relayB) { addressB, serverB in
                let peerAB = DERPMeshPeer(server: relayA, url: derpURL(addressB), meshKey: meshKey, trust: pin(serverB), logger: logger)
                let peerBA = DERPMeshPeer(server: relayB, url: derpURL(addressA), meshKey: meshKey, trust: pin(serverA), logger: logger)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await peerAB.run() }
                    group.addTask { await peerBA.run() }
                    defer { group.cancelAll() }

                    let alice = NodePrivateKey.generate(), bob = NodePrivateKey.generate()
                    let a = try await DERPConnection.dial(url: derpURL(addressA), privateKey: alice, trust: pin(serverA))
                    let b = try await DERPConnection.dial(url: derpURL(addressB), privateKey: bob, trust: pin(serverB))
                    try await eventually("each relay learns the other's client") {
                        relayA.isReachableThroughMesh(bob.publicKey) && relayB.isReachableThroughMesh(alice.publicKey)
                    }
                    try await a.channel.executeThenClose { aIn, aOut in
                        try await b.channel.executeThenClose { bIn, bOut in
                            var aFrames = aIn.makeAsyncIterator(), bFrames = bIn.makeAsyncIterator()
                            try await expectRelayed("A to B", from: alice.publicKey, via: aOut, to: bob.publicKey, reading: &bFrames)
                            try await expectRelayed("B to A", from: bob.publicKey, via: bOut, to: alice.publicKey, reading: &aFrames)
                        }
                    }
                    // Bob left B: A hears PeerGone through the mesh and forgets the route.
                    try await eventually("A forgets bob") { !relayA.isReachableThroughMesh(bob.publicKey) }

                    await #expect(throws: (any Error).self) {
                        _ = try await DERPConnection.dial(url: derpURL(addressA), privateKey: .generate(), meshKey: "wrong", trust: pin(serverA))
                    }
                    // Without the mesh key a client may not watch connections: only its own connection closes.
                    let intruder = try await DERPConnection.dial(url: derpURL(addressA), privateKey: .generate(), trust: pin(serverA))
                    try await intruder.channel.executeThenClose { inbound, outbound in
                        try await outbound.write(.watchConns)
                        for try await frame in inbound where frame != .keepAlive { throw TestFailure("unexpected \(frame)") }
                    }
                    #expect(relayA.isReachableThroughMesh(NodePrivateKey.generate().publicKey) == false)
                }
            }
        }
    }

    /// A client that stops reading loses its own oldest packets; another client's packets all arrive.
    @Test func slowClientDropsOnlyItsOwnOldestPackets() async throws {
        var configuration = DERPServer.Configuration()
        configuration.queueDepth = 8
        configuration.writeTimeout = .seconds(60)  // this test is about the queue, not the write deadline
        let relay = DERPServer(privateKey: .generate(), configuration: configuration)
        try await withRunningGateway(derp: relay) { address, server in
            let sender = NodePrivateKey.generate(), slow = NodePrivateKey.generate(), fast = NodePrivateKey.generate()
            let s = try await DERPConnection.dial(url: derpURL(address), privateKey: sender, trust: pin(server))
            let stalled = try await DERPConnection.dial(url: derpURL(address), privateKey: slow, trust: pin(server))
            let f = try await DERPConnection.dial(url: derpURL(address), privateKey: fast, trust: pin(server))
            try await eventually("all registered") { relay.clientCount == 3 }
            let payload = ByteBuffer(repeating: 0x5a, count: 60_000)
            try await s.channel.executeThenClose { _, sOut in
                try await f.channel.executeThenClose { fIn, _ in
                    var fastFrames = fIn.makeAsyncIterator()
                    // 1000 × 60 kB to a client that never reads: its socket, then its queue, fill up. Each round
                    // also sends to the reading client and waits for it, so its packets must all get through.
                    for round in 0..<1_000 {
                        try await sOut.write(.sendPacket(destination: slow.publicKey, packet: payload))
                        try await expectRelayed("fresh \(round)", from: sender.publicKey, via: sOut, to: fast.publicKey, reading: &fastFrames)
                    }
                }
            }
            #expect(relay.counters.dropped(.queueHead) > 0)
            try await stalled.channel.executeThenClose { _, _ in }
        }
    }
}

@Suite struct DERPAcceptRateTests {
    /// A burst of one second's worth is admitted, then one per 1/rate seconds (injected instants, no sleeping).
    @Test func tokenBucket() {
        var configuration = DERPServer.Configuration()
        configuration.acceptRate = 2
        let relay = DERPServer(privateKey: .generate(), configuration: configuration)
        let start = ContinuousClock.now
        #expect(relay.admitConnection(now: start))
        #expect(relay.admitConnection(now: start))
        #expect(!relay.admitConnection(now: start))
        #expect(!relay.admitConnection(now: start + .milliseconds(400)))
        #expect(relay.admitConnection(now: start + .milliseconds(900)))
        #expect(relay.counters.acceptsRefused.load(ordering: .relaxed) == 2)
        #expect(DERPServer(privateKey: .generate()).admitConnection(now: start))  // 0: unlimited
    }
}
