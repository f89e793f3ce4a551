import Tunnel

/// Path apps: `/@{user}/{workspace}[.{agent}]/apps/{slug}/{rest}`, also with `@` percent-encoded as `%40`.
public enum AppPath {
    /// How a request path relates to path apps.
    public enum Match: Sendable, Equatable {
        /// Not a path-app URL at all: the router carries on.
        case notAnApp
        /// `/@user/ws/apps/slug` without the trailing slash: redirect to `location` (307 keeps the method).
        case redirect(location: String)
        /// The app, and the path to send upstream (starting with "/", query kept).
        case app(AppRequest, upstreamPath: String)
        /// Looks like an app URL but cannot name one (`@me`, an empty or invalid part); the reason is for a 404.
        case invalid(String)
    }

    /// Matches `target` (path plus optional `?query`, as it came on the request line).
    public static func match(_ target: String) -> Match {
        let (path, query) = split(target)
        var rest = Substring(path)
        if rest.hasPrefix("/@") {
            rest = rest.dropFirst(2)
        } else if rest.lowercased().hasPrefix("/%40") {
            rest = rest.dropFirst(4)
        } else {
            return .notAnApp
        }
        let parts = rest.split(separator: "/", maxSplits: 4, omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[2] == "apps" else { return .notAnApp }
        let user = String(parts[0]), workspaceAndAgent = parts[1], slug = String(parts[3])
        guard user.lowercased() != "me" else { return .invalid("@me is not supported in app URLs; use the user name") }
        guard URLName.isValid(user), !slug.isEmpty, URLName.isValid(slug) else { return .invalid("not a valid app URL") }
        let (workspace, agent) = splitAgent(workspaceAndAgent)
        guard URLName.isValid(workspace), agent.map(URLName.isValid) ?? true else { return .invalid("not a valid app URL") }
        // `/@u/ws/apps/slug` (nothing after the slug): the app's relative links need the slash.
        let basePath = "/\(path.hasPrefix("/@") ? "@" : "%40")\(user)/\(workspaceAndAgent)/apps/\(slug)/"
        guard parts.count == 5 else {
            return .redirect(location: basePath + (query.map { "?" + $0 } ?? ""))
        }
        let request = AppRequest(accessMethod: .path, user: user, workspace: workspace, agent: agent, target: .app(slug: slug.lowercased()), basePath: basePath)
        return .app(request, upstreamPath: "/" + parts[4] + (query.map { "?" + $0 } ?? ""))
    }

    static func split(_ target: String) -> (path: String, query: String?) {
        guard let mark = target.firstIndex(of: "?") else { return (target, nil) }
        return (String(target[..<mark]), String(target[target.index(after: mark)...]))
    }

    /// `ws.agent` → ("ws", "agent"); `ws` → ("ws", nil).
    static func splitAgent(_ text: Substring) -> (workspace: String, agent: String?) {
        guard let dot = text.firstIndex(of: ".") else { return (String(text), nil) }
        return (String(text[..<dot]), String(text[text.index(after: dot)...]))
    }
}
