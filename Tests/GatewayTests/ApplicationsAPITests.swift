import AppProxy
import Foundation
import Gateway
import HTTPTypes
import HummingbirdTesting
import Testing

@Suite struct ApplicationsAPITests {
    static let appURL = "https://code--main--dev--owner.apps.meshgate.test/src/?folder=/home"
    static let appHost = "code--main--dev--owner.apps.meshgate.test"

    static func deployment(sessionLifetime: TimeInterval = 3600, wildcard: String? = "*.apps.meshgate.test") throws -> Deployment {
        var deployment = try Deployment(sessionLifetime: sessionLifetime)
        deployment.environment.configuration.wildcardAccessURL = wildcard
        return deployment
    }

    static func authRedirect(_ uri: String) -> String {
        "/api/v2/applications/auth-redirect?redirect_uri=" + uri.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
    }

    /// Signed in: 303 back to the app with a sealed key that opens, for that host and for one minute, to a new
    /// `app_connect` API key, which opens apps but not the API.
    @Test func signedInGetsASealedAppKey() async throws {
        let deployment = try Self.deployment()
        try await deployment.test { api in
            let session = try await api.signInOwner()
            let response = try await api.request(.get, Self.authRedirect(Self.appURL), token: session)
            #expect(response.status == .seeOther)
            #expect(response.headers[.cacheControl] == "no-store" && response.headers[HTTPField.Name("Referrer-Policy")!] == "no-referrer")
            let location = try #require(response.headers[.location])
            let prefix = Self.appURL + "&meshgate_app_key="
            #expect(location.hasPrefix(prefix))
            let sealed = String(location.dropFirst(prefix.count))
            #expect(AppConnectKey.removingQueryItem(from: location) == Self.appURL)

            let keyring = try await deployment.environment.appConnectKeys.keyring()
            let now = deployment.clock.now
            let credential = try #require(AppConnectKey.open(sealed, keys: keyring, now: now, expectedHost: Self.appHost))
            #expect(credential != session)
            #expect(AppConnectKey.open(sealed, keys: keyring, now: now, expectedHost: "term--main--dev--owner.apps.meshgate.test") == nil)
            #expect(AppConnectKey.open(sealed, keys: keyring, now: now + 60, expectedHost: Self.appHost) == nil)

            let authenticator = Authenticator(store: deployment.store, clock: deployment.clock)
            guard case .valid(let app) = try await authenticator.authenticate(credential, scope: .apps) else {
                Issue.record("the app credential does not authenticate for apps")
                return
            }
            #expect(app.key.loginType == .appConnect && app.user.username == "owner")
            #expect(app.key.expiresAt <= now + 3600)
            let asAPI = try await api.request(.get, "/api/v2/users/me", token: credential)
            #expect(asAPI.status == .unauthorized && asAPI.message == "This token only opens workspace apps.")
            // Nor can it mint more of itself: to the API it is no session.
            let again = try await api.request(.get, Self.authRedirect(Self.appURL), token: credential)
            #expect(again.status == .seeOther && again.headers[.location]?.hasPrefix("/login?") == true)
        }
    }

    /// The app credential never outlives the session it was minted from.
    @Test func appKeyEndsWithTheSession() async throws {
        let deployment = try Self.deployment(sessionLifetime: 3600)
        try await deployment.test { api in
            let session = try await api.signInOwner()
            deployment.clock.advance(by: 3000)
            let response = try await api.request(.get, Self.authRedirect("https://8080--main--dev--owner.apps.meshgate.test"), token: session)
            let location = try #require(response.headers[.location])
            #expect(location.hasPrefix("https://8080--main--dev--owner.apps.meshgate.test?meshgate_app_key="))
            let sealed = String(location.split(separator: "=", maxSplits: 1)[1])
            let keyring = try await deployment.environment.appConnectKeys.keyring()
            let credential = try #require(
                AppConnectKey.open(sealed, keys: keyring, now: deployment.clock.now, expectedHost: "8080--main--dev--owner.apps.meshgate.test:443")
            )
            let authenticator = Authenticator(store: deployment.store, clock: deployment.clock)
            guard case .valid(let app) = try await authenticator.authenticate(credential, scope: .apps) else { Issue.record("invalid"); return }
            #expect(app.key.expiresAt == deployment.clock.now + 600)
        }
    }

    /// Signing out ends the user's app logins too: the app credential a subdomain host holds stops working.
    @Test func signingOutRevokesAppLogins() async throws {
        let deployment = try Self.deployment()
        try await deployment.test { api in
            let session = try await api.signInOwner()
            let other = try await api.signInOwner()
            let response = try await api.request(.get, Self.authRedirect(Self.appURL), token: session)
            let location = try #require(response.headers[.location])
            let sealed = String(location.dropFirst((Self.appURL + "&meshgate_app_key=").count))
            let keyring = try await deployment.environment.appConnectKeys.keyring()
            let credential = try #require(AppConnectKey.open(sealed, keys: keyring, now: deployment.clock.now, expectedHost: Self.appHost))
            let authenticator = Authenticator(store: deployment.store, clock: deployment.clock)
            guard case .valid = try await authenticator.authenticate(credential, scope: .apps) else { Issue.record("invalid before sign-out"); return }

            #expect(try await api.request(.post, "/api/v2/users/logout", token: session).status == .ok)
            guard case .invalid = try await authenticator.authenticate(credential, scope: .apps) else {
                Issue.record("the app credential outlived the sign-out")
                return
            }
            // Another session of the same user is its own sign-in and stays.
            #expect(try await api.request(.get, "/api/v2/users/me", token: other).status == .ok)
        }
    }

    /// No session (or an expired one): to the login page, which comes back here.
    @Test func notSignedInGoesToLogin() async throws {
        let deployment = try Self.deployment(sessionLifetime: 60)
        try await deployment.test { api in
            let path = Self.authRedirect(Self.appURL)
            let response = try await api.request(.get, path)
            #expect(response.status == .seeOther)
            let location = try #require(response.headers[.location])
            #expect(location.hasPrefix("/login?redirect="))
            #expect(String(location.dropFirst("/login?redirect=".count)).removingPercentEncoding == path)

            let session = try await api.signInOwner()
            deployment.clock.advance(by: 61)
            let expired = try await api.request(.get, path, headers: [.cookie: "meshgate_session_token=\(session)"])
            #expect(expired.status == .seeOther && expired.headers[.location]?.hasPrefix("/login?redirect=") == true)
            #expect(try await deployment.store.appKeys(feature: AppConnectEncryption.name).isEmpty)
        }
    }

    /// Nothing but an app URL of this deployment, on its scheme and port: no open redirect.
    @Test func badRedirectTargetsAreRefused() async throws {
        let deployment = try Self.deployment()
        try await deployment.test { api in
            let session = try await api.signInOwner()
            let refused = [
                "", "//evil.com", "https://evil.com", "/relative/path", "https:evil.com", "https:///evil.com",
                "https://x.apps.meshgate.test.evil.com", "https://code--main--dev--owner.apps.meshgate.test.evil.com/",
                "https://code--main--dev--owner.apps.meshgate.test@evil.com", "https://a--b--c--d.apps.meshgate.test@evil.com/",
                "https://evil.com@code--main--dev--owner.apps.meshgate.test/", "https://evil.com#@code--main--dev--owner.apps.meshgate.test",
                "https://evil.com\\@code--main--dev--owner.apps.meshgate.test", "https://code--main--dev--owner.apps.meshgate.test\\@evil.com",
                "https:\\\\evil.com", "/\\evil.com", "https://evil.com%2F@code--main--dev--owner.apps.meshgate.test",
                "https%3A%2F%2Fevil.com", "https://code--main--dev--owner.apps.meshgate.test%2e.evil.com",
                "https://code--main--dev--owner.apps.meshgate.test%252f@evil.com",
                "https://ev\til.com", "https://code--main--dev--owner.apps.meshgate.test\r\nLocation: https://evil.com",
                "https://сode--main--dev--owner.apps.meshgate.test/",  // Cyrillic с
                "javascript://code--main--dev--owner.apps.meshgate.test/%0aalert(1)", "http://code--main--dev--owner.apps.meshgate.test/",
                "https://code--main--dev--owner.apps.meshgate.test:8443/", "https://code--main--dev--owner.apps.meshgate.test:443x/",
                "https://apps.meshgate.test/", "https://meshgate.test/", "https://code--main--dev.apps.meshgate.test/",
                "https://8--main--dev--owner.apps.meshgate.test/", "https://[::1]/", "https://a.b.apps.meshgate.test/",
            ]
            for uri in refused {
                let response = try await api.request(.get, Self.authRedirect(uri), token: session)
                #expect(response.status == .badRequest, "\(uri): \(response.status)")
                #expect(response.headers[.location] == nil)
            }
            // Raw (not encoded) and repeated parameters.
            for path in [
                "/api/v2/applications/auth-redirect", "/api/v2/applications/auth-redirect?redirect_uri=//evil.com",
                "/api/v2/applications/auth-redirect?redirect_uri=\(Self.appURL.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)&redirect_uri=https%3A%2F%2Fevil.com",
            ] {
                #expect(try await api.request(.get, path, token: session).status == .badRequest, "\(path)")
            }
            // The accepted spellings: any case, explicit default port, trailing dot.
            for uri in ["HTTPS://Code--Main--Dev--Owner.APPS.meshgate.test:443/x", "https://code--main--dev--owner.apps.meshgate.test./"] {
                #expect(try await api.request(.get, Self.authRedirect(uri), token: session).status == .seeOther, "\(uri)")
            }
        }
    }

    @Test func withoutAWildcardThereIsNothingToLogInTo() async throws {
        try await Self.deployment(wildcard: nil).test { api in
            let session = try await api.signInOwner()
            #expect(try await api.request(.get, Self.authRedirect(Self.appURL), token: session).status == .notFound)
        }
    }
}
