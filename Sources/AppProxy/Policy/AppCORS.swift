import Foundation
import HTTPTypes

/// Cross-origin rules for subdomain apps: a page on one of a user's app hosts may call that same user's other
/// apps (a front end on port 3000 calling an API on 8080), and no other origin may, whatever the app itself
/// answers. (An app opting into passthrough of its own CORS headers is not offered yet.)
public enum AppCORS {
    /// The response headers that carry CORS decisions; the app's own are removed.
    public static let responseHeaders = [
        "access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-methods", "access-control-allow-headers",
        "access-control-expose-headers", "access-control-max-age",
    ]

    /// Whether `origin` (the request's `Origin`) is an app host of `user` under `hostname`, on the same scheme.
    public static func allows(origin: String?, user: String, hostname: AppHostname, scheme: String) -> Bool {
        guard let origin, let url = URL(string: origin), url.scheme?.lowercased() == scheme.lowercased(), let host = url.host,
            url.path.isEmpty, url.query == nil, url.user == nil
        else { return false }
        guard case .app(let other) = hostname.match(host: host + (url.port.map { ":\($0)" } ?? "")) else { return false }
        return other.user == user.lowercased()
    }

    /// meshgate decides who may call a subdomain app cross-origin: the app's own CORS headers are dropped from
    /// `headers` (a response's), and a same-user app origin is allowed with credentials.
    public static func apply(to headers: inout HTTPFields, origin: String?, user: String, hostname: AppHostname, scheme: String) {
        for name in responseHeaders { headers[HTTPField.Name(name)!] = nil }
        guard let origin, allows(origin: origin, user: user, hostname: hostname, scheme: scheme) else { return }
        for (name, value) in allowHeaders(origin: origin) { headers.append(HTTPField(name: HTTPField.Name(name)!, value: value)) }
    }

    /// The headers meshgate sets for an allowed origin (credentials included: app cookies are HttpOnly).
    public static func allowHeaders(origin: String) -> [(String, String)] {
        [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]
    }
}
