import Foundation
import HTTPTypes
import Hummingbird

/// `GET /login?redirect=/path`: the sign-in form that apps and dashboard pages send browsers to. It posts to
/// `POST /login`, which signs in like the login API (same code, same rate limit, same session cookie) and then
/// goes to `redirect`: a path on this host only, never another origin.
struct LoginPage {
    let accounts: Accounts
    let renderer: DashboardRenderer

    struct Form: Decodable {
        var email: String
        var password: String
        var redirect: String?
    }

    func addRoutes(to group: RouterGroup<GatewayContext>) {
        group.get("login") { request, context -> Response in
            let target = Self.safeRedirect(request.uri.queryParameters.get("redirect"))
            // Already signed in: nothing to ask.
            if context.session != nil { return DashboardRenderer.redirect(to: target == "/" ? "/workspaces" : target) }
            return form(AccountForm(redirect: target))
        }
        group.post("login") { request, context -> Response in
            let form = try await DashboardForms.decode(Form.self, from: request, context: context)
            let target = Self.safeRedirect(form.redirect)
            do {
                let (token, key) = try await accounts.signIn(email: form.email, password: form.password, from: context.remoteAddress, logger: context.logger)
                var response = DashboardRenderer.redirect(to: target == "/" ? "/workspaces" : target)
                response.setCookie(accounts.sessions.cookie(token.value, expires: key.expiresAt))
                return response
            } catch let error as APIError {
                return self.form(AccountForm(email: form.email, redirect: target, error: error.message), status: error.status, headers: error.headers)
            }
        }
    }

    func form(_ form: AccountForm, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        renderer.page("login", title: "Sign in", user: nil, content: form, status: status, headers: headers)
    }

    /// A local path, or "/" for anything that could leave this origin (`//host`, `/\host`, schemes, controls).
    static func safeRedirect(_ value: String?) -> String {
        guard let value, value.hasPrefix("/"), !value.hasPrefix("//"), !value.hasPrefix("/\\"),
            !value.contains(where: { $0.isNewline || $0 == "\\" || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7f } ?? false })
        else { return "/" }
        return value
    }
}
