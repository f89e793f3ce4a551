@testable import AppProxy
import Foundation
import MeshgateTesting
import Testing

@Suite struct AppTokenCookieTests {
    typealias F = TokenFixtures
    let wildcard = AppHostname(pattern: "*.apps.example.com")!
    let subdomainRequest = AppRequest(accessMethod: .subdomain, user: "alice", workspace: "dev", agent: "main", target: .app(slug: "code"), basePath: "/")

    /// Path apps: the fixed name, limited to the app's base path.
    @Test func pathAppCookie() {
        let cookie = AppTokenCookie(for: F.pathRequest, wildcardHost: wildcard, secure: true)
        #expect(cookie.name == "meshgate_signed_app_token")
        #expect(cookie.setCookie("a.b.c") == "meshgate_signed_app_token=a.b.c; Path=/@alice/dev.main/apps/code/; Max-Age=60; HttpOnly; SameSite=Lax; Secure")
        #expect(cookie.expired == "meshgate_signed_app_token=; Path=/@alice/dev.main/apps/code/; Max-Age=0; HttpOnly; SameSite=Lax; Secure")
        let plain = AppTokenCookie(for: F.pathRequest, wildcardHost: nil, secure: false)
        #expect(!plain.setCookie("x").contains("Secure") && plain.maxAge == Int(SignedAppToken.lifetime))
    }

    /// Subdomain apps: host-only (no Domain), the whole host (Path=/), named after the wildcard host.
    @Test func subdomainAppCookie() {
        let cookie = AppTokenCookie(for: subdomainRequest, wildcardHost: wildcard, secure: true)
        #expect(cookie.name.hasPrefix("meshgate_signed_app_token_") && cookie.name.count == "meshgate_signed_app_token_".count + 8)
        #expect(cookie.name.dropFirst("meshgate_signed_app_token_".count).allSatisfy { $0.isHexDigit && !$0.isUppercase })
        let header = cookie.setCookie("t")
        #expect(header == "\(cookie.name)=t; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure")
        #expect(!header.contains("Domain"))
        // Stable for one wildcard (any spelling of it), different for another.
        #expect(AppTokenCookie.subdomainName(wildcardHost: AppHostname(pattern: "https://*.Apps.Example.com:443")) == cookie.name)
        #expect(AppTokenCookie.subdomainName(wildcardHost: AppHostname(pattern: "*.eu.apps.example.com")) != cookie.name)
        #expect(AppTokenCookie.subdomainName(wildcardHost: AppHostname(pattern: "*-apps.example.com")) != cookie.name)
    }

    @Test func unsafePathCharactersAreEncoded() {
        #expect(AppTokenCookie.cookiePath("/a;b, c\"\r\né/") == "/a%3Bb%2C%20c%22%0D%0A%C3%A9/")
        #expect(AppTokenCookie.cookiePath("x") == "/x")
    }
}

@Suite struct AppConnectKeyTests {
    typealias F = TokenFixtures
    let host = "code--main--dev--alice.apps.example.com"
    let keyring = AppConnectKeyring(keys: [F.key(3, length: 32, fill: 3)], now: F.t0)!

    @Test func opensForTheRightHostWithinAMinute() throws {
        let sealed = try AppConnectKey(credential: "abcdefghij-0123456789abcdefghijkl", host: "Code--Main--Dev--Alice.Apps.Example.com.:443", now: F.t0).seal(with: keyring)
        #expect(sealed.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        #expect(AppConnectKey.open(sealed, keys: keyring, now: F.t0, expectedHost: host) == "abcdefghij-0123456789abcdefghijkl")
        #expect(AppConnectKey.open(sealed, keys: keyring, now: F.t0 + 59, expectedHost: "CODE--main--dev--alice.apps.example.com:8443") != nil)
        #expect(AppConnectKey.open(sealed, keys: keyring, now: F.t0 + 60, expectedHost: host) == nil)
        for other in ["term--main--dev--alice.apps.example.com", "code--main--dev--bob.apps.example.com", "apps.example.com", ""] {
            #expect(AppConnectKey.open(sealed, keys: keyring, now: F.t0, expectedHost: other) == nil, "\(other)")
        }
        // Another key (unknown sequence, or same sequence and another secret) opens nothing.
        #expect(AppConnectKey.open(sealed, keys: AppConnectKeyring(keys: [F.key(4, length: 32, fill: 3)], now: F.t0)!, now: F.t0, expectedHost: host) == nil)
        #expect(AppConnectKey.open(sealed, keys: AppConnectKeyring(keys: [F.key(3, length: 32, fill: 9)], now: F.t0)!, now: F.t0, expectedHost: host) == nil)
    }

    /// Sealed before a rotation, opened after it: the old key still opens while it is valid.
    @Test func opensWithAnOlderKeyOfTheKeyring() throws {
        let sealed = try AppConnectKey(credential: "c", host: host, now: F.t0).seal(with: keyring)
        let rotated = AppConnectKeyring(keys: [F.key(3, length: 32, fill: 3), F.key(4, startsAt: F.t0, length: 32, fill: 4)], now: F.t0 + 1)!
        #expect(rotated.current.sequence == 4)
        #expect(AppConnectKey.open(sealed, keys: rotated, now: F.t0 + 1, expectedHost: host) == "c")
    }

    @Test func tamperingAndJunkOpenNothing() throws {
        let sealed = try AppConnectKey(credential: "abcdefghij-0123456789abcdefghijkl", host: host, now: F.t0).seal(with: keyring)
        let bytes = Base64URL.decode(sealed)!
        for index in bytes.indices {
            var flipped = bytes
            flipped[index] ^= 0x01
            #expect(AppConnectKey.open(Base64URL.encode(flipped), keys: keyring, now: F.t0, expectedHost: host) == nil, "byte \(index)")
        }
        var random = SplitMix64(seed: 99)
        for _ in 0..<2000 {
            let junk = (0..<Int.random(in: 0...200, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            #expect(AppConnectKey.open(Base64URL.encode(junk), keys: keyring, now: F.t0, expectedHost: host) == nil)
            #expect(AppConnectKey.open(String(decoding: junk, as: UTF8.self), keys: keyring, now: F.t0, expectedHost: host) == nil)
        }
        #expect(AppConnectKey.open(sealed + "A", keys: keyring, now: F.t0, expectedHost: host) == nil)
        #expect(AppConnectKey.open(String(repeating: "A", count: 4000), keys: keyring, now: F.t0, expectedHost: host) == nil)
    }

    @Test func appendingTheQueryItem() {
        func append(_ url: String) -> String { AppConnectKey.appendingQueryItem(name: "meshgate_app_key", value: "K-_1", to: url) }
        #expect(append("https://h.example.com/") == "https://h.example.com/?meshgate_app_key=K-_1")
        #expect(append("https://h.example.com") == "https://h.example.com?meshgate_app_key=K-_1")
        #expect(append("https://h.example.com/p?a=1") == "https://h.example.com/p?a=1&meshgate_app_key=K-_1")
        #expect(append("https://h.example.com/p?") == "https://h.example.com/p?meshgate_app_key=K-_1")
        #expect(append("https://h.example.com/p?a=1#frag?x") == "https://h.example.com/p?a=1&meshgate_app_key=K-_1#frag?x")
        #expect(AppConnectKey.appendingQueryItem(name: "a b", value: "c&d=e", to: "/") == "/?a%20b=c%26d%3De")
    }

    @Test func removingTheQueryItem() {
        func strip(_ target: String) -> String { AppConnectKey.removingQueryItem(from: target) }
        #expect(strip("/p?meshgate_app_key=abc") == "/p")
        #expect(strip("/p?a=1&meshgate_app_key=abc&b=2") == "/p?a=1&b=2")
        #expect(strip("/p?meshgate_app_key=abc&a=%20&meshgate_app_key&b") == "/p?a=%20&b")
        #expect(strip("/p?meshgate%5Fapp%5Fkey=abc&x=meshgate_app_key") == "/p?x=meshgate_app_key")
        #expect(strip("https://h.example.com/p?meshgate_app_key=1#f") == "https://h.example.com/p#f")
        #expect(strip("/p?meshgate_app_keys=1&a") == "/p?meshgate_app_keys=1&a")
        #expect(strip("/p") == "/p" && strip("/p?") == "/p" && strip("/p?a=1") == "/p?a=1")
        // Round trip: what auth-redirect appends, the app host strips, leaving the URL as it was.
        for url in ["https://h/", "https://h/p?a=1", "https://h/p?a=1&b=2#x"] {
            #expect(strip(AppConnectKey.appendingQueryItem(name: AppConnectKey.queryItemName, value: "K", to: url)) == url)
        }
    }
}
