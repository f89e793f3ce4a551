import AppProxy
import Foundation
import Synchronization
import Testing
import Tunnel

@testable import Gateway

/// The gate's token fast path against the real key store on a manual clock: a token opens its app for its minute
/// without the store, an expired one falls back to the session and is re-issued, and a token signed just before a
/// key rotation still verifies after it.
@Suite struct AppGateTests {
    struct OneApp: AppResolver {
        let app: ResolvedApp
        let lookups = Counter()
        func resolve(_ request: AppRequest) async throws -> Result<ResolvedApp, AppResolutionFailure> {
            lookups.increment()
            return request == app.request ? .success(app) : .failure(.notFound)
        }
    }

    struct Sessions: AppSessionAuthenticator {
        let owner: AppRequester
        func requester(presenting credential: String) async throws -> AppRequester? { credential == "good-session" ? owner : nil }
    }

    final class Counter: Sendable {
        private let value = Mutex(0)
        func increment() { value.withLock { $0 += 1 } }
        var count: Int { value.withLock { $0 } }
    }

    let owner = AppRequester(userID: UUID(), username: "alice", isSiteOwner: false)
    var request: AppRequest { AppRequest(accessMethod: .subdomain, user: "alice", workspace: "dev", agent: "main", target: .app(slug: "code"), basePath: "/") }

    func gate(_ deployment: Deployment, resolver: OneApp) -> AppGate {
        let clock = deployment.clock
        return AppGate(
            configuration: .init(accessURL: URL(string: "https://meshgate.test")!, hostname: AppHostname(pattern: "*.apps.meshgate.test"), pathAppsDisabled: false, pathAppSharing: false),
            resolver: resolver, sessions: Sessions(owner: owner), tokens: deployment.environment.appTokenKeys, now: { clock.now }
        )
    }

    func app() -> ResolvedApp {
        ResolvedApp(
            request: request, ownerID: owner.userID, workspaceID: UUID(), agentID: UUID(), agentName: "main", agentConnected: true, port: 8080, https: false,
            pathPrefix: "", sharingLevel: .owner, displayName: "Code", health: .healthy
        )
    }

    /// The token from a `Set-Cookie` value.
    func token(_ setCookie: String?) throws -> (name: String, value: String) {
        let pair = try #require(setCookie?.split(separator: ";").first?.split(separator: "=", maxSplits: 1))
        return (String(pair[0]), String(pair[1]))
    }

    func admit(_ gate: AppGate, cookies: [String: String]) async -> (app: ResolvedApp?, setCookie: String?) {
        switch await gate.admit(request, credentials: .init(cookies: cookies, sessionHeader: nil), secure: true, originalURL: "https://x/") {
        case .proxy(let app, let setCookie): (app, setCookie)
        case .respond: (nil, nil)
        }
    }

    @Test func expiredTokensAreReissuedFromTheSession() async throws {
        let deployment = try Deployment()
        defer { try? FileManager.default.removeItem(at: deployment.directory) }
        let resolver = OneApp(app: app())
        let gate = gate(deployment, resolver: resolver)
        let first = await admit(gate, cookies: ["meshgate_session_token": "good-session"])
        let cookie = try token(first.setCookie)
        #expect(first.app?.port == 8080 && resolver.lookups.count == 1)

        // Within its minute the token alone opens the app, with no lookup.
        deployment.clock.advance(by: 59)
        let fast = await admit(gate, cookies: [cookie.name: cookie.value])
        #expect(fast.app?.agentID == first.app?.agentID && fast.app?.port == 8080 && fast.setCookie == nil && resolver.lookups.count == 1)

        // Expired: alone it opens nothing (sign-in instead); with the session it is re-issued.
        deployment.clock.advance(by: 2)
        #expect(await admit(gate, cookies: [cookie.name: cookie.value]).app == nil)
        let renewed = await admit(gate, cookies: [cookie.name: cookie.value, "meshgate_session_token": "good-session"])
        #expect(renewed.app != nil && resolver.lookups.count == 3)
        #expect(try token(renewed.setCookie).value != cookie.value)

        // A token is for its own app only.
        var other = request
        other.target = .app(slug: "docs")
        let otherGate = gate
        let elsewhere = await otherGate.admit(other, credentials: .init(cookies: [cookie.name: try token(renewed.setCookie).value], sessionHeader: nil), secure: true, originalURL: "https://x/")
        guard case .respond = elsewhere else {
            Issue.record("a token opened another app")
            return
        }
    }

    @Test func aTokenSignedBeforeARotationStillVerifies() async throws {
        let deployment = try Deployment()
        defer { try? FileManager.default.removeItem(at: deployment.directory) }
        let resolver = OneApp(app: app())
        let gate = gate(deployment, resolver: resolver)
        let keys = deployment.environment.appTokenKeys
        let firstKey = try await keys.keyring().current
        // Near the end of the first key's term the store announces the next one, starting a little later.
        deployment.clock.advance(by: (firstKey.startsAt + AppKeyRotation().interval - 30).timeIntervalSince(deployment.clock.now))
        let next = try #require(try await keys.keyring().keys.max { $0.sequence < $1.sequence })
        #expect(next.sequence == firstKey.sequence + 1 && next.startsAt > deployment.clock.now)
        // Half a minute before it starts, a token is signed with the first key...
        deployment.clock.advance(by: next.startsAt.timeIntervalSince(deployment.clock.now) - 30)
        let issued = await admit(gate, cookies: ["meshgate_session_token": "good-session"])
        let cookie = try token(issued.setCookie)
        #expect(AppTokenJWS.keySequence(of: cookie.value) == firstKey.sequence)

        // ...and once the next key signs, the old one still verifies what it signed.
        deployment.clock.advance(by: 40)
        let lookups = resolver.lookups.count
        let fast = await admit(gate, cookies: [cookie.name: cookie.value])
        #expect(fast.app != nil && resolver.lookups.count == lookups)
        let reissued = await admit(gate, cookies: ["meshgate_session_token": "good-session"])
        #expect(try AppTokenJWS.keySequence(of: token(reissued.setCookie).value) == next.sequence)
    }

    @Test func pathAppsCanBeTurnedOff() async throws {
        let deployment = try Deployment()
        defer { try? FileManager.default.removeItem(at: deployment.directory) }
        var path = app()
        path.request.accessMethod = .path
        let clock = deployment.clock
        let gate = AppGate(
            configuration: .init(accessURL: URL(string: "https://meshgate.test")!, hostname: nil, pathAppsDisabled: true, pathAppSharing: false),
            resolver: OneApp(app: path), sessions: Sessions(owner: owner), tokens: deployment.environment.appTokenKeys, now: { clock.now }
        )
        let admission = await gate.admit(path.request, credentials: .init(cookies: ["meshgate_session_token": "good-session"], sessionHeader: nil), secure: true, originalURL: "/")
        guard case .respond(.page(let page)) = admission else {
            Issue.record("a path app opened with path apps disabled")
            return
        }
        #expect(page.status == 403)
    }
}
