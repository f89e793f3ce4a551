import CSodium
import Foundation
import Testing

@testable import Tunnel

/// Reads a JSON fixture produced by tests/vectors/make_wireguard_vectors.py.
func fixture(_ name: String) throws -> Any {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"))
    return try JSONSerialization.jsonObject(with: Data(contentsOf: url))
}

func hex(_ text: String) -> [UInt8] { Hex.decode(text)! }

@Suite struct BLAKE2sTests {
    /// RFC 7693 Appendix B: BLAKE2s-256("abc").
    @Test func rfc7693AppendixB() {
        #expect(Hex.encode(BLAKE2s.hash(Array("abc".utf8))) == "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
    }

    /// RFC 7693 Appendix E self-test: every output length and key/no-key over the RFC's input sequence,
    /// folded into one grand hash.
    @Test func rfc7693AppendixESelfTest() {
        func sequence(_ length: Int, seed: UInt32) -> [UInt8] {
            var (a, b): (UInt32, UInt32) = (0xDEAD_4BAD &* seed, 1)
            return (0..<length).map { _ in
                let t = a &+ b
                (a, b) = (b, t)
                return UInt8(t >> 24)
            }
        }
        var all: [[UInt8]] = []
        for outLength in [16, 20, 28, 32] {
            for inLength in [0, 3, 64, 65, 255, 1024] {
                let input = sequence(inLength, seed: UInt32(inLength))
                all.append(BLAKE2s.digest(length: outLength, key: [], [input]))
                let key = sequence(outLength, seed: UInt32(outLength))
                all.append(BLAKE2s.digest(length: outLength, key: key, [input]))
            }
        }
        #expect(Hex.encode(BLAKE2s.digest(length: 32, key: [], all)) == "6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe")
    }

    /// Hash, keyed MAC, HMAC and HKDF against Python's hashlib/hmac and an independent HKDF.
    @Test func againstPythonHashlib() throws {
        let cases = try #require(try fixture("blake2s") as? [[String: Any]])
        #expect(cases.count == 7)
        for entry in cases {
            let input = hex(entry["input"] as! String)
            let key = hex(entry["key"] as! String)
            #expect(Hex.encode(BLAKE2s.hash(input)) == entry["hash"] as? String)
            #expect(Hex.encode(BLAKE2s.mac(key: key, input)) == entry["mac"] as? String)
            #expect(Hex.encode(BLAKE2s.hmac(key: key, input)) == entry["hmac"] as? String)
            #expect(BLAKE2s.kdf(3, chainingKey: key, input: input).map(Hex.encode) == entry["kdf3"] as? [String])
        }
    }

    /// Splitting the input across parts must not change the digest.
    @Test func partsConcatenate() {
        let data = Array(0..<200).map { UInt8($0) }
        #expect(BLAKE2s.hash(Array(data[..<7]), Array(data[7..<100]), Array(data[100...])) == BLAKE2s.hash(data))
    }
}

@Suite struct NoiseHandshakeTests {
    /// WireGuard's handshake matches the independent `noiseprotocol` implementation byte for byte:
    /// both messages and the first transport message each way.
    @Test func matchesNoiseprotocol() throws {
        let vector = try #require(try fixture("noise-ikpsk2") as? [String: String])
        let initiator = try #require(NodePrivateKey(bytes: hex(vector["initiator_static_private"]!)))
        let responder = try #require(NodePrivateKey(bytes: hex(vector["responder_static_private"]!)))

        let (initiation, initiatorState) = try Noise.createInitiation(
            localStatic: initiator, remoteStatic: responder.publicKey, ephemeral: hex(vector["initiator_ephemeral_private"]!),
            timestamp: hex(vector["timestamp"]!), senderIndex: 0x1234_5678
        )
        #expect(initiation.count == 148)
        #expect(Hex.encode(Array(initiation[8..<116])) == vector["noise_message1"])

        let (remote, timestamp, responderState) = try Noise.consumeInitiation(initiation, localStatic: responder)
        #expect(remote == initiator.publicKey)
        #expect(Hex.encode(timestamp) == vector["timestamp"])

        let (response, responderKeys) = try Noise.createResponse(
            state: responderState, ephemeral: hex(vector["responder_ephemeral_private"]!), senderIndex: 0x0abc_def0
        )
        #expect(response.count == 92)
        #expect(Hex.encode(Array(response[12..<60])) == vector["noise_message2"])
        #expect(LittleEndian.get32(response, at: 8) == 0x1234_5678)

        let initiatorKeys = try Noise.consumeResponse(response, state: initiatorState, localStatic: initiator)
        #expect(initiatorKeys.send == responderKeys.receive && initiatorKeys.receive == responderKeys.send)
        let ping = AEAD.seal(Array("ping over noise".utf8), counter: 0, key: initiatorKeys.send, associatedData: [])
        #expect(Hex.encode(ping) == vector["initiator_transport0"])
        let pong = AEAD.seal(Array("pong over noise".utf8), counter: 0, key: responderKeys.send, associatedData: [])
        #expect(Hex.encode(pong) == vector["responder_transport0"])
    }

    /// A responder with another key cannot read the initiation.
    @Test func wrongResponderKeyFails() throws {
        let initiator = NodePrivateKey.generate()
        let responder = NodePrivateKey.generate()
        let (initiation, _) = try Noise.createInitiation(
            localStatic: initiator, remoteStatic: responder.publicKey, ephemeral: Curve25519.generatePrivateKey(),
            timestamp: WireGuardDevice.wallClockTimestamp(), senderIndex: 1
        )
        #expect(throws: Noise.Failure.self) { try Noise.consumeInitiation(initiation, localStatic: NodePrivateKey.generate()) }
    }

    /// Without `sodium_init` libsodium keeps its portable reference code (several times slower per packet). Its
    /// CPU feature probe runs only there, so a feature every x86-64 and arm64 CPU has reads as absent until then.
    /// (Exact when run alone: another test in the process may have started libsodium first.)
    @Test func aDeviceStartsLibsodium() {
        _ = WireGuardDevice(privateKey: .generate())
        #if arch(x86_64)
        #expect(sodium_runtime_has_sse2() == 1)
        #elseif arch(arm64)
        #expect(sodium_runtime_has_neon() == 1)
        #endif
    }

    /// In-place AEAD: sealing then opening round-trips; any flipped bit fails.
    @Test func aeadInPlace() {
        let key = AEAD.randomBytes(32)
        let sealed = AEAD.seal(Array("hello".utf8), counter: 7, key: key, associatedData: [1, 2])
        #expect(AEAD.open(sealed, counter: 7, key: key, associatedData: [1, 2]) == Array("hello".utf8))
        #expect(AEAD.open(sealed, counter: 8, key: key, associatedData: [1, 2]) == nil)
        var tampered = sealed
        tampered[0] ^= 1
        #expect(AEAD.open(tampered, counter: 7, key: key, associatedData: [1, 2]) == nil)
        let nonce = AEAD.randomBytes(24)
        let x = AEAD.xSeal([9, 9], nonce: nonce, key: key, associatedData: [3])
        #expect(AEAD.xOpen(x, nonce: nonce, key: key, associatedData: [3]) == [9, 9])
        #expect(AEAD.xOpen(x, nonce: nonce, key: key, associatedData: [4]) == nil)
    }
}

@Suite struct KeyTests {
    @Test func textFormsRoundTrip() throws {
        let key = NodePrivateKey.generate()
        #expect(NodePrivateKey(text: key.text)?.publicKey == key.publicKey)
        #expect(NodePublicKey(text: key.publicKey.text) == key.publicKey)
        #expect(NodePublicKey(base64: key.publicKey.base64) == key.publicKey)
        #expect(!"\(key)".contains(Hex.encode(key.bytes)))
        #expect(NodePublicKey(text: "nodekey:zz") == nil)
    }

    @Test func persistedOnce() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("meshgate-key-\(UUID().uuidString)/node.key").path
        let first = try NodePrivateKey.loadOrCreate(path: path)
        #expect(try NodePrivateKey.loadOrCreate(path: path).publicKey == first.publicKey)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
    }

    @Test func meshAddresses() throws {
        let id = try #require(UUID(uuidString: "12345678-9ABC-DEF0-1122-334455667788"))
        #expect(MeshAddress.agent(id).description == "fd7a:115c:a1e0:def0:1122:3344:5566:7788")
        #expect(MeshAddress.random().isInMeshPrefix)
        let prefix = try #require(MeshPrefix("fd7a:115c:a1e0::/48"))
        #expect(prefix.contains(MeshAddress.random().bytes))
        #expect(!prefix.contains(MeshAddress("fd00::1")!.bytes))
        #expect(MeshPrefix("fd7a:115c:a1e0::1/128")!.contains(MeshAddress("fd7a:115c:a1e0::1")!.bytes))
        #expect(!MeshPrefix("fd7a:115c:a1e0::1/128")!.contains(MeshAddress("fd7a:115c:a1e0::2")!.bytes))
    }
}
