import AppProxy
import Foundation

/// Where the cross-domain app login may send a browser, with a freshly minted app key in the URL: only to an app
/// host under this deployment's wildcard, on the access URL's scheme and port. Anything else would make
/// `auth-redirect` an open redirect that hands out credentials.
///
/// The check is a strict reading rather than a URL parser's: printable ASCII only (no spaces, tabs or line breaks
/// that browsers strip, no look-alike Unicode), no backslash (browsers read it as `/`), no userinfo (`@`), no
/// percent-encoding or brackets in the authority; then the host must name an app under the wildcard.
struct AppRedirectPolicy: Sendable {
    let hostname: AppHostname
    let scheme: String
    let port: Int

    /// An accepted `redirect_uri`: the URI as given, and its normalized host (what the app key is bound to).
    struct Target: Sendable, Equatable {
        let uri: String
        let host: String
    }

    static let maximumLength = 4096

    /// Nil when the deployment has no (valid) wildcard access URL: no subdomain apps, nothing to log in to.
    init?(configuration: GatewayConfiguration) {
        guard let pattern = configuration.wildcardAccessURL, let hostname = AppHostname(pattern: pattern),
            let scheme = configuration.accessURL.scheme?.lowercased(), let port = configuration.accessURL.port ?? Self.defaultPort(scheme)
        else { return nil }
        (self.hostname, self.scheme, self.port) = (hostname, scheme, port)
    }

    init(hostname: AppHostname, scheme: String, port: Int) { (self.hostname, self.scheme, self.port) = (hostname, scheme, port) }

    /// The target, or why `uri` is refused (the reason is shown to the user).
    func check(_ uri: String) -> Result<Target, Refusal> {
        guard uri.utf8.count <= Self.maximumLength, uri.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            return .failure(.unsafeCharacters)
        }
        guard !uri.contains("\\") else { return .failure(.unsafeCharacters) }
        guard let schemeEnd = uri.range(of: "://"), schemeEnd.lowerBound != uri.startIndex, uri[..<schemeEnd.lowerBound].allSatisfy(\.isLetter) else {
            return .failure(.notAbsolute)
        }
        guard uri[..<schemeEnd.lowerBound].lowercased() == scheme else { return .failure(.wrongScheme) }
        let rest = uri[schemeEnd.upperBound...]
        let authority = rest.prefix { !"/?#".contains($0) }
        guard !authority.isEmpty, !authority.contains(where: { "@%[]".contains($0) }) else { return .failure(.notAnAppHost) }
        var host = authority
        var port = Self.defaultPort(scheme)
        if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            let digits = authority[authority.index(after: colon)...]
            guard (1...5).contains(digits.count), digits.allSatisfy(\.isASCIIDigit), let number = Int(digits), (1...65535).contains(number) else {
                return .failure(.wrongPort)
            }
            port = number
        }
        guard port == self.port else { return .failure(.wrongPort) }
        guard case .app = hostname.match(host: String(host)) else { return .failure(.notAnAppHost) }
        return .success(Target(uri: uri, host: AppConnectKey.normalizedHost(String(host))))
    }

    enum Refusal: Error, Equatable {
        case notAbsolute, unsafeCharacters, wrongScheme, wrongPort, notAnAppHost

        var detail: String {
            switch self {
            case .notAbsolute: "redirect_uri must be an absolute http(s) URL"
            case .unsafeCharacters: "redirect_uri may contain only printable ASCII characters and no backslash"
            case .wrongScheme: "redirect_uri must use the access URL's scheme"
            case .wrongPort: "redirect_uri must use the access URL's port"
            case .notAnAppHost: "redirect_uri must be the URL of a workspace app under the wildcard access URL"
            }
        }
    }

    private static func defaultPort(_ scheme: String) -> Int? {
        switch scheme {
        case "https": 443
        case "http": 80
        default: nil
        }
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
