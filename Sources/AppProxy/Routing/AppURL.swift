import Foundation

/// The URLs an app is opened at: the inverse of `AppPath.match` and `AppHostname.match`, so links and parsing
/// share one format.
public enum AppURL {
    /// `/@{user}/{workspace}[.{agent}]/apps/{slug}/`, agent left out when nil.
    public static func path(user: String, workspace: String, agent: String?, slug: String) -> String {
        "/@\(user)/\(workspace)\(agent.map { "." + $0 } ?? "")/apps/\(slug)/"
    }

    /// `{scheme}://{slug}--{agent}--{workspace}--{user}{suffix}[:port]/`, with the scheme and port of the access URL
    /// (the wildcard listener is the access URL's).
    public static func subdomain(
        _ hostname: AppHostname, accessURL: URL, user: String, workspace: String, agent: String, slug: String
    ) -> String {
        let label = [slug, agent, workspace, user].joined(separator: "--").lowercased()
        let port = accessURL.port.map { ":\($0)" } ?? ""
        return "\(accessURL.scheme ?? "https")://\(label)\(hostname.suffix)\(port)/"
    }
}
