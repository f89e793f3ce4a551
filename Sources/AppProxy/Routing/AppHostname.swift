import Foundation
import Tunnel

/// Subdomain apps and port URLs under the wildcard access URL: `{slug}--{agent}--{workspace}--{user}` or
/// `{port}[s]--{agent}--{workspace}--{user}` as the one label the wildcard stands for.
public struct AppHostname: Sendable, Equatable {
    /// What the `*` is followed by: ".apps.example.com" for `*.apps.example.com`, "-apps.example.com" for
    /// `*-apps.example.com` (one certificate for `*.example.com` then covers apps too).
    public let suffix: String

    /// `pattern` as `--wildcard-access-url` takes it (`*.apps.example.com`, `*-apps.example.com`), with or
    /// without a scheme and port; nil when it is not such a pattern.
    public init?(pattern: String) {
        var text = Substring(pattern.lowercased())
        if let scheme = text.range(of: "://") { text = text[scheme.upperBound...] }
        if let colon = text.lastIndex(of: ":") { text = text[..<colon] }
        if text.hasSuffix(".") { text = text.dropLast() }
        guard text.hasPrefix("*"), text.count > 2 else { return nil }
        let suffix = text.dropFirst()
        guard suffix.hasPrefix(".") || suffix.hasPrefix("-"), !suffix.dropFirst().contains("*") else { return nil }
        self.suffix = String(suffix)
    }

    public enum Match: Sendable, Equatable {
        /// Not under the wildcard: the request is for the dashboard or API.
        case notAnApp
        case app(AppRequest)
        /// Under the wildcard but naming no app; the reason is for a 404 page.
        case invalid(String)
    }

    /// Matches a `Host` header (any case, optional trailing dot and `:port`).
    public func match(host: String) -> Match {
        var name = Substring(host.lowercased())
        if let colon = name.lastIndex(of: ":"), !name.contains("]") { name = name[..<colon] }
        if name.hasSuffix(".") { name = name.dropLast() }
        guard name.hasSuffix(suffix), name.count > suffix.count else { return .notAnApp }
        let label = name.dropLast(suffix.count)
        guard !label.contains(".") else { return .notAnApp }
        let parts = label.components(separatedBy: "--")
        guard parts.count == 4 else { return .invalid("an app host is {app or port}--{agent}--{workspace}--{user}") }
        let (first, agent, workspace, user) = (parts[0], parts[1], parts[2], parts[3])
        guard URLName.isValid(agent), URLName.isValid(workspace), URLName.isValid(user) else { return .invalid("not a valid app host name") }
        let target: AppRequest.Target
        if let port = Self.port(first) {
            guard port.number >= AppRequest.minimumPort else { return .invalid("ports below \(AppRequest.minimumPort) cannot be opened in the browser") }
            target = .port(port.number, https: port.https)
        } else if URLName.isValid(first), !first.allSatisfy(\.isNumber) {
            target = .app(slug: first)
        } else {
            return .invalid("not a valid app host name")
        }
        return .app(AppRequest(accessMethod: .subdomain, user: user, workspace: workspace, agent: agent, target: target, basePath: "/"))
    }

    /// "8080" or "8443s" (HTTPS upstream) → the port; nil for anything else, including 0 and numbers above 65535.
    static func port(_ text: String) -> (number: UInt16, https: Bool)? {
        let https = text.hasSuffix("s")
        let digits = https ? text.dropLast() : Substring(text)
        guard !digits.isEmpty, digits.allSatisfy(\.isNumber), let number = UInt16(digits), number > 0 else { return nil }
        return (number, https)
    }
}
