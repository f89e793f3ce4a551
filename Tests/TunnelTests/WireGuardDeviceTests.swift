import Testing

@testable import Tunnel

/// Two devices joined by an in-memory link. Time is passed in explicitly: no test sleeps.
final class Pair {
    let aKey = NodePrivateKey.generate()
    let bKey = NodePrivateKey.generate()
    let aAddress = MeshAddress("fd7a:115c:a1e0::a")!
    let bAddress = MeshAddress("fd7a:115c:a1e0::b")!
    let aEndpoint = Endpoint.udp(address: [10, 0, 0, 1], port: 1000)
    let bEndpoint = Endpoint.udp(address: [10, 0, 0, 2], port: 2000)
    let a: WireGuardDevice
    let b: WireGuardDevice
    var now = ContinuousClock.now
    var deliveredToA: [[UInt8]] = []
    var deliveredToB: [[UInt8]] = []
    /// Every datagram that crossed the link, by direction, for replay tests.
    var wireToB: [[UInt8]] = []
    var wireToA: [[UInt8]] = []
    var dropAll = false

    init(configuration: WireGuardDevice.Configuration = .init(), bKnowsA: Bool = true) {
        // Simulated time does not move the wall clock, so TAI64N timestamps come from a counter.
        let clock = TimestampCounter()
        a = WireGuardDevice(privateKey: aKey, configuration: configuration, makeTimestamp: clock.next, random: SplitMix(seed: 1))
        b = WireGuardDevice(privateKey: bKey, configuration: configuration, makeTimestamp: clock.next, random: SplitMix(seed: 2))
        a.addPeer(bKey.publicKey, allowedIPs: [MeshPrefix(bAddress, length: 128)!], endpoint: bEndpoint)
        if bKnowsA { b.addPeer(aKey.publicKey, allowedIPs: [MeshPrefix(aAddress, length: 128)!]) }
    }

    /// Runs outputs through the link until nothing more is sent.
    func run(_ outputs: [WireGuardDevice.Output], from sender: WireGuardDevice) {
        var pending = outputs.map { (sender === a ? "a" : "b", $0) }
        while !pending.isEmpty {
            let (origin, output) = pending.removeFirst()
            switch output {
            case .transmit(let datagram, _):
                guard !dropAll else { continue }
                if origin == "a" {
                    wireToB.append(datagram)
                    pending += b.receive(datagram, from: aEndpoint, now: now).map { ("b", $0) }
                } else {
                    wireToA.append(datagram)
                    pending += a.receive(datagram, from: bEndpoint, now: now).map { ("a", $0) }
                }
            case .deliver(let packet, _):
                if origin == "a" { deliveredToA.append(packet) } else { deliveredToB.append(packet) }
            }
        }
    }

    func packet(from: MeshAddress, to: MeshAddress, _ text: String = "hi") -> [UInt8] {
        UDPDatagram.packet(source: from, destination: to, sourcePort: 1, destinationPort: 2, payload: Array(text.utf8))
    }

    func sendAB(_ text: String = "hi") { run(a.send(packet(from: aAddress, to: bAddress, text), now: now), from: a) }
    func sendBA(_ text: String = "hi") { run(b.send(packet(from: bAddress, to: aAddress, text), now: now), from: b) }
    func advance(_ duration: Duration) {
        now += duration
        run(a.tick(now: now), from: a)
        run(b.tick(now: now), from: b)
    }
}

final class TimestampCounter {
    var seconds: UInt64 = 1_800_000_000
    func next() -> [UInt8] {
        seconds += 1
        return TAI64N.stamp(secondsSince1970: seconds, nanoseconds: 0)
    }
}

@Suite struct WireGuardDeviceTests {
    /// The first packet triggers a handshake, waits for it, then arrives; the responder can answer
    /// once the initiator's first packet confirmed the session.
    @Test func handshakeThenDataBothWays() {
        let pair = Pair()
        pair.sendAB("first")
        #expect(pair.deliveredToB.count == 1)
        #expect(UDPDatagram.decode(pair.deliveredToB[0])?.payload == Array("first".utf8))
        pair.sendBA("answer")
        #expect(UDPDatagram.decode(pair.deliveredToA.last!)?.payload == Array("answer".utf8))
        #expect(pair.a.handshakesCompleted(with: pair.bKey.publicKey) == 1)
        #expect(pair.b.handshakesCompleted(with: pair.aKey.publicKey) == 1)
        // B learned A's endpoint from the handshake (roaming).
        #expect(pair.b.endpoint(of: pair.aKey.publicKey) == pair.aEndpoint)
    }

    /// A replayed transport message is dropped; so is a replayed initiation.
    @Test func replaysAreDropped() {
        let pair = Pair()
        pair.sendAB("once")
        let initiation = pair.wireToB[0]
        let transport = pair.wireToB.last!
        #expect(pair.b.receive(transport, from: pair.aEndpoint, now: pair.now).isEmpty)
        #expect(pair.b.drops[.replayedCounter] == 1)
        pair.now += .seconds(1)
        #expect(pair.b.receive(initiation, from: pair.aEndpoint, now: pair.now).isEmpty)
        #expect(pair.b.drops[.replayedTimestamp] == 1)
        #expect(pair.deliveredToB.count == 1)
    }

    /// Transport messages arriving out of order within the window are all delivered.
    @Test func reorderingWithinWindow() {
        let pair = Pair()
        pair.sendAB("warm-up")
        var held: [[UInt8]] = []
        for index in 0..<50 {
            for case .transmit(let datagram, _) in pair.a.send(pair.packet(from: pair.aAddress, to: pair.bAddress, "\(index)"), now: pair.now) {
                held.append(datagram)
            }
        }
        for datagram in held.reversed() { pair.run(pair.b.receive(datagram, from: pair.aEndpoint, now: pair.now), from: pair.b) }
        #expect(pair.deliveredToB.count == 51)
    }

    /// A peer with a key we do not know gets no handshake and no answer at all.
    @Test func unknownPeerGetsSilence() {
        let pair = Pair(bKnowsA: false)
        pair.sendAB()
        #expect(pair.wireToA.isEmpty)
        #expect(pair.b.drops[.unknownPeer] == 1)
        #expect(pair.deliveredToB.isEmpty)
        // Garbage and wrong-length datagrams are dropped silently too.
        #expect(pair.b.receive([1, 0, 0, 0, 9], from: pair.aEndpoint, now: pair.now).isEmpty)
        #expect(pair.b.receive([UInt8](repeating: 4, count: 40), from: pair.aEndpoint, now: pair.now).isEmpty)
    }

    /// A decrypted packet whose source is outside the sender's allowed IPs is dropped.
    @Test func disallowedSourceIsDropped() {
        let pair = Pair()
        pair.sendAB()
        pair.run(pair.a.send(pair.packet(from: MeshAddress("fd7a:115c:a1e0::99")!, to: pair.bAddress), now: pair.now), from: pair.a)
        #expect(pair.deliveredToB.count == 1)
        #expect(pair.b.drops[.disallowedSource] == 1)
    }

    /// Under load, initiations without a valid mac2 get a cookie reply; the retry carrying the cookie succeeds.
    @Test func cookieReplyUnderLoad() {
        var configuration = WireGuardDevice.Configuration()
        configuration.underLoadInitiationsPerSecond = 0
        let pair = Pair(configuration: configuration)
        pair.sendAB()
        #expect(pair.deliveredToB.isEmpty)
        #expect(pair.wireToA.count == 1 && WireGuardMessage.type(of: pair.wireToA[0]) == .cookieReply)
        pair.advance(.seconds(6))  // retransmission, now with mac2
        #expect(pair.deliveredToB.count == 1)
        #expect(pair.b.handshakesCompleted(with: pair.aKey.publicKey) == 1)
    }

    /// No response: retransmit every RekeyTimeout (+ jitter), give up after RekeyAttemptTime and drop the queue.
    @Test func handshakeRetransmitAndGiveUp() {
        let pair = Pair()
        pair.dropAll = true
        pair.sendAB()
        pair.dropAll = false
        var initiations = 0
        pair.b.removePeer(pair.aKey.publicKey)  // B will stay silent
        for _ in 0..<1000 {  // 100 s in the 100 ms steps MeshNode ticks at
            let before = pair.wireToB.count
            pair.advance(.milliseconds(100))
            initiations += pair.wireToB.count - before
        }
        // Every 5 s + jitter (< 334 ms) until 90 s after the first: 16 or 17 retransmissions.
        #expect((16...17).contains(initiations))
        #expect(pair.a.drops[.handshakeGaveUp] == 1)
        let quiet = pair.wireToB.count
        pair.advance(.seconds(30))
        #expect(pair.wireToB.count == quiet)
    }

    /// Keepalive after KeepaliveTimeout of receiving without sending; rekey after RekeyAfterTime;
    /// keys erased after 3 × RejectAfterTime.
    @Test func timers() {
        let pair = Pair()
        pair.sendAB()
        let toA = pair.wireToA.count
        pair.advance(.seconds(9))
        #expect(pair.wireToA.count == toA)
        pair.advance(.seconds(2))
        #expect(pair.wireToA.count == toA + 1)  // B's keepalive

        pair.advance(.seconds(110))  // session now 121 s old
        pair.sendAB("after rekey time")
        #expect(pair.a.handshakesCompleted(with: pair.bKey.publicKey) == 2)
        #expect(pair.deliveredToB.count == 2)

        pair.advance(.seconds(541))
        #expect(!pair.a.hasSession(with: pair.bKey.publicKey))
        pair.sendAB("new session")
        #expect(pair.deliveredToB.count == 3)
    }

    /// Sending into silence: after KeepaliveTimeout + RekeyTimeout without an answer, a new handshake starts.
    @Test func newHandshakeWhenUnanswered() {
        let pair = Pair()
        pair.sendAB()
        pair.dropAll = true
        pair.sendAB()
        let before = pair.wireToB.count
        pair.dropAll = false
        pair.advance(.seconds(16))
        #expect(WireGuardMessage.type(of: pair.wireToB[before]) == .initiation)
    }

    /// A forced rekey mid-stream loses nothing.
    @Test func forcedRekeyKeepsTrafficFlowing() {
        let pair = Pair()
        for index in 0..<10 {
            pair.sendAB("\(index)")
            if index == 4 {
                pair.now += .seconds(1)  // past the responder's 50 ms initiation flood guard
                pair.run(pair.a.forceHandshake(with: pair.bKey.publicKey, now: pair.now), from: pair.a)
            }
            pair.sendBA("\(index)")
        }
        #expect(pair.deliveredToB.count == 10 && pair.deliveredToA.count == 10)
        #expect(pair.a.handshakesCompleted(with: pair.bKey.publicKey) == 2)
    }

    /// Sessions are refused past RejectAfterTime even if nothing else happened.
    @Test func staleSessionIsRefused() {
        let pair = Pair()
        pair.sendAB()
        var held: [UInt8] = []
        for case .transmit(let datagram, _) in pair.a.send(pair.packet(from: pair.aAddress, to: pair.bAddress), now: pair.now) { held = datagram }
        pair.now += .seconds(181)
        #expect(pair.b.receive(held, from: pair.aEndpoint, now: pair.now).isEmpty)
        #expect(pair.b.drops[.expiredSession] == 1)
    }
}

@Suite struct HandshakeRateLimitTests {
    /// A second valid initiation within 50 ms of the last is dropped; after it, accepted.
    @Test func initiationFloodGuard() {
        let pair = Pair()
        pair.sendAB()
        pair.now += .milliseconds(10)
        pair.run(pair.a.forceHandshake(with: pair.bKey.publicKey, now: pair.now), from: pair.a)
        #expect(pair.b.drops[.initiationFlood] == 1)
        #expect(pair.a.handshakesCompleted(with: pair.bKey.publicKey) == 1)
        pair.now += .milliseconds(100)
        pair.run(pair.a.forceHandshake(with: pair.bKey.publicKey, now: pair.now), from: pair.a)
        #expect(pair.a.handshakesCompleted(with: pair.bKey.publicKey) == 2)
    }

    /// The initiator sends at most one initiation per RekeyTimeout on its own (data does not spam handshakes).
    @Test func initiatorRateLimit() {
        let pair = Pair()
        var transmitted = 0
        for _ in 0..<20 { transmitted += pair.a.send(pair.packet(from: pair.aAddress, to: pair.bAddress), now: pair.now).count }
        #expect(transmitted == 1)  // one initiation; the packets wait in the queue
        pair.now += .seconds(1)
        #expect(pair.a.tick(now: pair.now).isEmpty)
    }
}

@Suite struct RoamingAndHostileInputTests {
    /// The peer's endpoint follows its latest authenticated packet; unauthenticated packets move nothing.
    @Test func endpointFollowsAuthenticatedPackets() {
        let pair = Pair()
        pair.sendAB()
        let moved = Endpoint.udp(address: [192, 0, 2, 7], port: 4000)
        for case .transmit(let datagram, _) in pair.a.send(pair.packet(from: pair.aAddress, to: pair.bAddress), now: pair.now) {
            var forged = datagram
            forged[forged.count - 1] ^= 1
            _ = pair.b.receive(forged, from: Endpoint.udp(address: [203, 0, 113, 9], port: 666), now: pair.now)
            #expect(pair.b.endpoint(of: pair.aKey.publicKey) == pair.aEndpoint)
            _ = pair.b.receive(datagram, from: moved, now: pair.now)
        }
        #expect(pair.b.endpoint(of: pair.aKey.publicKey) == moved)
    }

    /// Random bytes, truncations and bit flips of real messages never crash the device and get no answer.
    @Test(arguments: [11, 12, 13]) func randomInputIsHarmless(seed: UInt64) {
        var rng = SplitMix(seed: seed)
        let pair = Pair()
        pair.sendAB()
        let samples = pair.wireToB + pair.wireToA
        for _ in 0..<5_000 {
            var datagram: [UInt8]
            if Bool.random(using: &rng) {
                datagram = (0..<Int.random(in: 0..<300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if !datagram.isEmpty, Bool.random(using: &rng) { datagram[0] = UInt8.random(in: 1...4, using: &rng) }
                if datagram.count >= 4, Bool.random(using: &rng) { datagram[1...3] = [0, 0, 0] }
            } else {
                datagram = samples.randomElement(using: &rng)!
                let flips = Int.random(in: 0...3, using: &rng)
                for _ in 0..<flips where !datagram.isEmpty { datagram[Int.random(in: 0..<datagram.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng) }
                if Bool.random(using: &rng) { datagram = Array(datagram.prefix(Int.random(in: 0...datagram.count, using: &rng))) }
            }
            let outputs = pair.b.receive(datagram, from: Endpoint.udp(address: [198, 51, 100, 1], port: 1), now: pair.now)
            // Nothing is delivered; the only possible answer is a cookie reply to a replayed initiation whose
            // valid mac1 proves its sender knows our key (once the replays put the device under load).
            #expect(outputs.allSatisfy { output in
                if case .transmit(let reply, _) = output { return WireGuardMessage.type(of: reply) == .cookieReply }
                return false
            })
        }
        // The real session still works afterwards.
        pair.sendAB("still here")
        #expect(UDPDatagram.decode(pair.deliveredToB.last!)?.payload == Array("still here".utf8))
    }
}

@Suite struct WireGuardPeerAddressTests {
    /// A node that comes back with a new key takes its address over: the stale peer no longer routes it.
    @Test func aPrefixBelongsToOnePeer() {
        let device = WireGuardDevice(privateKey: .generate())
        let address = MeshAddress.random()
        let (old, new) = (NodePrivateKey.generate().publicKey, NodePrivateKey.generate().publicKey)
        let (oldEndpoint, newEndpoint) = (Endpoint.udp(address: [10, 0, 0, 1], port: 1), Endpoint.udp(address: [10, 0, 0, 2], port: 2))
        device.addPeer(old, allowedIPs: [MeshPrefix(address, length: 128)!], endpoint: oldEndpoint)
        device.addPeer(new, allowedIPs: [MeshPrefix(address, length: 128)!], endpoint: newEndpoint)
        #expect(device.meshAddress(of: new) == address)
        #expect(device.meshAddress(of: old) == nil)
        // A packet to the address starts a handshake with the new key, at its endpoint only.
        let packet = UDPDatagram.packet(source: .random(), destination: address, sourcePort: 1, destinationPort: 2, payload: [1])
        let destinations = device.send(packet, now: .now).compactMap { output -> Endpoint? in
            if case .transmit(_, let endpoint) = output { return endpoint }
            return nil
        }
        #expect(destinations == [newEndpoint])
    }
}
