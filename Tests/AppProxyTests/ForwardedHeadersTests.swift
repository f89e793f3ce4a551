import Foundation
import HTTPTypes
import NIOHTTP1
import Testing
import Tunnel

@testable import AppProxy

/// Header hygiene as pure functions: what an app receives for what a browser sent, and the other way.
@Suite struct ForwardedHeadersTests {
    let origin = ForwardingOrigin(clientAddress: "192.0.2.7", scheme: "https", host: "code--main--dev--alice.apps.example.com")

    func forwarded(_ pairs: [(String, String)], purpose: ForwardedHeaders.Purpose = .http) -> [(String, String)] {
        ForwardedHeaders.request(HTTPHeaders(pairs), purpose: purpose, upstreamHost: "127.0.0.1:8080", origin: origin).map { ($0.name, $0.value) }
    }

    func names(_ pairs: [(String, String)]) -> [String] { pairs.map(\.0) }

    /// Hop-by-hop headers go, with every header `Connection` lists; `TE: trailers` alone survives `TE`.
    @Test func removesHopByHopHeaders() {
        let result = forwarded([
            ("Host", "code--main--dev--alice.apps.example.com"), ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"), ("Proxy-Authorization", "Basic eA=="), ("Proxy-Connection", "keep-alive"), ("TE", "trailers, deflate"),
            ("Trailer", "X-Checksum"), ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("Expect", "100-continue"), ("X-App", "kept"),
            ("Accept", "text/html"),
        ])
        #expect(result.first! == ("Host", "127.0.0.1:8080"))
        #expect(names(result) == ["Host", "X-App", "Accept", "TE", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"])
        #expect(result.contains { $0 == ("TE", "trailers") })
    }

    /// Every meshgate header and cookie goes, whatever the case; the app's own cookies stay, joined into one
    /// header as HTTP/1.1 wants (HTTP/2 sends each in its own field).
    @Test func removesMeshgateCredentials() {
        let result = forwarded([
            ("Meshgate-Session-Token", "abc-def"), ("meshgate-agent-token", "ghi"), ("MESHGATE-SOMETHING-NEW", "x"),
            ("Cookie", "meshgate_session_token=abc-def; theme=dark; meshgate_app_token_code=jws"), ("cookie", "sid=42"),
            ("Cookie", "Meshgate_Other=1"), ("Authorization", "Bearer app-token"),
        ])
        #expect(!result.contains { $0.0.lowercased().hasPrefix("meshgate") || $0.1.lowercased().contains("meshgate") })
        #expect(result.filter { $0.0.lowercased() == "cookie" }.map(\.1) == ["theme=dark; sid=42"])
        #expect(result.contains { $0 == ("Authorization", "Bearer app-token") })
        #expect(!forwarded([("Cookie", "meshgate_session_token=abc")]).contains { $0.0 == "Cookie" })
    }

    /// The client joins `X-Forwarded-For`; `-Proto` and `-Host` are the gateway's word, not the client's.
    @Test func setsForwardedHeaders() {
        let result = forwarded([("X-Forwarded-For", "10.0.0.1"), ("x-forwarded-proto", "http"), ("X-Forwarded-Host", "evil.example")])
        #expect(result.filter { $0.0.hasPrefix("X-Forwarded") }.map { "\($0.0): \($0.1)" } == [
            "X-Forwarded-For: 10.0.0.1, 192.0.2.7", "X-Forwarded-Proto: https", "X-Forwarded-Host: code--main--dev--alice.apps.example.com",
        ])
        #expect(forwarded([]).contains { $0 == ("X-Forwarded-For", "192.0.2.7") })
    }

    /// A WebSocket handshake keeps `Upgrade`, `Connection: Upgrade` (alone) and every `Sec-WebSocket-*` header
    /// with its name's case, in order; the rest of the hygiene still applies.
    @Test func keepsTheWebSocketHandshake() {
        let result = forwarded(
            [
                ("Host", "x"), ("Connection", "keep-alive, Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Protocol", "chat, superchat"), ("sec-websocket-extensions", "permessage-deflate"),
                ("Keep-Alive", "timeout=5"), ("Cookie", "meshgate_session_token=s; a=b"),
            ], purpose: .webSocketUpgrade
        )
        #expect(names(result) == [
            "Host", "Connection", "Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "sec-websocket-extensions",
            "Cookie", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
        ])
        #expect(result.contains { $0 == ("Connection", "Upgrade") } && result.contains { $0 == ("Cookie", "a=b") })
    }

    /// A response loses its hop-by-hop headers (the gateway frames its own connection) and keeps the rest,
    /// `Set-Cookie` included.
    @Test func cleansResponses() {
        let result = ForwardedHeaders.response(HTTPHeaders([
            ("Content-Type", "text/plain"), ("Connection", "keep-alive, X-Internal"), ("X-Internal", "1"), ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"), ("Set-Cookie", "sid=1; Path=/"), ("Proxy-Authenticate", "Basic"), ("Content-Length", "12"),
            // An app may not plant a session cookie in meshgate's name.
            ("Set-Cookie", "meshgate_session_token=planted; Path=/"), ("set-cookie", " Meshgate_Signed_App_Token=x"),
        ]))
        #expect(result.map(\.name) == ["Content-Type", "Set-Cookie", "Content-Length"])
        #expect(result["Set-Cookie"] == ["sid=1; Path=/"])
    }

    @Test func credentialNames() {
        #expect(MeshgateCredentials.isMeshgateCookie(named: MeshgateCredentials.sessionCookie))
        #expect(MeshgateCredentials.isMeshgateHeader(named: MeshgateCredentials.sessionHeader.lowercased()))
        #expect(MeshgateCredentials.isMeshgateHeader(named: MeshgateCredentials.agentTokenHeader))
        #expect(!MeshgateCredentials.isMeshgateCookie(named: "meshgate") && !MeshgateCredentials.isMeshgateHeader(named: "X-Meshgate-Session-Token"))
    }

    /// An HTTP/2 request (pseudo-headers, lower-case names, split cookies, no length) becomes an HTTP/1.1 head:
    /// `:path` below the app's prefix is the target, `Host` the app's, and a body without a length is chunked.
    @Test func mapsHTTP2RequestsToHTTP1() {
        let app = ResolvedApp(
            request: AppRequest(accessMethod: .path, user: "alice", workspace: "dev", agent: nil, target: .app(slug: "code"), basePath: "/@alice/dev/apps/code/"),
            ownerID: UUID(), workspaceID: UUID(), agentID: UUID(), agentName: "main", agentConnected: true, port: 8080, https: false,
            pathPrefix: "/ui", sharingLevel: .owner, displayName: "Code", health: nil
        )
        let post = HTTPRequest(
            method: .post, scheme: "https", authority: "gateway.example.com", path: "/api?x=1",
            headerFields: [.contentType: "application/json", .cookie: "a=1", .cookie: "meshgate_session_token=s"]
        )
        let head = AppForwarder.upstreamHead(post, app: app, path: "/api?x=1", origin: origin)
        #expect(head.method == .POST && head.uri == "/ui/api?x=1" && head.version == .http1_1)
        #expect(head.headers["Host"] == ["127.0.0.1:8080"] && head.headers["cookie"] == ["a=1"])
        #expect(head.headers["transfer-encoding"] == ["chunked"])
        let get = HTTPRequest(method: .get, scheme: "https", authority: "gateway.example.com", path: "/", headerFields: [:])
        #expect(!AppForwarder.upstreamHead(get, app: app, path: "/", origin: origin).headers.contains(name: "transfer-encoding"))
        let sized = HTTPRequest(method: .put, scheme: "https", authority: "g", path: "/", headerFields: [.contentLength: "3"])
        #expect(!AppForwarder.upstreamHead(sized, app: app, path: "/", origin: origin).headers.contains(name: "transfer-encoding"))
        #expect(AppForwarder.joined("", "/a") == "/a" && AppForwarder.joined("/ui/", "/a") == "/ui/a" && AppForwarder.joined("/", "/a?b") == "/a?b")
    }
}

/// The byte-level cookie reader both the gate and the forwarder use.
@Suite struct CookieHeaderTests {
    func pairs(_ header: String) -> [String] {
        CookieHeader.pairs(header).map { "\($0.name)|\($0.value.map(String.init) ?? "nil")|\($0.text)" }
    }

    @Test func readsPairs() {
        #expect(pairs("a=1; b=2") == ["a|1|a=1", "b|2|b=2"])
        #expect(pairs("  a = 1 ;\tb=x=y;;  ; flag ;c=") == ["a|1|a = 1", "b|x=y|b=x=y", "flag|nil|flag", "c||c="])
        #expect(pairs("") == [] && pairs(" ; ;") == [])
        #expect(pairs("naïve=café; ☃=❄") == ["naïve|café|naïve=café", "☃|❄|☃=❄"])
    }

    @Test func appCookiesDropMeshgatesOnly() {
        #expect(CookieHeader.appCookies(["theme=dark"]) == "theme=dark")
        #expect(CookieHeader.appCookies([" theme=dark "]) == "theme=dark")
        #expect(CookieHeader.appCookies(["meshgate_session_token=s; MESHGATE_x=1"]) == nil)
        #expect(CookieHeader.appCookies(["a=1;b=2", "meshgate_session_token=s", "c=3"]) == "a=1; b=2; c=3")
        #expect(CookieHeader.appCookies([]) == nil && CookieHeader.appCookies([";"]) == nil)
        // A name that merely contains the prefix is the app's.
        #expect(CookieHeader.appCookies(["x_meshgate_session_token=1"]) == "x_meshgate_session_token=1")
    }

    /// The fast path's lookup of one cookie reads it as the gate's full parse does.
    @Test func firstValueReadsAsTheGateDoes() {
        let cases: [([String], String?)] = [
            (["a=1; t=x; t=y"], "x"), (["t=; t=z"], "z"), (["t", "t=w"], "w"), (["tt=1;  t =2 "], "2"), (["naïve=1; t=café"], "café"), ([], nil),
            (["x=1"], nil), (["t=a=b"], "a=b"), (["T=1"], nil), ([";;t\t=\t3;"], "3"),
        ]
        for (headers, expected) in cases {
            #expect(CookieHeader.firstValue(named: "t", in: headers).map(String.init) == expected, "\(headers)")
            #expect(AppGate.Credentials(cookieHeaders: headers, sessionHeader: nil).cookies["t"] == expected, "\(headers)")
        }
        // Names compare as Strings do (canonical equivalence), as the gate's dictionary compares them.
        #expect(CookieHeader.firstValue(named: "café", in: ["cafe\u{301}=1"]) == "1")
    }

    /// An empty cookie names nothing: it must not hide a later one of the same name from the gate.
    @Test func emptyCookiesAreSkipped() {
        let credentials = AppGate.Credentials(cookieHeaders: ["meshgate_session_token=; =x", "meshgate_session_token=real"], sessionHeader: nil)
        #expect(credentials.cookies == ["meshgate_session_token": "real"])
    }

    /// Whitespace of any kind before a name is skipped, as cookie readers skip it: an app cannot plant a
    /// " meshgate_…" cookie with a no-break space, nor does one reach an app.
    @Test func leadingUnicodeWhitespaceIsNotADisguise() {
        #expect(MeshgateCredentials.isMeshgateCookie(named: "\u{A0}meshgate_session_token"))
        #expect(CookieHeader.appCookies(["\u{3000}meshgate_session_token=s; a=1"]) == "a=1")
        let kept = ForwardedHeaders.response(HTTPHeaders([("Set-Cookie", "\u{A0}meshgate_session_token=planted; Path=/"), ("Set-Cookie", "a=1")]))
        #expect(kept["Set-Cookie"] == ["a=1"])
    }

    @Test func credentialNamesIgnoreCaseOfLettersOnly() {
        #expect(MeshgateCredentials.isMeshgateCookie(named: "MeshGate_Anything"))
        // `_` folded like a letter would be DEL: not the same name.
        #expect(!MeshgateCredentials.isMeshgateCookie(named: "meshgate\u{7F}x") && !MeshgateCredentials.isMeshgateCookie(named: "meshgat"))
        #expect(MeshgateCredentials.isMeshgateHeader(named: "MESHGATE-SESSION-TOKEN") && !MeshgateCredentials.isMeshgateHeader(named: "Meshgate_x"))
    }
}
