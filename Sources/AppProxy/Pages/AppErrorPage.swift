import Foundation
import Tunnel

/// What went wrong with an app request, in words a person can act on. Browsers get an HTML page with a retry
/// link; API clients (`Accept: application/json`) get the API's `{"message", "detail"}`.
public struct AppErrorPage: Sendable, Equatable {
    public var status: Int
    public var title: String
    public var message: String
    /// The technical cause (a refused port's reason, a TLS error), shown smaller.
    public var detail: String?
    /// A short next step ("Switch to HTTPS"), with a link when there is one.
    public var hint: (text: String, link: String?)?
    /// The agent's word on the app's health, when it has one.
    public var health: AppHealth?
    public var retry: Bool

    public init(status: Int, title: String, message: String, detail: String? = nil, hint: (text: String, link: String?)? = nil, health: AppHealth? = nil, retry: Bool = true) {
        (self.status, self.title, self.message, self.detail, self.hint, self.health, self.retry) = (status, title, message, detail, hint, health, retry)
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        (lhs.status, lhs.title, lhs.message, lhs.detail, lhs.health, lhs.retry) == (rhs.status, rhs.title, rhs.message, rhs.detail, rhs.health, rhs.retry)
            && lhs.hint?.text == rhs.hint?.text && lhs.hint?.link == rhs.hint?.link
    }

    // MARK: The pages

    public static func notFound(_ detail: String? = nil) -> Self {
        Self(status: 404, title: "Application not found", message: "There is no app at this address, or you cannot see it.", detail: detail, retry: false)
    }

    public static func ambiguousAgent(_ agents: [String]) -> Self {
        Self(
            status: 404, title: "Which agent?",
            message: "This workspace has several agents; name one in the URL (workspace.agent).", detail: "agents: \(agents.joined(separator: ", "))",
            retry: false
        )
    }

    public static func forbidden(_ reason: String) -> Self {
        Self(status: 403, title: "Not allowed", message: reason, retry: false)
    }

    public static func workspaceOffline(agent: String) -> Self {
        Self(
            status: 400, title: "Workspace offline",
            message: "The workspace's agent \(agent) is not connected. Start the workspace (or its agent), then retry."
        )
    }

    public static func agentUnreachable(agent: String, cause: String, health: AppHealth?) -> Self {
        Self(status: 502, title: "Application unavailable", message: "The gateway could not reach agent \(agent).", detail: cause, health: health)
    }

    /// The agent answered but the app did not (nothing listening, TLS mismatch, a broken response).
    public static func badGateway(cause: String, hint: (text: String, link: String?)? = nil, health: AppHealth?) -> Self {
        Self(status: 502, title: "Bad gateway", message: "The app did not answer properly.", detail: cause, hint: hint, health: health)
    }

    /// The app accepted the request but did not start its answer in time.
    public static func gatewayTimeout(cause: String, health: AppHealth?) -> Self {
        Self(status: 504, title: "Gateway timeout", message: "The app took too long to answer.", detail: cause, health: health)
    }

    /// The gateway itself failed (its store, say); the cause is shown for the operator.
    public static func internalError(_ message: String, cause: any Error) -> Self {
        Self(status: 500, title: "Internal error", message: message, detail: "\(cause)")
    }

    public static func pathAppsDisabled() -> Self {
        Self(status: 403, title: "Path apps are disabled", message: "This deployment serves apps on their own subdomains only.", retry: false)
    }

    // MARK: Rendering

    /// The JSON body for API clients.
    public var json: String {
        var object: [String: String] = ["message": "\(title): \(message)"]
        if let detail { object["detail"] = detail }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// A self-contained page (no external assets: it must render when everything else is broken).
    public var html: String {
        var body = "<h1>\(Self.escape(title))</h1>\n<p>\(Self.escape(message))</p>\n"
        if let health { body += "<p>App health reported by the agent: <strong>\(health.rawValue)</strong></p>\n" }
        if let detail { body += "<pre>\(Self.escape(detail))</pre>\n" }
        if let hint {
            body += hint.link.map { "<p><a href=\"\(Self.escape($0))\">\(Self.escape(hint.text))</a></p>\n" } ?? "<p>\(Self.escape(hint.text))</p>\n"
        }
        if retry { body += "<p><a href=\"\" onclick=\"location.reload(); return false\">Retry</a></p>\n" }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(Self.escape(title)) · meshgate</title>
            <style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#222}
            pre{white-space:pre-wrap;background:#f4f4f4;padding:.5rem;border-radius:4px}a{color:#0645ad}</style>
            </head><body>
            <main>
            \(body)</main>
            </body></html>
            """
    }

    /// Whether the client wants JSON rather than a page.
    public static func prefersJSON(accept: String?) -> Bool {
        guard let accept = accept?.lowercased() else { return false }
        return accept.contains("application/json") && !accept.contains("text/html")
    }

    static func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
