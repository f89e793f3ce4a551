import Foundation
import HTTPTypes
import NIOCore
import Tunnel

/// Resolve → authorize for one app request, the same for plain requests and WebSocket upgrades: the answer is
/// either "proxy to this app" (with a fresh token cookie to set, maybe) or a response to send instead.
///
/// The fast path is a valid signed app token in the app's cookie: it names the agent and the upstream, so no
/// store work happens. Otherwise the session (cookie or header) is checked, the app resolved and authorized, and
/// a new token issued for the next minute of requests.
public struct AppGate: Sendable {
    public struct Configuration: Sendable {
        /// The primary's access URL: sign-in and the cross-domain login live there.
        public var accessURL: URL
        public var hostname: AppHostname?
        public var pathAppsDisabled: Bool
        public var pathAppSharing: Bool

        public init(accessURL: URL, hostname: AppHostname?, pathAppsDisabled: Bool, pathAppSharing: Bool) {
            (self.accessURL, self.hostname, self.pathAppsDisabled, self.pathAppSharing) = (accessURL, hostname, pathAppsDisabled, pathAppSharing)
        }
    }

    /// What the request carries that the gate looks at.
    public struct Credentials: Sendable {
        /// Request cookies by name (the first of each name wins).
        public var cookies: [String: String]
        /// `Meshgate-Session-Token`, for API clients.
        public var sessionHeader: String?

        public init(cookies: [String: String], sessionHeader: String?) { (self.cookies, self.sessionHeader) = (cookies, sessionHeader) }

        /// Parses `Cookie` header values.
        public init(cookieHeaders: [String], sessionHeader: String?) {
            var cookies: [String: String] = [:]
            for header in cookieHeaders {
                for pair in CookieHeader.pairs(header) {
                    // An empty name or value names nothing: it must not hide a later cookie of the same name.
                    guard let value = pair.value, !value.isEmpty, !pair.name.isEmpty else { continue }
                    let name = String(pair.name)
                    if cookies[name] == nil { cookies[name] = String(value) }
                }
            }
            self.init(cookies: cookies, sessionHeader: sessionHeader)
        }
    }

    public enum Admission: Sendable {
        /// Proxy to `app`; `setCookie` (a fresh signed token) goes on the response.
        case proxy(ResolvedApp, setCookie: String?)
        /// Send this instead.
        case respond(AppGateResponse)
    }

    public let configuration: Configuration
    let resolver: any AppResolver
    let sessions: any AppSessionAuthenticator
    let tokens: any AppKeys<AppTokenSigning>
    let now: @Sendable () -> Date
    /// Shared by every copy of the gate and by the NIO fast path (`AppFastPath`).
    let verifiedTokens: VerifiedAppTokens
    /// `AppTokenCookie.subdomainName` of the configuration's wildcard, hashed once.
    private let subdomainCookieName: String

    public init(
        configuration: Configuration, resolver: any AppResolver, sessions: any AppSessionAuthenticator, tokens: any AppKeys<AppTokenSigning>,
        now: @escaping @Sendable () -> Date, verifiedTokens: VerifiedAppTokens = VerifiedAppTokens()
    ) {
        (self.configuration, self.resolver, self.sessions, self.tokens, self.now) = (configuration, resolver, sessions, tokens, now)
        self.verifiedTokens = verifiedTokens
        subdomainCookieName = AppTokenCookie.subdomainName(wildcardHost: configuration.hostname)
    }

    /// `originalURL` is the URL the browser asked for (where to come back after signing in).
    public func admit(_ request: AppRequest, credentials: Credentials, secure: Bool, originalURL: String) async -> Admission {
        if request.accessMethod == .path, configuration.pathAppsDisabled { return .respond(.page(.pathAppsDisabled())) }
        let cookie = AppTokenCookie(for: request, subdomainName: subdomainCookieName, secure: secure)
        if let token = cookie.value(in: credentials), let verified = try? await tokens.verify(token, now: now(), for: request, cache: verifiedTokens) {
            return .proxy(ResolvedApp(token: verified), setCookie: nil)
        }
        let requester: AppRequester?
        do {
            let presented = credentials.cookies[MeshgateCredentials.sessionCookie] ?? credentials.sessionHeader
            requester = try await presented.asyncMap { try await sessions.requester(presenting: $0) } ?? nil
        } catch {
            return .respond(.page(.internalError("The session could not be checked.", cause: error)))
        }
        let app: ResolvedApp
        do {
            switch try await resolver.resolve(request) {
            case .success(let resolved): app = resolved
            case .failure(.notFound): return .respond(requester == nil ? signIn(request, originalURL: originalURL) : .page(.notFound()))
            case .failure(.ambiguousAgent(let agents)): return .respond(.page(.ambiguousAgent(agents)))
            }
        } catch {
            return .respond(.page(.internalError("The app could not be looked up.", cause: error)))
        }
        switch AppAccess.decide(app, requester: requester, pathAppSharing: configuration.pathAppSharing) {
        case .signInRequired: return .respond(signIn(request, originalURL: originalURL))
        case .forbidden(let reason): return .respond(.page(.forbidden(reason)))
        case .allowed: break
        }
        guard app.agentConnected else { return .respond(.page(.workspaceOffline(agent: app.agentName))) }
        // Anonymous visitors of public apps get no token: there is nobody to bind it to.
        guard let requester else { return .proxy(app, setCookie: nil) }
        let signed = SignedAppToken(app: app, userID: requester.userID, now: now())
        guard let keyring = try? await tokens.keyring(), let token = try? keyring.sign(signed) else { return .proxy(app, setCookie: nil) }
        // What this gateway just signed needs no verifying: the browser's next request can take the fast path.
        verifiedTokens.insert(token, token: signed, keyExpiry: keyring.current.expiresAt, now: now())
        return .proxy(app, setCookie: cookie.setCookie(token))
    }

    /// `admit`'s first step alone, without waiting for anything: the app the request's token cookie vouches for,
    /// if this gateway verified that token before and it still holds for `request`. nil leaves the request to
    /// `admit` (no token, a new one, an expired one, path apps turned off).
    public func admitFromVerifiedToken(_ request: AppRequest, cookieHeaders: [String], secure: Bool) -> ResolvedApp? {
        if request.accessMethod == .path, configuration.pathAppsDisabled { return nil }
        let name = AppTokenCookie(for: request, subdomainName: subdomainCookieName, secure: secure).name
        guard let text = CookieHeader.firstValue(named: name, in: cookieHeaders), let token = verifiedTokens.token(for: String(text), now: now()),
            token.request == request
        else { return nil }
        return ResolvedApp(token: token)
    }

    /// A CORS preflight for an app that answers them itself (`cors: passthru`): resolved, but not authorized, since
    /// a preflight never carries credentials. nil for any other app, which keeps meshgate's own CORS rule.
    public func passthroughPreflight(_ request: AppRequest) async -> ResolvedApp? {
        guard request.accessMethod == .subdomain, case .success(let app)? = try? await resolver.resolve(request),
            app.cors == .passthru, app.agentConnected
        else { return nil }
        return app
    }

    /// Path apps share the dashboard's origin and its session cookie: sign in there. Subdomain apps cannot see
    /// that cookie: the primary's auth-redirect vouches for the session with a one-minute key in the URL.
    func signIn(_ request: AppRequest, originalURL: String) -> AppGateResponse {
        switch request.accessMethod {
        case .path:
            return .redirect(to: "/login?redirect=" + Self.queryEncoded(originalURL))
        case .subdomain:
            var url = configuration.accessURL.absoluteString
            while url.hasSuffix("/") { url.removeLast() }
            return .redirect(to: url + "/api/v2/applications/auth-redirect?redirect_uri=" + Self.queryEncoded(originalURL))
        }
    }

    static func queryEncoded(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}

/// A response the gate sends instead of proxying: a page, or a redirect (303 by default, so a POST is not
/// replayed; 307 where the same request should simply go to the corrected URL).
public enum AppGateResponse: Sendable, Equatable {
    case page(AppErrorPage)
    case redirect(to: String, status: Int = 303)

    /// The response to send: a page as HTML, or as JSON for an API client (`json`).
    public func rendered(json: Bool) -> (head: HTTPResponse, body: ByteBuffer?) {
        switch self {
        case .redirect(let location, let status):
            return (HTTPResponse(status: .init(code: status), headerFields: [.location: location, .cacheControl: "no-store"]), nil)
        case .page(let page):
            let (type, body) = json ? ("application/json", page.json) : ("text/html; charset=utf-8", page.html)
            let head = HTTPResponse(status: .init(code: page.status), headerFields: [.contentType: type, .cacheControl: "no-store"])
            return (head, ByteBuffer(string: body))
        }
    }
}

extension AppTokenCookie {
    func value(in credentials: AppGate.Credentials) -> String? { credentials.cookies[name] }
}

extension ResolvedApp {
    /// What a verified token vouches for: enough to proxy. The owner and display fields are not in the token and
    /// are not needed past the gate.
    init(token: SignedAppToken) {
        self.init(
            request: token.request, ownerID: token.userID, workspaceID: token.workspaceID, agentID: token.agentID, agentName: token.request.agent ?? "",
            agentConnected: true, port: token.upstream.port, https: token.upstream.https, pathPrefix: token.upstream.pathPrefix, sharingLevel: .owner,
            displayName: "", health: nil, cors: token.upstream.cors
        )
    }
}

extension Optional {
    fileprivate func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        switch self {
        case .some(let value): try await transform(value)
        case .none: nil
        }
    }
}
