@testable import AppProxy
import Foundation
import MeshgateTesting
import Testing
import Tunnel

/// Fixtures shared by the token, cookie and app-connect tests.
enum TokenFixtures {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    static let pathRequest = AppRequest(accessMethod: .path, user: "alice", workspace: "dev", agent: "main", target: .app(slug: "code"), basePath: "/@alice/dev.main/apps/code/")
    static let token = SignedAppToken(
        request: pathRequest, userID: UUID(uuidString: "6f1c2b8e-3d4a-4b5c-9e7f-0a1b2c3d4e5f")!,
        workspaceID: UUID(uuidString: "11111111-2222-4333-8444-555555555555")!, agentID: UUID(uuidString: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")!,
        upstream: .init(port: 8080, https: false, pathPrefix: "/ui"), expiry: t0 + 60
    )
    /// Computed with Python's hmac/hashlib: key bytes 0…63, kid 7, the claims of `token` as
    /// `json.dumps(claims, sort_keys=True, separators=(',', ':'))`.
    static let vector =
        "eyJhbGciOiJIUzUxMiIsImtpZCI6IjciLCJ0eXAiOiJKV1QifQ."
        + "eyJhZ2VudF9pZCI6ImFhYWFhYWFhLWJiYmItNGNjYy04ZGRkLWVlZWVlZWVlZWVlZSIsImV4cCI6MTgwMDAwMDA2MCwicmVxdWVzdCI6eyJhY2Nlc3NfbWV0aG9kIjoicGF0aCIsImFnZW50IjoibWFpbiIsImJhc2VfcGF0aCI6Ii9AYWxpY2UvZGV2Lm1haW4vYXBwcy9jb2RlLyIsInRhcmdldCI6eyJraW5kIjoiYXBwIiwic2x1ZyI6ImNvZGUifSwidXNlciI6ImFsaWNlIiwid29ya3NwYWNlIjoiZGV2In0sInVwc3RyZWFtIjp7Imh0dHBzIjpmYWxzZSwicGF0aF9wcmVmaXgiOiIvdWkiLCJwb3J0Ijo4MDgwfSwidXNlcl9pZCI6IjZmMWMyYjhlLTNkNGEtNGI1Yy05ZTdmLTBhMWIyYzNkNGU1ZiIsIndvcmtzcGFjZV9pZCI6IjExMTExMTExLTIyMjItNDMzMy04NDQ0LTU1NTU1NTU1NTU1NSJ9."
        + "GZJyQyERqKdNlFd9LqcgTuVl9FTHLTA2L0PFG518039OjAEPBYulGv-wtnsla7hrZWNxlybojx2jmxjeaEd4bw"

    static func key(_ sequence: Int, startsAt: Date = t0 - 3600, expiresAt: Date = t0 + 86_400, length: Int = 64, fill: UInt8? = nil) -> AppCryptoKey {
        AppCryptoKey(sequence: sequence, secret: (0..<length).map { fill ?? UInt8($0) }, startsAt: startsAt, expiresAt: expiresAt)
    }

    static func signingKeyring(_ keys: AppCryptoKey..., now: Date = t0) -> AppTokenKeyring { AppTokenKeyring(keys: keys, now: now)! }
}

@Suite struct AppTokenJWSTests {
    typealias F = TokenFixtures

    /// The format, proven against an independent implementation: our signature equals Python's, byte for byte.
    @Test func knownVector() throws {
        let keyring = F.signingKeyring(F.key(7))
        #expect(try keyring.sign(F.token) == F.vector)
        #expect(keyring.verify(F.vector, now: F.t0, for: F.pathRequest) == F.token)
        let header = try #require(Base64URL.decode(F.vector.split(separator: ".")[0]))
        #expect(String(decoding: header, as: UTF8.self) == #"{"alg":"HS512","kid":"7","typ":"JWT"}"#)
    }

    @Test func roundTripsEveryTargetAndSignsWithTheCurrentKey() throws {
        let keyring = F.signingKeyring(F.key(1, fill: 1), F.key(2, fill: 2), F.key(3, startsAt: F.t0 + 600, fill: 3))
        #expect(keyring.current.sequence == 2)
        let port = AppRequest(accessMethod: .subdomain, user: "alice", workspace: "dev", agent: "main", target: .port(8443, https: true), basePath: "/")
        let slugLikeAPort = AppRequest(accessMethod: .path, user: "bob", workspace: "w", agent: nil, target: .app(slug: "8080"), basePath: "/@bob/w/apps/8080/")
        for request in [F.pathRequest, port, slugLikeAPort] {
            var token = F.token
            token.request = request
            let text = try keyring.sign(token)
            #expect(AppTokenJWS.keySequence(of: text) == 2)
            #expect(keyring.verify(text, now: F.t0 + 59, for: request) == token)
        }
        // An app that answers CORS itself says so in the token (the fast path has no store); simple ones leave the
        // claim out, which is why the known vector above did not change.
        var passthru = F.token
        passthru.upstream.cors = .passthru
        let text = try keyring.sign(passthru)
        #expect(keyring.verify(text, now: F.t0, for: F.pathRequest)?.upstream.cors == .passthru)
        #expect(String(decoding: Base64URL.decode(text.split(separator: ".")[1])!, as: UTF8.self).contains(#""cors":"passthru""#))
    }

    @Test func expiredTokensAndKeysAreRefused() throws {
        let keyring = F.signingKeyring(F.key(7, expiresAt: F.t0 + 30))
        #expect(keyring.verify(F.vector, now: F.t0 + 29, for: F.pathRequest) != nil)
        // The token lives to t0+60, but its key expires at t0+30.
        #expect(keyring.verify(F.vector, now: F.t0 + 30, for: F.pathRequest) == nil)
        let longKey = F.signingKeyring(F.key(7))
        #expect(longKey.verify(F.vector, now: F.t0 + 59.9, for: F.pathRequest) != nil)
        #expect(longKey.verify(F.vector, now: F.t0 + 60, for: F.pathRequest) == nil)
    }

    /// A token for one app never opens another: every field of the request is bound.
    @Test func otherAppsAreRefused() {
        let keyring = F.signingKeyring(F.key(7))
        var others: [AppRequest] = []
        for change in 0..<7 {
            var other = F.pathRequest
            switch change {
            case 0: other.accessMethod = .subdomain
            case 1: other.basePath = "/@alice/dev.main/apps/other/"
            case 2: other.user = "bob"
            case 3: other.workspace = "prod"
            case 4: other.agent = nil
            case 5: other.target = .app(slug: "other")
            default: other.target = .port(8080, https: false)
            }
            others.append(other)
        }
        for other in others { #expect(keyring.verify(F.vector, now: F.t0, for: other) == nil, "\(other)") }
    }

    @Test func tamperingIsRefused() throws {
        let keyring = F.signingKeyring(F.key(7))
        let parts = F.vector.split(separator: ".").map(String.init)
        func encode(_ text: String) -> String { Base64URL.encode(text.utf8) }
        var payload = String(decoding: Base64URL.decode(parts[1])!, as: UTF8.self)
        payload = payload.replacingOccurrences(of: "1800000060", with: "1900000060")
        let cases = [
            // A longer life in the payload, old signature.
            "\(parts[0]).\(encode(payload)).\(parts[2])",
            // alg none, no signature; and alg none with the old signature.
            "\(encode(#"{"alg":"none","kid":"7","typ":"JWT"}"#)).\(parts[1]).",
            "\(encode(#"{"alg":"none","kid":"7","typ":"JWT"}"#)).\(parts[1]).\(parts[2])",
            // HS256 with the same key material.
            "\(encode(#"{"alg":"HS256","kid":"7","typ":"JWT"}"#)).\(parts[1]).\(parts[2])",
            // Unknown and odd key ids.
            "\(encode(#"{"alg":"HS512","kid":"8","typ":"JWT"}"#)).\(parts[1]).\(parts[2])",
            "\(encode(#"{"alg":"HS512","kid":"07","typ":"JWT"}"#)).\(parts[1]).\(parts[2])",
            "\(encode(#"{"alg":"HS512","kid":7,"typ":"JWT"}"#)).\(parts[1]).\(parts[2])",
            "\(encode(#"{"alg":"HS512","kid":"-7","typ":"JWT"}"#)).\(parts[1]).\(parts[2])",
            // Padding, a fourth part, a truncated signature, nothing.
            F.vector + "=", F.vector + ".x", String(F.vector.dropLast(2)), "", "..", "a.b.c",
        ]
        for text in cases { #expect(keyring.verify(text, now: F.t0, for: F.pathRequest) == nil, "\(text)") }
        // The same claims signed with another secret under the same kid.
        let impostor = F.signingKeyring(F.key(7, fill: 0xAA))
        #expect(keyring.verify(try impostor.sign(F.token), now: F.t0, for: F.pathRequest) == nil)
        // No key of the keyring: kid 7 unknown.
        #expect(F.signingKeyring(F.key(6)).verify(F.vector, now: F.t0, for: F.pathRequest) == nil)
    }

    /// Random bytes and every kind of edit to a valid token: nothing verifies, nothing traps.
    @Test func fuzzing() {
        let keyring = F.signingKeyring(F.key(7))
        var random = SplitMix64(seed: 42)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\"é\u{0}")
        for _ in 0..<2000 {
            let length = Int.random(in: 0...300, using: &random)
            let junk = String((0..<length).map { _ in alphabet.randomElement(using: &random)! })
            #expect(keyring.verify(junk, now: F.t0, for: F.pathRequest) == nil)
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            #expect(keyring.verify(String(decoding: bytes, as: UTF8.self), now: F.t0, for: F.pathRequest) == nil)
        }
        let valid = Array(F.vector)
        for _ in 0..<5000 {
            var mutated = valid
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let index = Int.random(in: 0..<mutated.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: mutated[index] = alphabet.randomElement(using: &random)!
                case 1: mutated.insert(alphabet.randomElement(using: &random)!, at: index)
                default: if mutated.count > 1 { mutated.remove(at: index) }
                }
            }
            guard mutated != valid else { continue }
            #expect(keyring.verify(String(mutated), now: F.t0, for: F.pathRequest) == nil, "\(String(mutated))")
        }
        #expect(keyring.verify(String(valid), now: F.t0, for: F.pathRequest) != nil)
        #expect(keyring.verify(String(repeating: "a", count: AppTokenJWS.maximumLength + 1), now: F.t0, for: F.pathRequest) == nil)
    }
}

@Suite struct AppKeyringTests {
    typealias F = TokenFixtures

    @Test func currentKeyIsTheNewestStartedOne() {
        let keys = [F.key(1), F.key(2, startsAt: F.t0 - 10), F.key(3, startsAt: F.t0 + 10), F.key(4, expiresAt: F.t0 - 1), F.key(5, length: 32)]
        let keyring = AppTokenKeyring(keys: keys, now: F.t0)!
        #expect(keyring.current.sequence == 2)
        // Expired and malformed keys are gone; the announced one verifies already.
        #expect(keyring.keys.map(\.sequence) == [1, 2, 3])
        #expect(keyring.key(sequence: 3, now: F.t0) != nil && keyring.key(sequence: 4, now: F.t0) == nil)
        #expect(keyring.key(sequence: 1, now: F.t0 + 86_400) == nil)
        // Only announced keys: the earliest signs.
        #expect(AppTokenKeyring(keys: [F.key(9, startsAt: F.t0 + 20), F.key(8, startsAt: F.t0 + 10)], now: F.t0)?.current.sequence == 8)
        #expect(AppTokenKeyring(keys: [F.key(4, expiresAt: F.t0)], now: F.t0) == nil)
        #expect(AppConnectKeyring(keys: [F.key(1)], now: F.t0) == nil)  // 64 bytes is no AES-256 key
    }

    @Test func secretsStayOutOfDescriptions() {
        let key = F.key(1, fill: 0xEE)
        for text in ["\(key)", String(reflecting: key), { var out = ""; dump(key, to: &out); return out }()] {
            #expect(!text.contains("238, 238") && !text.contains("secret"), "\(text)")
        }
    }

    /// A token naming a key newer than the cache reloads once; older unknown keys (deleted) never do.
    @Test func unknownNewerKeyReloads() async throws {
        let source = FakeKeys(cached: [F.key(6, fill: 6)], stored: [F.key(6, fill: 6), F.key(7)])
        #expect(try await source.verify(F.vector, now: F.t0, for: F.pathRequest) == F.token)
        #expect(await source.reloads == 1)
        let older = try F.signingKeyring(F.key(5, fill: 5)).sign(F.token)
        #expect(try await source.verify(older, now: F.t0, for: F.pathRequest) == nil)
        #expect(try await source.verify("junk", now: F.t0, for: F.pathRequest) == nil)
        #expect(await source.reloads == 1)
    }
}

actor FakeKeys: AppKeys {
    var cached: [AppCryptoKey]
    let stored: [AppCryptoKey]
    var reloads = 0

    init(cached: [AppCryptoKey], stored: [AppCryptoKey]) { (self.cached, self.stored) = (cached, stored) }

    func keyring() async throws -> AppTokenKeyring { AppTokenKeyring(keys: cached, now: TokenFixtures.t0)! }
    func keyring(including sequence: Int) async throws -> AppTokenKeyring {
        reloads += 1
        cached = stored
        return try await keyring()
    }
}

@Suite struct Base64URLTests {
    @Test func matchesFoundationAndIsStrict() {
        var random = SplitMix64(seed: 7)
        for length in 0..<100 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            let expected = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
            #expect(Base64URL.encode(bytes) == expected)
            #expect(Base64URL.decode(expected) == bytes)
        }
        for bad in ["A", "AB=", "AB==", "A+", "A/", "AB C", "AA\n", "AB", "AAB"] { #expect(Base64URL.decode(bad) == nil, "\(bad)") }
        #expect(Base64URL.decode("AA") == [0] && Base64URL.decode("AAA") == [0, 0])
    }
}

/// The gate's cache of verified tokens: a hit skips the keys, but never outlives the token or its key, and never
/// opens another app.
@Suite struct VerifiedAppTokensTests {
    typealias F = TokenFixtures

    @Test func aVerifiedTokenIsServedFromTheCache() async throws {
        let cache = VerifiedAppTokens()
        let source = CountingKeys(keys: [F.key(7)])
        #expect(try await source.verify(F.vector, now: F.t0, for: F.pathRequest, cache: cache) == F.token)
        #expect(try await source.verify(F.vector, now: F.t0 + 30, for: F.pathRequest, cache: cache) == F.token)
        #expect(await source.loads == 1 && cache.count == 1)
        // The same text for another app: refused, from the cache as from the keys.
        var other = F.pathRequest
        other.target = .app(slug: "other")
        #expect(try await source.verify(F.vector, now: F.t0, for: other, cache: cache) == nil)
        // One character off is another text: verified afresh, and refused.
        var forged = Array(F.vector.utf8)
        forged[forged.count - 2] = forged[forged.count - 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(try await source.verify(String(decoding: forged, as: UTF8.self), now: F.t0, for: F.pathRequest, cache: cache) == nil)
        #expect(await source.loads == 2 && cache.count == 1)
    }

    /// The token expires at t0 + 60: the cache forgets it then, and the keys refuse it.
    @Test func entriesEndWithTheToken() async throws {
        let cache = VerifiedAppTokens()
        let source = CountingKeys(keys: [F.key(7)])
        #expect(try await source.verify(F.vector, now: F.t0 + 59, for: F.pathRequest, cache: cache) != nil)
        #expect(try await source.verify(F.vector, now: F.t0 + 60, for: F.pathRequest, cache: cache) == nil)
        #expect(cache.count == 0)
    }

    /// A key that expires before the token (the end of a rotation's overlap) ends the entry with it.
    @Test func entriesEndWithTheKey() async throws {
        let cache = VerifiedAppTokens()
        let source = CountingKeys(keys: [F.key(7, expiresAt: F.t0 + 30)])
        #expect(try await source.verify(F.vector, now: F.t0, for: F.pathRequest, cache: cache) != nil)
        #expect(cache.token(for: F.vector, now: F.t0 + 29) != nil)
        #expect(cache.token(for: F.vector, now: F.t0 + 30) == nil)
    }

    /// Full of live tokens, the cache starts over rather than grow.
    @Test func staysWithinItsCapacity() {
        let cache = VerifiedAppTokens(capacity: 4)
        for index in 0..<4 { cache.insert("t\(index)", token: F.token, keyExpiry: F.t0 + 3600, now: F.t0) }
        #expect(cache.count == 4)
        cache.insert("t4", token: F.token, keyExpiry: F.t0 + 3600, now: F.t0)
        #expect(cache.count == 1 && cache.token(for: "t4", now: F.t0) == F.token)
        // Expired entries go first when it fills up.
        for index in 5..<8 { cache.insert("t\(index)", token: F.token, keyExpiry: F.t0 + 3600, now: F.t0) }
        var later = F.token
        later.expiry = F.t0 + 200
        cache.insert("later", token: later, keyExpiry: F.t0 + 3600, now: F.t0 + 61)
        #expect(cache.count == 1 && cache.token(for: "later", now: F.t0 + 61) == later, "the other tokens expired at t0 + 60")
    }
}

actor CountingKeys: AppKeys {
    let keys: [AppCryptoKey]
    var loads = 0

    init(keys: [AppCryptoKey]) { self.keys = keys }

    func keyring() async throws -> AppTokenKeyring {
        loads += 1
        return AppTokenKeyring(keys: keys, now: TokenFixtures.t0)!
    }
    func keyring(including sequence: Int) async throws -> AppTokenKeyring { try await keyring() }
}
