import AppProxy
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// `GET /api/v2/applications/auth-redirect?redirect_uri=<app URL>`: the cross-domain login of subdomain apps.
///
/// A subdomain app's host never sees the dashboard's session cookie, so it sends the browser here. With a session,
/// this mints a new API key of login type `app_connect` (it opens apps, never the API, and dies with the session
/// at the latest), seals it for that one app host and one minute (`AppConnectKey`) and 303s back to `redirect_uri`
/// with it in the query item `meshgate_app_key`. Without a session the browser goes to the login page first, which
/// returns here. A `redirect_uri` that is not an app URL of this deployment is refused (400): no open redirect.
struct ApplicationsRoutes {
    let store: any Store
    let clock: any WallClock
    let configuration: GatewayConfiguration
    let sessions: SessionPolicy
    let connectKeys: any AppKeys<AppConnectEncryption>

    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!

    /// Public: the route answers a missing session itself, with the login page rather than a JSON 401.
    func addRoutes(to group: RouterGroup<GatewayContext>) {
        group.get("applications/auth-redirect", use: authRedirect)
    }

    private func authRedirect(_ request: Request, context: GatewayContext) async throws -> Response {
        guard let policy = AppRedirectPolicy(configuration: configuration) else {
            throw APIError.notFound("Subdomain apps are not enabled on this deployment.")
        }
        let uris = request.uri.queryParameters.getAll("redirect_uri")
        // Exactly one: with two, something in between might check one and follow the other.
        guard uris.count == 1, let uri = uris.first, !uri.isEmpty else {
            throw APIError.badRequest("Invalid redirect_uri.", detail: "exactly one redirect_uri query parameter is required")
        }
        let target: AppRedirectPolicy.Target
        switch policy.check(uri) {
        case .success(let accepted): target = accepted
        case .failure(let refusal): throw APIError.badRequest("Invalid redirect_uri.", detail: refusal.detail)
        }
        guard let session = context.session else { return Self.redirect(to: "/login?redirect=" + Self.queryEncoded(request.uri.description)) }

        let now = clock.now
        let lifetime = min(sessions.sessionLifetime, session.key.expiresAt.timeIntervalSince(now))
        let (token, key) = sessions.newKey(for: session.user, type: .appConnect, name: "app_connect \(target.host)", lifetime: lifetime, now: now)
        try await store.insertAPIKey(key)
        let sealed = try AppConnectKey(credential: token.value, host: target.host, now: now).seal(with: try await connectKeys.keyring())
        context.logger.info("Minted an app-connect key", metadata: ["api_key.id": "\(key.id)", "app.host": "\(target.host)"])
        return Self.redirect(to: AppConnectKey.appendingQueryItem(name: AppConnectKey.queryItemName, value: sealed, to: target.uri))
    }

    /// 303 (the next request is a GET whatever this one was), never cached, and no `Referer` carrying the key onwards.
    static func redirect(to location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store", referrerPolicy: "no-referrer"])
    }

    private static func queryEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/")) ?? "/"
    }
}
