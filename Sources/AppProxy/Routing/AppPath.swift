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
        // Runs on every request the gateway serves: indices into `target`, no split into arrays, and the base path
        // and upstream path cut out of it (they are its prefix up to the slug's slash, and the rest).
        let utf8 = target.utf8
        let pathEnd = utf8.firstIndex(of: UInt8(ascii: "?")) ?? utf8.endIndex
        let path = target[..<pathEnd]
        let prefixLength = path.utf8.starts(with: "/@".utf8) ? 2 : path.utf8.starts(with: "/%40".utf8) ? 4 : 0
        guard prefixLength > 0 else { return .notAnApp }
        let rest = path.utf8.index(path.startIndex, offsetBy: prefixLength)
        // The ends of user, workspace[.agent], "apps" and the slug: at most four slashes matter.
        var ends: [String.Index] = []
        ends.reserveCapacity(4)
        var index = rest
        while ends.count < 4, let slash = path.utf8[index...].firstIndex(of: UInt8(ascii: "/")) {
            ends.append(slash)
            index = path.utf8.index(after: slash)
        }
        guard ends.count >= 3 else { return .notAnApp }
        let after = { (slash: String.Index) in target.utf8.index(after: slash) }
        guard path[after(ends[1])..<ends[2]].utf8.elementsEqual("apps".utf8) else { return .notAnApp }
        let user = path[rest..<ends[0]], workspaceAndAgent = path[after(ends[0])..<ends[1]]
        let slug = path[after(ends[2])..<(ends.count == 4 ? ends[3] : pathEnd)]
        guard !Self.isMe(user) else { return .invalid("@me is not supported in app URLs; use the user name") }
        guard URLName.isValid(user), !slug.isEmpty, URLName.isValid(slug) else { return .invalid("not a valid app URL") }
        let (workspace, agent) = splitAgent(workspaceAndAgent)
        guard URLName.isValid(workspace), agent.map(URLName.isValid) ?? true else { return .invalid("not a valid app URL") }
        // `/@u/ws/apps/slug` (nothing after the slug): the app's relative links need the slash.
        guard ends.count == 4 else { return .redirect(location: String(path) + "/" + String(target[pathEnd...])) }
        let request = AppRequest(
            accessMethod: .path, user: String(user), workspace: workspace, agent: agent, target: .app(slug: slug.lowercased()),
            basePath: String(target[..<after(ends[3])])
        )
        return .app(request, upstreamPath: String(target[ends[3]...]))
    }

    /// `me`, in any case: the API's word for the signed-in user, which an app URL cannot use.
    private static func isMe(_ name: Substring) -> Bool {
        name.utf8.count == 2 && name.utf8.first! | 0x20 == UInt8(ascii: "m") && name.utf8.last! | 0x20 == UInt8(ascii: "e")
    }

    /// `ws.agent` → ("ws", "agent"); `ws` → ("ws", nil).
    static func splitAgent(_ text: Substring) -> (workspace: String, agent: String?) {
        guard let dot = text.firstIndex(of: ".") else { return (String(text), nil) }
        return (String(text[..<dot]), String(text[text.index(after: dot)...]))
    }
}
