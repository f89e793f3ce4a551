import AppProxy
import Foundation
import Testing
import Tunnel

@Suite struct AppAccessTests {
    let owner = AppRequester(userID: UUID(), username: "alice", isSiteOwner: false)
    let other = AppRequester(userID: UUID(), username: "bob", isSiteOwner: false)
    let admin = AppRequester(userID: UUID(), username: "root", isSiteOwner: true)

    func app(_ method: AppRequest.AccessMethod, _ level: SharingLevel) -> ResolvedApp {
        ResolvedApp(
            request: AppRequest(accessMethod: method, user: "alice", workspace: "dev", agent: nil, target: .app(slug: "code"), basePath: "/"),
            ownerID: owner.userID, workspaceID: UUID(), agentID: UUID(), agentName: "main", agentConnected: true, port: 8080, https: false,
            pathPrefix: "", sharingLevel: level, displayName: "Code", health: .healthy
        )
    }

    @Test func sharingLevelsOnSubdomainApps() {
        #expect(AppAccess.decide(app(.subdomain, .public), requester: nil, pathAppSharing: false) == .allowed)
        #expect(AppAccess.decide(app(.subdomain, .authenticated), requester: nil, pathAppSharing: false) == .signInRequired)
        #expect(AppAccess.decide(app(.subdomain, .authenticated), requester: other, pathAppSharing: false) == .allowed)
        #expect(AppAccess.decide(app(.subdomain, .owner), requester: nil, pathAppSharing: false) == .signInRequired)
        #expect(AppAccess.decide(app(.subdomain, .owner), requester: owner, pathAppSharing: false) == .allowed)
        #expect(AppAccess.decide(app(.subdomain, .owner), requester: admin, pathAppSharing: false) == .allowed)
        guard case .forbidden = AppAccess.decide(app(.subdomain, .owner), requester: other, pathAppSharing: false) else {
            Issue.record("another user opened an owner app")
            return
        }
    }

    @Test func pathAppsAreTheOwnersUnlessSharingIsAllowed() {
        for level in SharingLevel.allCases {
            #expect(AppAccess.decide(app(.path, level), requester: owner, pathAppSharing: false) == .allowed)
            #expect(AppAccess.decide(app(.path, level), requester: nil, pathAppSharing: false) == .signInRequired)
            guard case .forbidden = AppAccess.decide(app(.path, level), requester: admin, pathAppSharing: false) else {
                Issue.record("a site owner opened someone's path app (\(level))")
                continue
            }
        }
        #expect(AppAccess.decide(app(.path, .public), requester: nil, pathAppSharing: true) == .allowed)
        #expect(AppAccess.decide(app(.path, .authenticated), requester: other, pathAppSharing: true) == .allowed)
        guard case .forbidden = AppAccess.decide(app(.path, .owner), requester: admin, pathAppSharing: true) else {
            Issue.record("a site owner opened an owner path app")
            return
        }
    }
}
