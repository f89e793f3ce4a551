import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// First-user setup, login/logout, the signed-in user, user administration and CLI tokens.
struct UsersRoutes {
    let accounts: Accounts
    var store: any Store { accounts.store }
    var hasher: PasswordHasher { accounts.hasher }
    var clock: any WallClock { accounts.clock }
    var sessions: SessionPolicy { accounts.sessions }

    /// Routes any caller may use.
    func addPublicRoutes(to group: RouterGroup<GatewayContext>) {
        group.get("users/first") { _, _ -> MessageResponse in
            guard try await store.userCount() > 0 else { throw APIError.notFound("The initial user has not been created.") }
            return MessageResponse(message: "The initial user has already been created.")
        }
        group.post("users/first", use: createFirstUser)
        group.post("users/login", use: login)
    }

    /// Routes that need a session.
    func addSignedInRoutes(to group: RouterGroup<SignedInContext>) {
        group.post("users/logout", use: logout)
        group.get("users/me") { _, context in UserResponse(context.user) }
        group.post("users/me/keys/tokens", use: createToken)
        group.get("users") { _, context -> [UserResponse] in
            try requireOwner(context)
            return try await store.users().map(UserResponse.init)
        }
        group.post("users", use: createUser)
        group.delete("users/:user", use: deleteUser)
    }

    private func createFirstUser(_ request: Request, context: GatewayContext) async throws -> EditedResponse<UserResponse> {
        var request = request
        let body = try await request.decodeJSON(CreateUserRequest.self, context: context)
        return EditedResponse(status: .created, response: UserResponse(try await accounts.createFirstUser(body, logger: context.logger)))
    }

    private func login(_ request: Request, context: GatewayContext) async throws -> Response {
        var request = request
        let body = try await request.decodeJSON(LoginRequest.self, context: context)
        let (token, key) = try await accounts.signIn(email: body.email, password: body.password, from: context.remoteAddress, logger: context.logger)
        var response = try EditedResponse(status: .created, response: LoginResponse(sessionToken: token.value))
            .response(from: request, context: context)
        response.setCookie(sessions.cookie(token.value, expires: key.expiresAt))
        return response
    }

    private func logout(_ request: Request, context: SignedInContext) async throws -> Response {
        try await accounts.signOut(context.session)
        var response = try MessageResponse(message: "Logged out.").response(from: request, context: context)
        response.setCookie(sessions.expiredCookie())
        return response
    }

    private func createToken(_ request: Request, context: SignedInContext) async throws -> EditedResponse<TokenResponse> {
        var request = request
        let body = try await request.decodeJSONIfPresent(CreateTokenRequest.self, context: context) ?? CreateTokenRequest()
        let lifetime = TimeInterval(body.lifetimeSeconds ?? Int(sessions.tokenLifetime))
        guard lifetime > 0, lifetime <= sessions.maximumTokenLifetime else {
            throw APIError.badRequest(
                "Invalid token lifetime.", detail: "lifetime_seconds must be between 1 and \(Int(sessions.maximumTokenLifetime))"
            )
        }
        let (token, key) = sessions.newKey(for: context.user, type: .token, name: body.tokenName, lifetime: lifetime, now: clock.now)
        try await store.insertAPIKey(key)
        return EditedResponse(status: .created, response: TokenResponse(key: token.value))
    }

    private func createUser(_ request: Request, context: SignedInContext) async throws -> EditedResponse<UserResponse> {
        try requireOwner(context)
        var request = request
        let body = try await request.decodeJSON(CreateUserRequest.self, context: context)
        try body.validate()
        let user = User(email: body.email, username: body.username, role: .member, passwordHash: try await hasher.hash(body.password), createdAt: clock.now)
        do {
            try await store.insertUser(user)
        } catch StoreError.conflict(let what) {
            throw APIError.conflict("A user with that email or username already exists.", detail: what)
        }
        return EditedResponse(status: .created, response: UserResponse(user))
    }

    private func deleteUser(_ request: Request, context: SignedInContext) async throws -> Response {
        try requireOwner(context)
        let id = try context.parameters.require("user", as: UUID.self)
        guard id != context.user.id else { throw APIError.badRequest("You cannot delete your own account.") }
        do {
            try await store.deleteUser(id: id)
        } catch StoreError.notFound {
            throw APIError.notFound("User not found.")
        }
        return Response(status: .noContent)
    }

    private func requireOwner(_ context: SignedInContext) throws {
        guard context.user.role == .owner else { throw APIError.forbidden("Only the owner may manage users.") }
    }
}

/// Lifetimes and cookie attributes of sessions and tokens.
public struct SessionPolicy: Sendable {
    public var sessionLifetime: TimeInterval
    public var tokenLifetime: TimeInterval = 30 * 86_400
    public var maximumTokenLifetime: TimeInterval = 365 * 86_400
    /// Secure cookies need an https access URL: browsers drop them on plain-http origins other than localhost.
    public var secureCookies: Bool

    public init(sessionLifetime: TimeInterval, secureCookies: Bool) {
        (self.sessionLifetime, self.secureCookies) = (sessionLifetime, secureCookies)
    }

    func newKey(for user: User, type: APIKey.LoginType, name: String?, lifetime: TimeInterval, now: Date) -> (SecretToken, APIKey) {
        let token = SecretToken.generate()
        let key = APIKey(
            id: token.id, hashedSecret: token.hashedSecret, userID: user.id, loginType: type, name: name,
            createdAt: now, expiresAt: now.addingTimeInterval(lifetime)
        )
        return (token, key)
    }

    func cookie(_ value: String, expires: Date) -> Cookie {
        Cookie(name: SessionCredential.cookieName, value: value, expires: expires, path: "/", secure: secureCookies, httpOnly: true, sameSite: .lax)
    }

    func expiredCookie() -> Cookie {
        Cookie(name: SessionCredential.cookieName, value: "", maxAge: 0, path: "/", secure: secureCookies, httpOnly: true, sameSite: .lax)
    }
}
