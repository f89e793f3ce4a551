import AppProxy
import Testing

@Suite struct AppPathTests {
    @Test func pathApps() {
        let match = AppPath.match("/@alice/dev.main/apps/code/src/index.html?x=1")
        #expect(match == .app(
            AppRequest(accessMethod: .path, user: "alice", workspace: "dev", agent: "main", target: .app(slug: "code"), basePath: "/@alice/dev.main/apps/code/"),
            upstreamPath: "/src/index.html?x=1"
        ))
        guard case .app(let encoded, let upstream) = AppPath.match("/%40alice/dev/apps/Code/") else { Issue.record("no match"); return }
        #expect(encoded.agent == nil && encoded.target == .app(slug: "code") && upstream == "/" && encoded.basePath == "/%40alice/dev/apps/Code/")
    }

    @Test func missingSlashRedirectsKeepingTheQuery() {
        #expect(AppPath.match("/@alice/dev/apps/code?folder=/home") == .redirect(location: "/@alice/dev/apps/code/?folder=/home"))
    }

    @Test func otherPathsAreNotApps() {
        for path in ["/", "/api/v2/users/me", "/@alice", "/@alice/dev", "/@alice/dev/terminal", "/alice/dev/apps/code/"] {
            #expect(AppPath.match(path) == .notAnApp, "\(path)")
        }
    }

    @Test func invalidNames() {
        #expect(AppPath.match("/@me/dev/apps/code/") == .invalid("@me is not supported in app URLs; use the user name"))
        for path in ["/@al--ice/dev/apps/code/", "/@alice/dev./apps/code/", "/@alice/dev/apps//", "/@a_b/dev/apps/code/"] {
            guard case .invalid = AppPath.match(path) else { Issue.record("\(path) accepted"); continue }
        }
    }
}

@Suite struct AppHostnameTests {
    let dotted = AppHostname(pattern: "*.apps.example.com")!
    let dashed = AppHostname(pattern: "https://*-apps.example.com:8443")!

    @Test func patterns() {
        #expect(dotted.suffix == ".apps.example.com" && dashed.suffix == "-apps.example.com")
        for bad in ["apps.example.com", "*", "*.", "a*.example.com", "*.*.example.com"] { #expect(AppHostname(pattern: bad) == nil, "\(bad)") }
    }

    @Test func slugsAndPorts() {
        #expect(dotted.match(host: "Code--Main--Dev--Alice.Apps.Example.com.:443") == .app(
            AppRequest(accessMethod: .subdomain, user: "alice", workspace: "dev", agent: "main", target: .app(slug: "code"), basePath: "/")
        ))
        guard case .app(let port) = dashed.match(host: "8443s--main--dev--alice-apps.example.com") else { Issue.record("no match"); return }
        #expect(port.target == .port(8443, https: true))
        guard case .app(let plain) = dotted.match(host: "3000--main--dev--alice.apps.example.com") else { Issue.record("no match"); return }
        #expect(plain.target == .port(3000, https: false))
    }

    @Test func refusals() {
        #expect(dotted.match(host: "example.com") == .notAnApp)
        #expect(dotted.match(host: "apps.example.com") == .notAnApp)
        #expect(dotted.match(host: "a.b.apps.example.com") == .notAnApp)
        for host in ["8--main--dev--alice.apps.example.com", "0--main--dev--alice.apps.example.com", "70000--main--dev--alice.apps.example.com",
                     "code--main--dev.apps.example.com", "code--ma_in--dev--alice.apps.example.com"] {
            guard case .invalid = dotted.match(host: host) else { Issue.record("\(host) accepted"); continue }
        }
    }
}

@Suite struct AppPathEdgeTests {
    /// The parser works on byte offsets: these pin what the split-based one it replaced decided.
    @Test func edges() {
        #expect(AppPath.match("/@alice/dev/apps/code?") == .redirect(location: "/@alice/dev/apps/code/?"))
        #expect(AppPath.match("/%40alice/dev/apps/code") == .redirect(location: "/%40alice/dev/apps/code/"))
        #expect(AppPath.match("/@alice/dev/APPS/code/") == .notAnApp)
        #expect(AppPath.match("/@alice/dev/apps") == .notAnApp)
        #expect(AppPath.match("/@alice/dev/apps?x=/a/b/c/d") == .notAnApp)
        #expect(AppPath.match("/@ME/dev/apps/code/") == .invalid("@me is not supported in app URLs; use the user name"))
        #expect(AppPath.match("/@/dev/apps/code/") == .invalid("not a valid app URL"))
        #expect(AppPath.match("/@alice/dev.main.x/apps/code/") == .invalid("not a valid app URL"))
        #expect(AppPath.match("/@alice/dev/apps/code/a/b?c=/d?e") == .app(
            AppRequest(accessMethod: .path, user: "alice", workspace: "dev", agent: nil, target: .app(slug: "code"), basePath: "/@alice/dev/apps/code/"),
            upstreamPath: "/a/b?c=/d?e"
        ))
        #expect(AppPath.match("/@Alice/Dev.Main/apps/CODE//x") == .app(
            AppRequest(accessMethod: .path, user: "Alice", workspace: "Dev", agent: "Main", target: .app(slug: "code"), basePath: "/@Alice/Dev.Main/apps/CODE/"),
            upstreamPath: "//x"
        ))
    }
}
