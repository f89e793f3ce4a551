import Crypto
import Foundation

/// The cookie that carries a `SignedAppToken` back to the app host.
///
/// - Path apps share the dashboard's origin: the cookie is named `meshgate_signed_app_token` and limited to the
///   app's base path, so each path app only ever sees its own token.
/// - Subdomain apps each have their own host: the cookie is host-only (no `Domain`) with `Path=/`, and its name
///   carries a short hash of the wildcard host. A browser that meets apps under two wildcards whose hosts overlap
///   (the primary's `*.apps.example.com` and a proxy's `*.eu.apps.example.com`, say) then never presents one
///   deployment's token to the other, which refused it and re-issued it forever (Coder's redirect loop, PR 19930).
///
/// Always HttpOnly (scripts in the app have no business with it), SameSite=Lax (sent on top-level navigation from
/// the dashboard, not on cross-site subrequests), Secure when served over https, and gone when the token expires.
public struct AppTokenCookie: Sendable, Equatable {
    public static let pathAppName = "meshgate_signed_app_token"

    public var name: String
    public var path: String
    public var maxAge: Int
    public var secure: Bool

    /// The cookie for `request`. `wildcardHost` is the wildcard pattern its subdomain app was matched under
    /// (unused for path apps); `secure` is whether the app is served over https.
    public init(for request: AppRequest, wildcardHost: AppHostname?, secure: Bool) {
        self.init(for: request, subdomainName: Self.subdomainName(wildcardHost: wildcardHost), secure: secure)
    }

    /// With the subdomain cookie name worked out once (it hashes the wildcard pattern), for the per-request path.
    init(for request: AppRequest, subdomainName: String, secure: Bool) {
        switch request.accessMethod {
        case .path:
            (name, path) = (Self.pathAppName, Self.cookiePath(request.basePath))
        case .subdomain:
            (name, path) = (subdomainName, "/")
        }
        (maxAge, self.secure) = (Int(SignedAppToken.lifetime), secure)
    }

    /// `meshgate_signed_app_token_` and 8 hex digits of SHA-256 of the wildcard pattern (`*.apps.example.com`).
    public static func subdomainName(wildcardHost: AppHostname?) -> String {
        let pattern = "*" + (wildcardHost?.suffix ?? "")
        let digest = SHA256.hash(data: Data(pattern.utf8))
        return pathAppName + "_" + digest.prefix(4).map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }

    /// The `Set-Cookie` value that stores `token`. Base64url and dots need no quoting.
    public func setCookie(_ token: String) -> String {
        var attributes = ["\(name)=\(token)", "Path=\(path)", "Max-Age=\(maxAge)", "HttpOnly", "SameSite=Lax"]
        if secure { attributes.append("Secure") }
        return attributes.joined(separator: "; ")
    }

    /// The `Set-Cookie` value that removes the cookie (a token that no longer verifies, so the browser stops sending it).
    public var expired: String {
        var attributes = ["\(name)=", "Path=\(path)", "Max-Age=0", "HttpOnly", "SameSite=Lax"]
        if secure { attributes.append("Secure") }
        return attributes.joined(separator: "; ")
    }

    /// Base paths come from validated names, but a cookie attribute is no place to find out otherwise: anything that
    /// could end the attribute or the header is percent-encoded (a request path cannot contain it raw either).
    static func cookiePath(_ path: String) -> String {
        var result = ""
        for byte in path.utf8 {
            if byte > 0x20, byte < 0x7F, byte != UInt8(ascii: ";"), byte != UInt8(ascii: ","), byte != UInt8(ascii: "\"") {
                result.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                result += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return result.hasPrefix("/") ? result : "/" + result
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String { String(repeating: "0", count: max(0, length - count)) + self }
}
