import NIOCore
import Testing

@testable import Tunnel

/// Two nodes' direct-path managers joined by an in-memory network the test controls (which addresses deliver,
/// and what source the receiver sees). Time is passed in explicitly: no test sleeps.
final class DirectPair {
    let aKey = NodePrivateKey.generate()
    let bKey = NodePrivateKey.generate()
    /// What each node announces, and where its probes appear to come from.
    let aEndpoint = Endpoint.udp(address: [192, 0, 2, 1], port: 1000)
    let bEndpoint = Endpoint.udp(address: [192, 0, 2, 2], port: 2000)
    let a: DirectPaths
    let b: DirectPaths
    var now = ContinuousClock.now
    /// Datagrams to these destinations are lost.
    var cut: Set<Endpoint> = []
    /// Routes each side chose, latest last.
    var aRoutes: [Endpoint] = []
    var bRoutes: [Endpoint] = []
    /// Probe datagrams sent by either side.
    var probesSent = 0
    /// Data flows between the two unless a test pauses it (then it last flowed at `pausedAt`).
    var pausedAt: ContinuousClock.Instant?
    var lastData: ContinuousClock.Instant? { pausedAt ?? now }

    init(aBlocked: Bool = false, bBlocked: Bool = false) {
        a = DirectPaths(privateKey: aKey, configuration: .init(blocked: aBlocked))
        b = DirectPaths(privateKey: bKey, configuration: .init(blocked: bBlocked))
    }

    var aDERP: Endpoint { .derp(region: 1, node: bKey.publicKey) }
    var bDERP: Endpoint { .derp(region: 1, node: aKey.publicKey) }

    /// Each side learns the other from the coordinator: its home region and announced endpoint (`announce`: whether
    /// b announces one; a node behind NAT announces an address a cannot reach).
    func introduce(bAnnounces: Bool = true) {
        deliver(a.configure(bKey.publicKey, derp: aDERP, candidates: bAnnounces ? [bEndpoint] : [], now: now), from: .a)
        deliver(b.configure(aKey.publicKey, derp: bDERP, candidates: [aEndpoint], now: now), from: .b)
    }

    enum Side { case a, b }

    /// Carries out outputs: routes are recorded, probes delivered (unless cut) with their answers, recursively.
    func deliver(_ outputs: [DirectPaths.Output], from side: Side) {
        for output in outputs {
            switch output {
            case .route(_, let endpoint): side == .a ? aRoutes.append(endpoint) : bRoutes.append(endpoint)
            case .transmit(let datagram, let destination):
                probesSent += 1
                guard !cut.contains(destination) else { continue }
                switch (side, destination) {
                case (.a, bEndpoint): deliver(b.receive(datagram, from: aEndpoint, now: now), from: .b)
                case (.b, aEndpoint): deliver(a.receive(datagram, from: bEndpoint, now: now), from: .a)
                default: continue  // nobody there
                }
            }
        }
    }

    func advance(_ duration: Duration, receipts: Bool = false) {
        let step = Duration.milliseconds(100)
        var elapsed = Duration.zero
        while elapsed < duration {
            now += step
            elapsed += step
            deliver(a.tick(now: now, lastReceipt: { _ in nil }, lastData: { _ in self.lastData }), from: .a)
            deliver(b.tick(now: now, lastReceipt: { _ in nil }, lastData: { _ in self.lastData }), from: .b)
        }
    }
}

@Suite struct DirectPathTests {
    @Test func probesRoundTripAndRejectForgeries() throws {
        let (a, b, stranger) = (NodePrivateKey.generate(), NodePrivateKey.generate(), NodePrivateKey.generate())
        let key = try #require(DirectProbe.key(a, b.publicKey))
        #expect(DirectProbe.key(b, a.publicKey) == key)
        let observed = Endpoint.udp(address: [203, 0, 113, 7], port: 41641)
        let pong = DirectProbe.seal(.pong(txid: Array(repeating: 7, count: 12), observed: observed), from: a.publicKey, key: key)
        #expect(DirectProbe.sender(of: pong) == a.publicKey)
        #expect(DirectProbe.open(pong, key: key) == .pong(txid: Array(repeating: 7, count: 12), observed: observed))
        #expect(DirectProbe.open(pong, key: DirectProbe.key(stranger, b.publicKey)!) == nil)
        var tampered = pong
        tampered[tampered.count - 1] ^= 1
        #expect(DirectProbe.open(tampered, key: key) == nil)
        #expect(WireGuardMessage.type(of: pong) == nil)  // the socket tells probes from WireGuard by the first byte
    }

    /// Both sides start on DERP; the first probe round finds the direct path and both switch to it.
    @Test func derpFirstThenDirect() {
        let pair = DirectPair()
        pair.introduce()
        #expect(pair.aRoutes == [pair.aDERP] && pair.bRoutes == [pair.bDERP])
        pair.advance(.milliseconds(100))
        #expect(pair.aRoutes.last == pair.bEndpoint && pair.bRoutes.last == pair.aEndpoint)
        #expect(pair.a.directPath(of: pair.bKey.publicKey)?.endpoint == pair.bEndpoint)
        // Heartbeats keep it: a minute later nothing changed.
        pair.advance(.seconds(60))
        #expect(pair.aRoutes.count == 2 && pair.bRoutes.count == 2)
    }

    /// A node behind NAT announces nothing reachable; its ping shows its peer where it is, and both go direct.
    @Test func peerReflexiveAddressIsLearnedFromPings() {
        let pair = DirectPair()
        pair.introduce(bAnnounces: false)
        pair.advance(.milliseconds(500))
        #expect(pair.bRoutes.last == pair.aEndpoint)
        #expect(pair.aRoutes.last == pair.bEndpoint)
    }

    /// Cut the direct path: after the trust window both fall back to DERP; probes back off; once the path heals,
    /// a later round finds it again.
    @Test func fallsBackToDERPAndRetriesWithBackoff() {
        let pair = DirectPair()
        pair.introduce()
        pair.advance(.milliseconds(100))
        pair.cut = [pair.aEndpoint, pair.bEndpoint]
        pair.advance(DirectPathTimers.trustWindow - .seconds(1))
        #expect(pair.aRoutes.last == pair.bEndpoint)  // two lost heartbeats are not a failure
        pair.advance(.seconds(2))
        #expect(pair.aRoutes.last == pair.aDERP && pair.bRoutes.last == pair.bDERP)
        // Rounds back off: 1 s, 2 s, 4 s, … while the path is down.
        pair.advance(.seconds(20))
        #expect(pair.a.peers[pair.bKey.publicKey]!.backoff >= .seconds(16))
        pair.cut = []
        pair.advance(DirectPathTimers.maximumBackoff)
        #expect(pair.aRoutes.last == pair.bEndpoint && pair.bRoutes.last == pair.aEndpoint)
    }

    /// A peer that announces other endpoints (it restarted on another port) loses the direct path at once.
    @Test func withdrawnEndpointEndsTheDirectPath() {
        let pair = DirectPair()
        pair.introduce()
        pair.advance(.milliseconds(100))
        #expect(pair.aRoutes.last == pair.bEndpoint)
        let moved = Endpoint.udp(address: [192, 0, 2, 2], port: 2001)
        #expect(pair.a.configure(pair.bKey.publicKey, derp: pair.aDERP, candidates: [moved], now: pair.now) == [.route(pair.bKey.publicKey, via: pair.aDERP)])
        #expect(pair.a.directPath(of: pair.bKey.publicKey) == nil)
    }

    /// Authenticated WireGuard traffic from the direct endpoint keeps it alive even when pongs are lost.
    @Test func trafficCountsAsLiveness() {
        let pair = DirectPair()
        pair.introduce()
        pair.advance(.milliseconds(100))
        pair.cut = [pair.aEndpoint, pair.bEndpoint]
        for _ in 0..<100 {
            pair.now += .milliseconds(100)
            _ = pair.a.tick(now: pair.now, lastReceipt: { _ in (pair.bEndpoint, pair.now) }, lastData: { _ in pair.now })
        }
        #expect(pair.a.directPath(of: pair.bKey.publicKey)?.endpoint == pair.bEndpoint)
    }

    /// No data for `idleTimeout`: both sides rest on DERP and send nothing more; data again finds the path at once.
    @Test func idlePeersAreNotProbed() {
        let pair = DirectPair()
        pair.introduce()
        pair.advance(.milliseconds(100))
        pair.pausedAt = pair.now
        pair.advance(DirectPathTimers.idleTimeout - .seconds(1))
        #expect(pair.aRoutes.last == pair.bEndpoint, "heartbeats until then")
        pair.advance(.seconds(2))
        #expect(pair.aRoutes.last == pair.aDERP && pair.bRoutes.last == pair.bDERP)
        let sent = pair.probesSent
        pair.advance(.seconds(300))
        #expect(pair.probesSent == sent, "nothing while idle")
        pair.pausedAt = nil
        pair.advance(.milliseconds(100))
        #expect(pair.aRoutes.last == pair.bEndpoint && pair.bRoutes.last == pair.aEndpoint)
    }

    /// A peer that never sent data is not probed either; one without a relay keeps its direct path however idle.
    @Test func idleWithoutRelayKeepsTheDirectPath() {
        let pair = DirectPair()
        pair.pausedAt = pair.now - DirectPathTimers.idleTimeout
        pair.introduce()
        pair.advance(.seconds(5))
        #expect(pair.probesSent == 0)
        _ = pair.a.configure(pair.bKey.publicKey, derp: nil, candidates: [pair.bEndpoint], now: pair.now)
        _ = pair.b.configure(pair.aKey.publicKey, derp: nil, candidates: [pair.aEndpoint], now: pair.now)
        pair.advance(.milliseconds(100))
        #expect(pair.a.directPath(of: pair.bKey.publicKey)?.endpoint == pair.bEndpoint)
        pair.advance(.seconds(120))
        #expect(pair.a.directPath(of: pair.bKey.publicKey)?.endpoint == pair.bEndpoint)
    }

    /// Blocked on either side: no probes are sent or answered, and everything stays on DERP.
    @Test(arguments: [(true, false), (false, true)]) func blockedStaysOnDERP(aBlocked: Bool, bBlocked: Bool) {
        let pair = DirectPair(aBlocked: aBlocked, bBlocked: bBlocked)
        pair.introduce()
        pair.advance(.seconds(10))
        #expect(pair.aRoutes == [pair.aDERP] && pair.bRoutes == [pair.bDERP])
    }

    /// A pong from an address other than the one pinged proves nothing and is ignored.
    @Test func pongFromElsewhereIsIgnored() {
        let pair = DirectPair()
        _ = pair.a.configure(pair.bKey.publicKey, derp: pair.aDERP, candidates: [pair.bEndpoint], now: pair.now)
        _ = pair.b.configure(pair.aKey.publicKey, derp: pair.bDERP, candidates: [], now: pair.now)
        pair.now += .milliseconds(100)
        let pings = pair.a.tick(now: pair.now, lastReceipt: { _ in nil }, lastData: { _ in pair.now })
        guard case .transmit(let ping, _) = pings.first else { Issue.record("no ping"); return }
        let answers = pair.b.receive(ping, from: pair.aEndpoint, now: pair.now)
        guard case .transmit(let pong, _) = answers.first else { Issue.record("no pong"); return }
        #expect(pair.a.receive(pong, from: .udp(address: [198, 51, 100, 9], port: 9), now: pair.now).isEmpty)
        #expect(pair.a.directPath(of: pair.bKey.publicKey) == nil)
        #expect(pair.a.receive(pong, from: pair.bEndpoint, now: pair.now) == [.route(pair.bKey.publicKey, via: pair.bEndpoint)])
    }

    @Test func endpointText() {
        #expect(Endpoint(text: "203.0.113.7:41641") == .udp(address: [203, 0, 113, 7], port: 41641))
        #expect(Endpoint(text: "[2001:db8::1]:5") == .udp(address: [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [1], port: 5))
        #expect(Endpoint(text: "example.com:5") == nil && Endpoint(text: "1.2.3.4") == nil)
    }

    /// Socket addresses and endpoints convert through the raw `sockaddr` bytes, as the text forms agree.
    @Test func endpointSocketAddresses() throws {
        for (text, port) in [("203.0.113.7", 41641), ("2001:db8::1", 5), ("::ffff:192.0.2.1", 65535), ("0.0.0.0", 1)] {
            let address = try SocketAddress(ipAddress: text, port: port)
            let endpoint = try #require(Endpoint(address))
            let bytes = try #require(Endpoint(text: text.contains(":") ? "[\(text)]:1" : "\(text):1").flatMap(\.addressBytes))
            #expect(endpoint == .udp(address: bytes, port: UInt16(port)), "\(text)")
            let back = try #require(endpoint.socketAddress)
            #expect(back.ipAddress == address.ipAddress && back.port == port && back.protocol == address.protocol, "\(text)")
        }
        #expect(Endpoint.derp(region: 1, node: NodePrivateKey.generate().publicKey).socketAddress == nil)
        #expect(Endpoint(try SocketAddress(unixDomainSocketPath: "/tmp/x")) == nil)
    }
}
