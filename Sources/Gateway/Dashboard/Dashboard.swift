import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The pages a person sees first: setup, sign-in, workspaces with their agents and apps, users, the terminal.
/// Server-rendered from `DashboardTemplates`; the data comes from the JSON API's own code (`WorkspacesRoutes`,
/// `AgentViews`, `Accounts`), never from queries of its own.
struct Dashboard: Sendable {
    let accounts: Accounts
    let workspaces: WorkspacesRoutes
    let configuration: GatewayConfiguration
    let derpMap: any DERPMapProvider
    let xterm: XtermAssets
    let renderer = DashboardRenderer.shared

    func addRoutes(to router: Router<GatewayContext>, authenticator: Authenticator) {
        DashboardAssets.addRoutes(to: router)
        xterm.addRoutes(to: router)
        let pages = router.group()
        pages.add(middleware: SessionMiddleware(authenticator: authenticator))
        pages.add(middleware: DashboardMiddleware(renderer: renderer))
        LoginPage(accounts: accounts, renderer: renderer).addRoutes(to: pages)

        pages.get("/") { _, context -> Response in
            if try await accounts.needsFirstUser() { return DashboardRenderer.redirect(to: "/setup") }
            return DashboardRenderer.redirect(to: context.session == nil ? "/login" : "/workspaces")
        }
        pages.get("setup") { _, _ -> Response in
            guard try await accounts.needsFirstUser() else { return DashboardRenderer.redirect(to: "/") }
            return setupForm(AccountForm())
        }
        pages.post("setup", use: setUp)
        pages.post("logout") { request, context -> Response in
            try DashboardForms.requireSameOrigin(request)
            if let session = context.session { try await accounts.signOut(session) }
            var response = DashboardRenderer.redirect(to: "/login")
            response.setCookie(accounts.sessions.expiredCookie())
            return response
        }
        pages.get("workspaces") { request, context -> Response in
            let user = try Self.signedIn(context)
            let view = DashboardViewBuilder(configuration: configuration, derpMap: derpMap.current, now: workspaces.clock.now)
                .workspaces(try await workspaces.visibleWorkspaces(for: user), viewer: user)
            // The page's script re-fetches just the list.
            if request.uri.queryParameters.has("fragment") { return DashboardRenderer.htmlResponse(renderer.html("workspaces-list", view)) }
            return renderer.page("workspaces", title: "Workspaces", user: PageUser(user, section: .workspaces), content: view)
        }
        pages.get("users") { _, context -> Response in
            let user = try Self.signedIn(context)
            guard user.role == .owner else { throw APIError.forbidden("Only the deployment owner sees the list of users.") }
            let users = try await accounts.store.users()
            return renderer.page("users", title: "Users", user: PageUser(user, section: .users), content: UsersView(users))
        }
        pages.get("terminal/:agent") { _, context -> Response in
            let user = try Self.signedIn(context)
            guard let id = context.parameters.get("agent", as: UUID.self), let found = try await workspaces.visibleAgent(id: id, for: user)
            else { throw APIError.notFound("Agent not found.") }
            let (agent, workspace) = found
            let owner = try await accounts.store.user(id: workspace.ownerID)
            let view = TerminalView(
                agentID: agent.id.uuidString.lowercased(), agentName: agent.name, workspaceName: workspace.name, ownerName: owner?.username ?? "",
                xtermInstalled: await xterm.isInstalled(), xtermPath: xterm.directory
            )
            return renderer.page("terminal", title: "Terminal · \(agent.name)", user: PageUser(user), content: view)
        }
    }

    /// The signed-in user, or `SignInRequired` (a redirect to the sign-in form that comes back here).
    static func signedIn(_ context: GatewayContext) throws -> User {
        guard let session = context.session else { throw SignInRequired() }
        return session.user
    }

    struct SetupForm: Decodable {
        var email: String
        var username: String
        var password: String
        var confirm: String
    }

    /// Creates the owner through the same code as `POST /api/v2/users/first`, then signs them in.
    private func setUp(_ request: Request, context: GatewayContext) async throws -> Response {
        let form = try await DashboardForms.decode(SetupForm.self, from: request, context: context)
        var shown = AccountForm(email: form.email, username: form.username)
        guard form.password == form.confirm else {
            shown.error = "The two passwords differ."
            return setupForm(shown, status: .badRequest)
        }
        do {
            _ = try await accounts.createFirstUser(CreateUserRequest(email: form.email, username: form.username, password: form.password), logger: context.logger)
            let (token, key) = try await accounts.signIn(email: form.email, password: form.password, from: context.remoteAddress, logger: context.logger)
            var response = DashboardRenderer.redirect(to: "/workspaces")
            response.setCookie(accounts.sessions.cookie(token.value, expires: key.expiresAt))
            return response
        } catch let error as APIError where error.status == .badRequest {
            shown.error = [error.message, error.detail].compactMap { $0 }.joined(separator: " ")
            return setupForm(shown, status: .badRequest)
        }
    }

    private func setupForm(_ form: AccountForm, status: HTTPResponse.Status = .ok) -> Response {
        renderer.page("setup", title: "Set up", user: nil, content: form, status: status)
    }
}

/// Form posts of the dashboard: bounded, URL-encoded, from this origin only.
enum DashboardForms {
    static let maxBodyBytes = 16 << 10

    static func decode<Form: Decodable>(_ type: Form.Type, from request: Request, context: GatewayContext) async throws -> Form {
        try requireSameOrigin(request)
        let body = try await request.body.collect(upTo: maxBodyBytes)
        do {
            return try URLEncodedFormDecoder().decode(Form.self, from: String(buffer: body))
        } catch {
            throw APIError.badRequest("The form was incomplete; please fill in every field.")
        }
    }

    /// Refuses cross-site posts (login CSRF, forced sign-out) by the browser's own account of where a request came
    /// from; clients that send neither header (curl, tests) are not browsers being tricked.
    static func requireSameOrigin(_ request: Request) throws {
        if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!] {
            guard site == "same-origin" || site == "none" else { throw APIError.forbidden("This form must be sent from this site.") }
        } else if let origin = request.headers[.origin] {
            guard let url = URL(string: origin), let host = url.host, let authority = request.head.authority,
                authority.lowercased() == (host + (url.port.map { ":\($0)" } ?? "")).lowercased()
            else { throw APIError.forbidden("This form must be sent from this site.") }
        }
    }
}
