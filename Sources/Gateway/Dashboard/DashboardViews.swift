import AppProxy
import Foundation
import Tunnel

// What the dashboard's templates render: plain values derived from the JSON API's responses (`WorkspaceResponse`,
// `AgentResponse`), so the page and `/api/v2/workspaces` never disagree. Mustache reads stored properties only.

/// Everything a page shows besides its own content: the header's user and the current section.
struct Page<Content> {
    let title: String
    let user: PageUser?
    let assets = DashboardAssets.version
    let content: Content
}

struct PageUser {
    let username: String
    let isOwner: Bool
    /// The header link of the page's section carries aria-current.
    var onWorkspaces = false
    var onUsers = false

    init(_ user: User, section: Section? = nil) {
        (username, isOwner) = (user.username, user.role == .owner)
        (onWorkspaces, onUsers) = (section == .workspaces, section == .users)
    }

    enum Section { case workspaces, users }
}

/// The sign-in and first-user forms: what was typed (never the password) and what went wrong.
struct AccountForm {
    var email = ""
    var username = ""
    var redirect = "/"
    var error: String?
}

struct MessageView {
    let heading: String
    let message: String
}

/// `/workspaces`: workspaces grouped by owner; the owner's heading only when several owners are shown.
struct WorkspacesView {
    let groups: [OwnerGroup]
    let showOwners: Bool

    struct OwnerGroup {
        let ownerID: String
        let ownerName: String
        let workspaces: [WorkspaceView]
    }
}

struct WorkspaceView {
    let id: String
    let name: String
    let ownerName: String
    let agents: [AgentView]
}

struct AgentView {
    let id: String
    let name: String
    let workspaceName: String
    /// AgentStatus's raw value: a CSS class and the `data-status` the page script announces changes of.
    let status: String
    let path: String
    let rtt: String
    let version: String
    let lastSeen: String
    let lastSeenISO: String?
    let apps: [AppView]
}

struct AppView {
    let slug: String
    let displayName: String
    /// AppHealth's raw value (healthy, unhealthy, initializing, disabled).
    let health: String
    /// Where the app opens; nil when this deployment cannot serve it (a subdomain app without a wildcard host).
    let url: String?
    let unavailableReason: String?
}

/// Turns API responses into views; knows the deployment's app URL settings and DERP region names.
struct DashboardViewBuilder {
    let configuration: GatewayConfiguration
    let derpMap: DERPMap
    let now: Date

    func workspaces(_ responses: [WorkspaceResponse], viewer: User) -> WorkspacesView {
        var order: [UUID] = []
        var byOwner: [UUID: [WorkspaceResponse]] = [:]
        for response in responses {
            if byOwner[response.ownerID] == nil { order.append(response.ownerID) }
            byOwner[response.ownerID, default: []].append(response)
        }
        // The viewer's own workspaces first, then other owners by name.
        order.sort { a, b in
            if (a == viewer.id) != (b == viewer.id) { return a == viewer.id }
            return (byOwner[a]?.first?.ownerName ?? "") < (byOwner[b]?.first?.ownerName ?? "")
        }
        let groups = order.map { owner in
            let workspaces = (byOwner[owner] ?? []).sorted { $0.name < $1.name }
            return WorkspacesView.OwnerGroup(ownerID: owner.uuidString.lowercased(), ownerName: workspaces.first?.ownerName ?? "", workspaces: workspaces.map(workspace))
        }
        return WorkspacesView(groups: groups, showOwners: viewer.role == .owner)
    }

    func workspace(_ response: WorkspaceResponse) -> WorkspaceView {
        WorkspaceView(
            id: response.id.uuidString.lowercased(), name: response.name, ownerName: response.ownerName,
            agents: response.agents.sorted { $0.name < $1.name }.map { agent($0, in: response) }
        )
    }

    func agent(_ agent: AgentResponse, in workspace: WorkspaceResponse) -> AgentView {
        AgentView(
            id: agent.id.uuidString.lowercased(), name: agent.name, workspaceName: workspace.name, status: agent.status.rawValue,
            path: pathLabel(agent.path), rtt: agent.rttMs.map { Self.milliseconds($0) } ?? "not measured", version: agent.version ?? "unknown",
            lastSeen: agent.status == .connected ? "now" : agent.lastSeenAt.map { Self.relative($0, now: now) } ?? "never",
            lastSeenISO: agent.lastSeenAt.map { $0.ISO8601Format() },
            apps: agent.apps.sorted { $0.slug < $1.slug }.map { app($0, agent: agent.name, workspace: workspace) }
        )
    }

    func app(_ app: AgentAppReport, agent: String, workspace: WorkspaceResponse) -> AppView {
        // An app is served either on a path or on its own subdomain, never both (StoreAppResolver): link the one that works.
        var url: String?
        var reason: String?
        if app.subdomain {
            if let hostname = configuration.appHostname {
                url = AppURL.subdomain(hostname, accessURL: configuration.accessURL, user: workspace.ownerName, workspace: workspace.name, agent: agent, slug: app.slug)
            } else {
                reason = "needs --wildcard-access-url"
            }
        } else if configuration.disablePathApps {
            reason = "path apps are disabled"
        } else {
            url = AppURL.path(user: workspace.ownerName, workspace: workspace.name, agent: agent, slug: app.slug)
        }
        return AppView(slug: app.slug, displayName: app.displayName.isEmpty ? app.slug : app.displayName, health: app.health.rawValue, url: url, unavailableReason: reason)
    }

    /// "direct", the DERP region's name, or "none yet" until the gateway first dials the agent.
    func pathLabel(_ path: AgentPath?) -> String {
        switch path {
        case .direct?: "direct"
        case .derp(let region)?: derpMap.regions[region].map { "relay: \($0.regionName)" } ?? "relay: region \(region)"
        case nil: "none yet"
        }
    }

    static func milliseconds(_ value: Double) -> String {
        value < 10 ? String(format: "%.1f ms", value) : String(format: "%.0f ms", value)
    }

    /// "just now", "42 s ago", "5 min ago", "3 h ago", else the date.
    static func relative(_ date: Date, now: Date) -> String {
        let seconds = Int(now.timeIntervalSince(date))
        switch seconds {
        case ..<5: return "just now"
        case ..<60: return "\(seconds) s ago"
        case ..<3600: return "\(seconds / 60) min ago"
        case ..<86_400: return "\(seconds / 3600) h ago"
        default: return date.formatted(.iso8601.year().month().day())
        }
    }
}

/// `/users`, for the deployment owner.
struct UsersView {
    let users: [Row]

    struct Row {
        let username: String
        let email: String
        let role: String
        let created: String
    }

    init(_ users: [User]) {
        self.users = users.sorted { $0.username < $1.username }.map {
            Row(username: $0.username, email: $0.email, role: $0.role.rawValue, created: $0.createdAt.formatted(.iso8601.year().month().day()))
        }
    }
}

/// `/terminal/{agentID}`.
struct TerminalView {
    let agentID: String
    let agentName: String
    let workspaceName: String
    let ownerName: String
    let xtermInstalled: Bool
    let xtermPath: String
}
