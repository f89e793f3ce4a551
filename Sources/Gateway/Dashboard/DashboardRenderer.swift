import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Mustache
import NIOCore

/// The templates, parsed once, and the responses built from them.
struct DashboardRenderer: Sendable {
    let library: MustacheLibrary

    /// The compiled-in templates are constants: one that does not parse is a programmer error (DashboardTests parses them all).
    static let shared: DashboardRenderer = {
        var library = MustacheLibrary()
        for template in DashboardTemplates.all {
            do {
                try library.register(template.text, named: template.name)
            } catch {
                preconditionFailure("dashboard template \(template.name) does not parse: \(error)")
            }
        }
        return DashboardRenderer(library: library)
    }()

    func html(_ template: String, _ object: Any) -> String {
        guard let html = library.render(object, withTemplate: template) else { preconditionFailure("no dashboard template \(template)") }
        return html
    }

    func page<Content>(
        _ template: String, title: String, user: PageUser?, content: Content, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]
    ) -> Response {
        Self.htmlResponse(html(template, Page(title: title, user: user, content: content)), status: status, headers: headers)
    }

    func message(_ heading: String, _ message: String, user: PageUser?, status: HTTPResponse.Status) -> Response {
        page("message", title: heading, user: user, content: MessageView(heading: heading, message: message), status: status)
    }

    static func htmlResponse(_ html: String, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// 303: after a form post the browser GETs the new page, so a reload does not post again.
    static func redirect(to location: String, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.location] = location
        headers[.cacheControl] = "no-store"
        return Response(status: .seeOther, headers: headers)
    }
}

/// Thrown by a dashboard page that needs a session; `DashboardMiddleware` turns it into a redirect to the sign-in form.
struct SignInRequired: Error {}

/// Every dashboard response: security headers; errors as HTML pages (the API's JSON errors are not for people);
/// signed-out visitors to `/login?redirect=<where they were going>`.
struct DashboardMiddleware: RouterMiddleware {
    let renderer: DashboardRenderer

    /// Only this origin's files: no inline script or style, no framing, forms post here only.
    static let contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    static func addSecurityHeaders(to headers: inout HTTPFields) {
        headers[HTTPField.Name("Content-Security-Policy")!] = contentSecurityPolicy
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
    }

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch is SignInRequired {
            let target = LoginPage.safeRedirect(request.uri.string)
            response = DashboardRenderer.redirect(to: target == "/" ? "/login" : "/login?redirect=" + Self.queryEscaped(target))
        } catch let error as APIError {
            response = renderer.message(Self.heading(for: error.status), error.message, user: context.session.map { PageUser($0.user) }, status: error.status)
            for field in error.headers { response.headers.append(field) }
        } catch let error as any HTTPResponseError {
            response = renderer.message(Self.heading(for: error.status), APIErrorMiddleware<GatewayContext>.message(for: error.status), user: context.session.map { PageUser($0.user) }, status: error.status)
        } catch {
            // The cause goes to the log only, as in the API.
            context.logger.error("Dashboard page failed", metadata: ["error": "\(error)", "http.route": "\(context.endpointPath ?? "-")"])
            response = renderer.message("Something went wrong", "An internal error occurred.", user: nil, status: .internalServerError)
        }
        Self.addSecurityHeaders(to: &response.headers)
        return response
    }

    static func heading(for status: HTTPResponse.Status) -> String {
        switch status {
        case .notFound: "Not found"
        case .forbidden: "Not allowed"
        case .conflict: "Already done"
        case .tooManyRequests: "Too many attempts"
        default: status.reasonPhrase
        }
    }

    static func queryEscaped(_ text: String) -> String {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+?#")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? "/"
    }
}
