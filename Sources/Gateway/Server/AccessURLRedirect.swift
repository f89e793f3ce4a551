import Foundation
import HTTPTypes
import Hummingbird

/// On the plain-HTTP listener of a TLS deployment: send browsers to the access URL, keeping path and query.
/// `/healthz` still answers here, because load balancers often probe over plain HTTP.
struct AccessURLRedirectMiddleware<Context: RequestContext>: RouterMiddleware {
    let accessURL: URL

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/healthz" { return try await next(request, context) }
        var base = accessURL.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        // 307 keeps the method and body; it is not cached for ever, so a changed access URL takes effect.
        return Response(status: .temporaryRedirect, headers: [.location: base + request.uri.description])
    }
}
