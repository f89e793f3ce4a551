import Foundation
import Logging
import NIOCore
import NIOFoundationEssentialsCompat
import Gateway
import HTTPTypes
import HummingbirdTesting
import Testing

@Suite struct AccountsAPITests {
    /// The first POST /users/first creates the owner; every later one is refused with 409.
    @Test func firstUserSetupThenRefusal() async throws {
        try await Deployment().test { api in
            #expect(try await api.request(.get, "/api/v2/users/first").status == .notFound)
            let created = try await api.request(.post, "/api/v2/users/first", json: APIClient.owner)
            #expect(created.status == .created)
            #expect(try created.object()["role"] as? String == "owner")
            #expect(try created.object()["password_hash"] == nil)

            let again = try await api.request(.post, "/api/v2/users/first", json: ["email": "b@example.com", "username": "b", "password": "another password"])
            #expect(again.status == .conflict)
            #expect(again.message == "The initial user has already been created.")
            #expect(try await api.request(.get, "/api/v2/users/first").status == .ok)
        }
    }

    /// Login returns a token and an HttpOnly, Secure, SameSite=Lax cookie; both authenticate; logout ends it.
    @Test func loginCookieAndLogout() async throws {
        try await Deployment().test { api in
            try await api.request(.post, "/api/v2/users/first", json: APIClient.owner)
            let login = try await api.request(.post, "/api/v2/users/login", json: ["email": "owner@example.com", "password": "correct horse battery"])
            #expect(login.status == .created)
            let token = try #require(try login.object()["session_token"] as? String)
            let cookie = try #require(login.headers[.setCookie])
            #expect(cookie.hasPrefix("meshgate_session_token=\(token)"))
            #expect(cookie.contains("HttpOnly") && cookie.contains("Secure") && cookie.contains("SameSite=Lax"))

            let me = try await api.request(.get, "/api/v2/users/me", token: token)
            #expect(try me.object()["username"] as? String == "owner")
            let viaCookie = try await api.request(.get, "/api/v2/users/me", headers: [.cookie: "meshgate_session_token=\(token)"])
            #expect(viaCookie.status == .ok)

            #expect(try await api.request(.post, "/api/v2/users/logout", token: token).status == .ok)
            let after = try await api.request(.get, "/api/v2/users/me", token: token)
            #expect(after.status == .unauthorized)
        }
    }

    /// A session stops working once the clock passes its expiry, and says why.
    @Test func sessionExpiry() async throws {
        let deployment = try Deployment(sessionLifetime: 3600)
        try await deployment.test { api in
            let token = try await api.signInOwner()
            deployment.clock.advance(by: 3599)
            #expect(try await api.request(.get, "/api/v2/users/me", token: token).status == .ok)
            deployment.clock.advance(by: 2)
            let expired = try await api.request(.get, "/api/v2/users/me", token: token)
            #expect(expired.status == .unauthorized)
            #expect(expired.message == "Session token expired.")
            // Expired keys are removed, so the next attempt finds nothing.
            #expect(try await api.request(.get, "/api/v2/users/me", token: token).message == "Invalid session token.")
        }
    }

    /// CLI tokens authenticate like sessions and honour their requested lifetime.
    @Test func apiTokens() async throws {
        let deployment = try Deployment()
        try await deployment.test { api in
            let session = try await api.signInOwner()
            let created = try await api.request(.post, "/api/v2/users/me/keys/tokens", json: ["lifetime_seconds": 120], token: session)
            #expect(created.status == .created)
            let key = try #require(try created.object()["key"] as? String)
            #expect(try await api.request(.get, "/api/v2/users/me", token: key).status == .ok)
            deployment.clock.advance(by: 121)
            #expect(try await api.request(.get, "/api/v2/users/me", token: key).status == .unauthorized)
            let defaulted = try await api.request(.post, "/api/v2/users/me/keys/tokens", token: session)
            #expect(defaulted.status == .created)
            let tooLong = try await api.request(.post, "/api/v2/users/me/keys/tokens", json: ["lifetime_seconds": 400 * 86_400], token: session)
            #expect(tooLong.status == .badRequest)
        }
    }

    /// Wrong password and unknown email get the same 401 and message: no hint which part was wrong.
    @Test func wrongCredentialsGiveNoHint() async throws {
        try await Deployment().test { api in
            try await api.request(.post, "/api/v2/users/first", json: APIClient.owner)
            let wrongPassword = try await api.request(.post, "/api/v2/users/login", json: ["email": "owner@example.com", "password": "wrong password!"])
            let unknownEmail = try await api.request(.post, "/api/v2/users/login", json: ["email": "nobody@example.com", "password": "correct horse battery"])
            #expect(wrongPassword.status == .unauthorized)
            #expect(unknownEmail.status == .unauthorized)
            #expect(String(buffer: wrongPassword.body) == String(buffer: unknownEmail.body))
        }
    }

    /// Past the per-client limit, logins get 429 with Retry-After, even with the right password.
    @Test func loginRateLimit() async throws {
        let deployment = try Deployment(loginRateLimit: 3)
        try await deployment.test { api in
            try await api.request(.post, "/api/v2/users/first", json: APIClient.owner)
            for _ in 0..<3 {
                let response = try await api.request(.post, "/api/v2/users/login", json: ["email": "owner@example.com", "password": "wrong password!"])
                #expect(response.status == .unauthorized)
            }
            let limited = try await api.request(.post, "/api/v2/users/login", json: ["email": "owner@example.com", "password": "correct horse battery"])
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[.retryAfter] == "60")
            deployment.clock.advance(by: 61)
            #expect(try await api.request(.post, "/api/v2/users/login", json: ["email": "owner@example.com", "password": "correct horse battery"]).status == .created)
        }
    }

    /// Bad input gets a JSON error with the right status.
    @Test func badInput() async throws {
        try await Deployment().test { api in
            let malformed = try await api.request(.post, "/api/v2/users/first", raw: "{\"email\": ")
            #expect(malformed.status == .badRequest)
            #expect(try malformed.object()["detail"] as? String == "malformed JSON")

            let missing = try await api.request(.post, "/api/v2/users/first", json: ["email": "a@example.com"])
            #expect(missing.status == .badRequest)
            #expect((try missing.object()["detail"] as? String)?.hasPrefix("missing field") == true)

            let oversized = try await api.request(.post, "/api/v2/users/first", raw: "{\"email\": \"" + String(repeating: "a", count: 2 << 20) + "\"}")
            #expect(oversized.status == .contentTooLarge)
            #expect(oversized.message == "Request body is too large.")

            let unknown = try await api.request(.get, "/api/v2/no/such/route")
            #expect(unknown.status == .notFound)
            #expect(unknown.headers[.contentType]?.hasPrefix("application/json") == true)
            #expect(unknown.message == "Route not found.")
            #expect(try unknown.object()["detail"] as? String == "")

            let badName = try await api.request(.post, "/api/v2/users/first", json: ["email": "a@example.com", "username": "a--b", "password": "long enough"])
            #expect(badName.status == .badRequest)
            let shortPassword = try await api.request(.post, "/api/v2/users/first", json: ["email": "a@example.com", "username": "ab", "password": "short"])
            #expect(shortPassword.status == .badRequest)
            #expect(try await api.request(.get, "/api/v2/users/me").message == "You are not signed in.")
            #expect(try await api.request(.get, "/api/v2/users/me", token: "garbage").status == .unauthorized)
        }
    }

    /// Only the owner manages users; members can sign in and see themselves.
    @Test func ownerManagesUsers() async throws {
        try await Deployment().test { api in
            let owner = try await api.signInOwner()
            let member = ["email": "dev@example.com", "username": "dev", "password": "member password"]
            let created = try await api.request(.post, "/api/v2/users", json: member, token: owner)
            #expect(created.status == .created)
            #expect(try created.object()["role"] as? String == "member")
            #expect(try await api.request(.post, "/api/v2/users", json: member, token: owner).status == .conflict)

            let memberToken = try await api.login("dev@example.com", "member password")
            #expect(try await api.request(.post, "/api/v2/users", json: ["email": "x@example.com", "username": "x", "password": "xxxxxxxx"], token: memberToken).status == .forbidden)
            #expect(try await api.request(.get, "/api/v2/users", token: owner).array().count == 2)

            let id = try #require(try created.object()["id"] as? String)
            #expect(try await api.request(.delete, "/api/v2/users/\(id)", token: owner).status == .noContent)
            #expect(try await api.request(.get, "/api/v2/users/me", token: memberToken).status == .unauthorized)
        }
    }

    @Test func healthAndBuildInfo() async throws {
        try await Deployment().test { api in
            let health = try await api.request(.get, "/healthz")
            #expect(String(buffer: health.body) == "OK")
            let info = try await api.request(.get, "/api/v2/buildinfo")
            #expect(try info.object()["access_url"] as? String == "https://meshgate.test")
            #expect(try info.object()["version"] as? String == BuildInfo.version)
        }
    }
}
