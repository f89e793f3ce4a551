import Foundation
import Hummingbird
import Logging

/// First-user setup, password sign-in and sign-out: one implementation behind the JSON API and the dashboard's
/// forms, so both answer alike and share one login rate limit.
struct Accounts: Sendable {
    let store: any Store
    let hasher: PasswordHasher
    let clock: any WallClock
    let limiter: LoginRateLimiter
    let sessions: SessionPolicy

    /// Whether first-user setup is still open.
    func needsFirstUser() async throws -> Bool { try await store.userCount() == 0 }

    /// Creates the deployment's owner; refused (409) once any user exists.
    func createFirstUser(_ body: CreateUserRequest, logger: Logger) async throws -> User {
        try body.validate()
        // Cheap check first, so a refused request costs no argon2; insertFirstUser re-checks atomically.
        guard try await needsFirstUser() else { throw Self.firstUserExists }
        let user = User(email: body.email, username: body.username, role: .owner, passwordHash: try await hasher.hash(body.password), createdAt: clock.now)
        do {
            try await store.insertFirstUser(user)
        } catch StoreError.conflict {
            throw Self.firstUserExists
        }
        logger.info("Created the first user (owner)", metadata: ["user.id": "\(user.id)"])
        return user
    }

    static let firstUserExists = APIError.conflict("The initial user has already been created.")

    /// A new password session for `email`, stored; the token goes back in the login response and the cookie.
    func signIn(email: String, password: String, from address: String?, logger: Logger) async throws -> (token: SecretToken, key: APIKey) {
        guard limiter.allow(address ?? "unknown") else {
            throw APIError(.tooManyRequests, "Too many login attempts. Try again later.", headers: [.retryAfter: String(Int(limiter.window))])
        }
        let user = try await store.user(email: email)
        // Verify even when the email is unknown (against a decoy), and answer alike: no hint which part was wrong.
        guard password.count <= PasswordHasher.maximumLength, try await hasher.verify(password, against: user?.passwordHash), let user
        else { throw APIError(.unauthorized, "Incorrect email or password.") }
        let (token, key) = sessions.newKey(for: user, type: .password, name: nil, lifetime: sessions.sessionLifetime, now: clock.now)
        try await store.insertAPIKey(key)
        logger.info("User logged in", metadata: ["user.id": "\(user.id)", "api_key.id": "\(key.id)"])
        return (token, key)
    }

    /// Ends the session (or revokes the token) the caller presented, and with it every app login of the user's: the cookies the cross-domain login left on
    /// subdomain app hosts hold `app_connect` keys, which would otherwise open apps until they expire. (A signed
    /// app token already issued still opens its one app for the rest of its minute.)
    func signOut(_ session: AuthenticatedSession) async throws {
        try await store.deleteAPIKey(id: session.key.id)
        try await store.deleteAPIKeys(userID: session.key.userID, loginType: .appConnect)
    }
}
