import Tunnel
import AppProxy
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// A verified caller: the user and the key (session or CLI token) they presented.
public struct AuthenticatedSession: Sendable {
    public let user: User
    public let key: APIKey
}

/// Where session credentials travel, as named once in `MeshgateCredentials` (which the app proxy strips).
public enum SessionCredential {
    public static let cookieName = MeshgateCredentials.sessionCookie
    public static let headerName = HTTPField.Name(MeshgateCredentials.sessionHeader)!
    public static let agentTokenHeaderName = HTTPField.Name(MeshgateCredentials.agentTokenHeader)!

    /// The token a request presents: the header wins over the cookie.
    static func presented(in request: Request) -> String? {
        if let header = request.headers[headerName], !header.isEmpty { return header }
        return request.cookies[cookieName]?.value
    }
}

/// Checks presented tokens against the store: shape, existence, constant-time secret match, expiry.
public struct Authenticator: Sendable {
    public enum Outcome: Sendable {
        case valid(AuthenticatedSession)
        /// The token was refused; the reason is safe to show (it never says which half was wrong).
        case invalid(String)
    }

    let store: any Store
    let clock: any WallClock

    public init(store: any Store, clock: any WallClock) { (self.store, self.clock) = (store, clock) }

    /// What a credential is presented for. `app_connect` keys (minted by the cross-domain app login and held in app
    /// cookies) open workspace apps only: an app that somehow got hold of one still cannot use the API.
    public enum Scope: Sendable { case api, apps }

    public func authenticate(_ presented: String, scope: Scope = .api) async throws -> Outcome {
        guard let token = SecretToken(presented), let key = try await store.apiKey(id: token.id),
            token.matches(hashedSecret: key.hashedSecret)
        else { return .invalid("Invalid session token.") }
        guard scope == .apps || key.loginType != .appConnect else { return .invalid("This token only opens workspace apps.") }
        guard key.expiresAt > clock.now else {
            try? await store.deleteAPIKey(id: key.id)  // lazily sweep; a concurrent delete is harmless
            return .invalid("Session token expired.")
        }
        guard let user = try await store.user(id: key.userID) else { return .invalid("Invalid session token.") }
        return .valid(AuthenticatedSession(user: user, key: key))
    }

    /// Verifies an agent token (`Meshgate-Agent-Token`); nil when unknown or wrong.
    public func agent(presenting presented: String) async throws -> Agent? {
        guard let token = SecretToken(presented), let agent = try await store.agent(tokenID: token.id),
            token.matches(hashedSecret: agent.hashedTokenSecret)
        else { return nil }
        return agent
    }

    /// The agent whose token the request presents in `Meshgate-Agent-Token`; nil when none or invalid.
    func agent(in request: Request) async throws -> Agent? {
        guard let presented = request.headers[SessionCredential.agentTokenHeaderName] else { return nil }
        return try await agent(presenting: presented)
    }
}

/// Attaches the session to the context when the request presents a valid one. Never rejects by itself:
/// routes that need a session sit in a `SignedInContext` group, so public routes still work with a stale cookie.
struct SessionMiddleware<Context: SessionCarrying>: RouterMiddleware {
    let authenticator: Authenticator

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let presented = SessionCredential.presented(in: request) {
            switch try await authenticator.authenticate(presented) {
            case .valid(let session):
                context.session = session
                context.logger[metadataKey: "user.id"] = "\(session.user.id)"
            case .invalid(let reason):
                context.sessionProblem = reason
            }
        }
        return try await next(request, context)
    }
}
