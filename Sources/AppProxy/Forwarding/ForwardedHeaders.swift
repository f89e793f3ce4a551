import Foundation
import HTTPTypes
import NIOHTTP1
import Tunnel

/// Who asked, and how: what the `X-Forwarded-*` headers tell the app.
public struct ForwardingOrigin: Sendable, Equatable {
    /// The client's IP address as the gateway saw it.
    public var clientAddress: String
    /// The scheme the browser used (`https`, or `http` behind a TLS-terminating load balancer).
    public var scheme: String
    /// The host (with port, if any) the browser used.
    public var host: String

    public init(clientAddress: String, scheme: String, host: String) {
        (self.clientAddress, self.scheme, self.host) = (clientAddress, scheme, host)
    }
}

/// Header hygiene between the browser and an app, as pure functions over NIO's `HTTPHeaders` (which keep each
/// name's case and the order): what crosses is end-to-end, never a meshgate credential, and says who asked.
public enum ForwardedHeaders {
    public enum Purpose: Sendable {
        /// An ordinary request: every hop-by-hop header goes.
        case http
        /// A WebSocket handshake: `Upgrade` and `Connection: Upgrade` stay, as do the `Sec-WebSocket-*` headers.
        case webSocketUpgrade
    }

    /// Hop-by-hop headers (RFC 9110 §7.6.1, and the de facto `Keep-Alive` and `Proxy-*`), lowercased. `TE` is
    /// handled apart: `TE: trailers` is passed on, as gRPC needs.
    static let hopByHop: Set<String> = ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"]

    /// The headers the app receives for `headers` from the browser. `Host` becomes `upstreamHost` (the app's
    /// 127.0.0.1:PORT) and comes first; cookies are joined into one `Cookie` header, as HTTP/1.1 wants (HTTP/2
    /// sends each in its own field); `X-Forwarded-For` gets the client appended, `-Proto` and `-Host` are set.
    /// `Expect` goes too: the gateway streams the body without waiting for a 100 Continue.
    public static func request(_ headers: HTTPHeaders, purpose: Purpose, upstreamHost: String, origin: ForwardingOrigin) -> HTTPHeaders {
        request(headers, connection: headers["connection"], purpose: purpose, upstreamHost: upstreamHost, origin: origin)
    }

    /// The same for HTTPTypes fields (the browser's side), with no `HTTPHeaders` copy of them in between.
    static func request(_ fields: HTTPFields, purpose: Purpose, upstreamHost: String, origin: ForwardingOrigin) -> HTTPHeaders {
        request(
            fields.lazy.map { (name: $0.name.rawName, value: $0.value) }, connection: fields[values: .connection], purpose: purpose,
            upstreamHost: upstreamHost, origin: origin
        )
    }

    private static func request(
        _ headers: some Sequence<(name: String, value: String)>, connection: [String], purpose: Purpose, upstreamHost: String,
        origin: ForwardingOrigin
    ) -> HTTPHeaders {
        let listed = listedHeaders(connection)
        var forwarded = HTTPHeaders()
        forwarded.reserveCapacity(headers.underestimatedCount + 4)
        forwarded.add(name: "Host", value: upstreamHost)
        var forwardedFor: [String] = []
        var cookies: [String] = []
        var trailersAccepted = false
        var connectionSent = false
        for (name, value) in headers {
            let lowercased = name.lowercased()
            switch lowercased {
            case "host", "expect", "x-forwarded-proto", "x-forwarded-host":
                continue
            case "x-forwarded-for":
                forwardedFor.append(value)
                continue
            case "cookie":
                cookies.append(value)
                continue
            case "te":
                trailersAccepted = trailersAccepted || tokens(value).contains("trailers")
                continue
            default:
                break
            }
            if MeshgateCredentials.isMeshgateHeader(named: lowercased) { continue }
            if purpose == .webSocketUpgrade {
                if lowercased == "upgrade" || lowercased.hasPrefix("sec-websocket-") {
                    forwarded.add(name: name, value: value)
                    continue
                }
                if lowercased == "connection" {
                    // Only the upgrade is meant for the app; `keep-alive` and the like were for the gateway.
                    if !connectionSent { forwarded.add(name: name, value: "Upgrade") }
                    connectionSent = true
                    continue
                }
            }
            if hopByHop.contains(lowercased) || lowercased.hasPrefix("proxy-") || listed.contains(lowercased) { continue }
            forwarded.add(name: name, value: value)
        }
        if trailersAccepted { forwarded.add(name: "TE", value: "trailers") }
        if let cookie = CookieHeader.appCookies(cookies) { forwarded.add(name: "Cookie", value: cookie) }
        forwarded.add(name: "X-Forwarded-For", value: (forwardedFor + [origin.clientAddress]).joined(separator: ", "))
        forwarded.add(name: "X-Forwarded-Proto", value: origin.scheme)
        forwarded.add(name: "X-Forwarded-Host", value: origin.host)
        return forwarded
    }

    /// The app's response headers the browser receives: end-to-end ones, minus any cookie in meshgate's namespace
    /// (the gateway frames its own connection to the browser).
    public static func response(_ headers: HTTPHeaders) -> HTTPHeaders {
        var kept = HTTPHeaders()
        forEachResponseHeader(headers) { kept.add(name: $0, value: $1) }
        return kept
    }

    /// The same as HTTPTypes fields, for the browser's side, with no `HTTPHeaders` in between.
    static func responseFields(_ headers: HTTPHeaders) -> HTTPFields {
        var fields = HTTPFields()
        fields.reserveCapacity(headers.count)
        forEachResponseHeader(headers) { name, value in
            if let name = HTTPField.Name(name) { fields.append(HTTPField(name: name, value: value)) }
        }
        return fields
    }

    private static func forEachResponseHeader(_ headers: HTTPHeaders, _ keep: (String, String) -> Void) {
        let listed = listedHeaders(headers["connection"])
        for (name, value) in headers {
            let lowercased = name.lowercased()
            if hopByHop.contains(lowercased) || lowercased.hasPrefix("proxy-") || listed.contains(lowercased) { continue }
            // An app must not plant or overwrite meshgate's cookies (a path app shares the dashboard's origin).
            if lowercased == "set-cookie", MeshgateCredentials.isMeshgateCookie(named: CookieHeader.trimmed(value.prefix { $0 != "=" })) {
                continue
            }
            keep(name, value)
        }
    }

    /// The header names `Connection` values list (lowercased), less those that go anyway: hop-by-hop by that
    /// listing. Usually `keep-alive` alone, so usually empty, and an empty set allocates nothing. A set, not an
    /// array: every header is looked up in it, and a request may carry thousands of both.
    static func listedHeaders(_ connection: [String]) -> Set<String> {
        guard !connection.isEmpty else { return [] }
        let listed = connection.flatMap(tokens).filter { !hopByHop.contains($0) }
        return listed.isEmpty ? [] : Set(listed)
    }

    private static func tokens(_ value: String) -> [String] {
        value.split(separator: ",").map { CookieHeader.trimmed($0).lowercased() }.filter { !$0.isEmpty }
    }
}
