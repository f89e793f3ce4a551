import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing
import Tunnel

@testable import Gateway

extension APIClient {
    /// A URL-encoded form post, as a browser sends it, with the session cookie when given.
    @discardableResult
    func form(_ path: String, _ fields: [String: String], cookie: String? = nil) async throws -> TestResponse {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = fields.sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&")
        var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
        if let cookie { headers[.cookie] = cookie }
        return try await client.execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: body))
    }

    /// A page as a browser with `cookie` sees it.
    func page(_ path: String, cookie: String? = nil) async throws -> TestResponse {
        try await client.execute(uri: path, method: .get, headers: cookie.map { [.cookie: $0] } ?? [:])
    }

    /// Signs in through the dashboard's form; the session cookie to send back.
    func signInCookie(_ email: String, _ password: String) async throws -> String {
        let response = try await form("/login", ["email": email, "password": password])
        return try sessionCookie(response)
    }
}

/// `name=value` of the session cookie a response sets.
func sessionCookie(_ response: TestResponse) throws -> String {
    let header = try #require(response.headers[.setCookie])
    return String(try #require(header.split(separator: ";").first))
}

extension TestResponse {
    var html: String { String(buffer: body) }
}

@Suite struct DashboardTests {
    static let member = ["email": "member@example.com", "username": "member", "password": "member password 1"]

    /// Every template parses (the renderer would stop the server otherwise) and renders a page with the layout.
    @Test func templatesRenderWithTheLayout() {
        let html = DashboardRenderer.shared.html("message", Page(title: "T", user: nil, content: MessageView(heading: "H", message: "M")))
        #expect(html.contains("<title>T · meshgate</title>") && html.contains("<h1>H</h1>") && html.contains("<main id=\"main\""))
        #expect(!html.contains("Sign out"))
    }

    /// `/` sends a fresh deployment to setup; the form creates the owner, signs them in, and then setup is closed,
    /// in the form and in the API alike.
    @Test func setupRunsOnce() async throws {
        try await Deployment().test { api in
            #expect(try await api.page("/").headers[.location] == "/setup")
            let form = try await api.page("/setup")
            #expect(form.status == .ok && form.html.contains("action=\"/setup\"") && form.html.contains("<label for=\"confirm\">"))

            let mismatch = try await api.form("/setup", ["email": "owner@example.com", "username": "owner", "password": "correct horse battery", "confirm": "other"])
            #expect(mismatch.status == .badRequest && mismatch.html.contains("The two passwords differ.") && mismatch.html.contains("value=\"owner@example.com\""))
            let invalid = try await api.form("/setup", ["email": "owner@example.com", "username": "owner", "password": "short", "confirm": "short"])
            #expect(invalid.status == .badRequest && invalid.html.contains("Invalid password."))

            let created = try await api.form("/setup", ["email": "owner@example.com", "username": "owner", "password": "correct horse battery", "confirm": "correct horse battery"])
            #expect(created.status == .seeOther && created.headers[.location] == "/workspaces")
            let cookie = try sessionCookie(created)
            let workspaces = try await api.page("/workspaces", cookie: cookie)
            #expect(workspaces.status == .ok && workspaces.html.contains("Signed in as <strong>owner</strong>"))

            #expect(try await api.page("/setup").headers[.location] == "/")
            let again = try await api.form("/setup", ["email": "evil@example.com", "username": "evil", "password": "correct horse battery", "confirm": "correct horse battery"])
            #expect(again.status == .conflict && again.html.contains("The initial user has already been created."))
            #expect(try await api.request(.post, "/api/v2/users/first", json: ["email": "e@example.com", "username": "e", "password": "correct horse battery"]).status == .conflict)
            #expect(try await api.page("/").headers[.location] == "/login")
            #expect(try await api.page("/", cookie: cookie).headers[.location] == "/workspaces")
        }
    }

    /// The form signs in like the API (session cookie, safe redirect), refuses wrong passwords on the page, and the
    /// header's sign-out ends the session.
    @Test func signInAndOut() async throws {
        try await Deployment().test { api in
            _ = try await api.signInOwner()
            let wrong = try await api.form("/login", ["email": "owner@example.com", "password": "wrong password", "redirect": "/users"])
            #expect(wrong.status == .unauthorized && wrong.html.contains("Incorrect email or password.") && wrong.html.contains("value=\"/users\""))

            let signedIn = try await api.form("/login", ["email": "owner@example.com", "password": "correct horse battery", "redirect": "/users"])
            #expect(signedIn.status == .seeOther && signedIn.headers[.location] == "/users")
            let cookie = try sessionCookie(signedIn)
            #expect(try await api.request(.get, "/api/v2/users/me", headers: [.cookie: cookie]).status == .ok)
            let offsite = try await api.form("/login", ["email": "owner@example.com", "password": "correct horse battery", "redirect": "//evil.example"])
            #expect(offsite.headers[.location] == "/workspaces")

            let signedOut = try await api.form("/logout", [:], cookie: cookie)
            #expect(signedOut.status == .seeOther && signedOut.headers[.location] == "/login")
            #expect(signedOut.headers[.setCookie]?.contains("Max-Age=0") == true)
            #expect(try await api.request(.get, "/api/v2/users/me", headers: [.cookie: cookie]).status == .unauthorized)
            #expect(try await api.page("/workspaces", cookie: cookie).headers[.location] == "/login?redirect=/workspaces")
        }
    }

    /// A post from another site is refused before anything is checked (login CSRF, forced sign-out).
    @Test func crossSiteFormsAreRefused() async throws {
        try await Deployment().test { api in
            _ = try await api.signInOwner()
            let headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded", HTTPField.Name("Sec-Fetch-Site")!: "cross-site"]
            let response = try await api.client.execute(
                uri: "/login", method: .post, headers: headers, body: ByteBuffer(string: "email=owner%40example.com&password=correct+horse+battery")
            )
            #expect(response.status == .forbidden && response.headers[.setCookie] == nil)
            let foreignOrigin = try await api.client.execute(
                uri: "/logout", method: .post, headers: [.origin: "https://evil.example"], body: ByteBuffer()
            )
            #expect(foreignOrigin.status == .forbidden)
        }
    }

    /// Signed out, every page sends the browser to the form with the way back; security headers are on all of them.
    @Test func signedOutPagesRedirectToLogin() async throws {
        try await Deployment().test { api in
            _ = try await api.signInOwner()
            let agent = UUID().uuidString.lowercased()
            for (path, redirect) in [("/workspaces", "/workspaces"), ("/users", "/users"), ("/terminal/\(agent)", "/terminal/\(agent)"),
                                     ("/workspaces?fragment=1", "/workspaces%3Ffragment%3D1")] {
                let response = try await api.page(path)
                #expect(response.status == .seeOther, "\(path)")
                #expect(response.headers[.location] == "/login?redirect=\(redirect)", "\(path)")
            }
            let login = try await api.page("/login?redirect=/workspaces")
            #expect(login.status == .ok && login.html.contains("name=\"redirect\" value=\"/workspaces\""))
        }
    }

    @Test func everyPageSetsSecurityHeaders() async throws {
        try await Deployment().test { api in
            let cookie = try sessionCookie(try await api.form("/setup", ["email": "owner@example.com", "username": "owner", "password": "correct horse battery", "confirm": "correct horse battery"]))
            for (path, cookie) in [("/", nil), ("/login", nil), ("/workspaces", cookie), ("/users", cookie), ("/workspaces", nil), ("/terminal/\(UUID())", cookie)] {
                let response = try await api.page(path, cookie: cookie)
                let csp = try #require(response.headers[HTTPField.Name("Content-Security-Policy")!], "\(path)")
                #expect(csp.contains("default-src 'self'") && csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "\(path)")
                #expect(response.headers[HTTPField.Name("X-Frame-Options")!] == "DENY", "\(path)")
                #expect(response.headers[HTTPField.Name("Referrer-Policy")!] == "same-origin", "\(path)")
            }
            let unknown = try await api.page("/terminal/\(UUID())", cookie: cookie)
            #expect(unknown.status == .notFound && unknown.headers[.contentType] == "text/html; charset=utf-8" && unknown.html.contains("Agent not found."))
            // No inline script anywhere: the CSP would block it.
            let page = try await api.page("/workspaces", cookie: cookie).html
            #expect(!page.contains("<script>") && page.contains("<script src=\"/assets/dashboard/workspaces.js?v=\(DashboardAssets.version)\""))
            let script = try await api.page("/assets/dashboard/workspaces.js")
            #expect(script.status == .ok && script.headers[.contentType] == "text/javascript; charset=utf-8" && script.html.contains("announcer"))
            #expect(script.headers[.cacheControl]?.contains("immutable") == true)
            #expect(try await api.page("/assets/dashboard/nothing.js").status == .notFound)
        }
    }

    /// A member sees their own workspaces only and no user list; the owner sees everyone's, grouped by owner.
    @Test func membersSeeTheirOwnOwnersSeeAll() async throws {
        try await Deployment().test { api in
            let owner = try await api.signInOwner()
            try await api.request(.post, "/api/v2/users", json: Self.member, token: owner)
            let member = try await api.login(Self.member["email"]!, Self.member["password"]!)
            #expect(try await api.request(.post, "/api/v2/workspaces", json: ["name": "member-ws"], token: member).status == .created)
            #expect(try await api.request(.post, "/api/v2/workspaces", json: ["name": "owner-ws"], token: owner).status == .created)

            let memberCookie = try await api.signInCookie(Self.member["email"]!, Self.member["password"]!)
            let memberPage = try await api.page("/workspaces", cookie: memberCookie).html
            #expect(memberPage.contains("member-ws") && !memberPage.contains("owner-ws"))
            #expect(!memberPage.contains("href=\"/users\""))
            #expect(try await api.page("/users", cookie: memberCookie).status == .forbidden)

            let ownerCookie = try await api.signInCookie("owner@example.com", "correct horse battery")
            let ownerPage = try await api.page("/workspaces", cookie: ownerCookie).html
            #expect(ownerPage.contains("member-ws") && ownerPage.contains("owner-ws"))
            #expect(ownerPage.contains(">member</h2>") && ownerPage.contains(">owner</h2>"))
            // The owner's own group comes first.
            #expect(try #require(ownerPage.range(of: "owner-ws")).lowerBound < #require(ownerPage.range(of: "member-ws")).lowerBound)
            let users = try await api.page("/users", cookie: ownerCookie)
            #expect(users.status == .ok && users.html.contains("member@example.com") && users.html.contains("owner@example.com"))
        }
    }

    /// Agents with their status and apps with health and a link; the fragment the page script re-fetches is the same list.
    @Test func workspacesShowAgentsAndApps() async throws {
        var deployment = try Deployment()
        deployment.environment.configuration.wildcardAccessURL = "*.apps.meshgate.test"
        try await deployment.test { api in
            let (cookie, agentID, agentToken) = try await Self.workspaceWithAgent(api)
            var subdomainApp = reportedApp("web", health: "unhealthy")
            subdomainApp["subdomain"] = true
            subdomainApp["display_name"] = "Web"
            try await api.report(["version": "1.2.3", "apps": [reportedApp("code"), subdomainApp]], agentToken: agentToken)

            let page = try await api.page("/workspaces", cookie: cookie).html
            #expect(page.contains("data-status=\"connecting\"") && page.contains("href=\"/terminal/\(agentID)\""))
            #expect(page.contains("<dd>1.2.3</dd>"))
            #expect(page.contains("href=\"/@owner/dev.main/apps/code/\"") && page.contains("data-status=\"healthy\""))
            #expect(page.contains("href=\"https://web--main--dev--owner.apps.meshgate.test/\"") && page.contains("data-status=\"unhealthy\""))
            #expect(page.contains("aria-live=\"polite\""))

            let fragment = try await api.page("/workspaces?fragment=1", cookie: cookie)
            #expect(fragment.status == .ok && !fragment.html.contains("<html") && fragment.html.contains("id=\"agent-\(agentID)\""))
        }
    }

    /// What an agent reports (app names) is shown escaped, never as markup; so is an email on the users page.
    @Test func hostileNamesAreEscaped() async throws {
        try await Deployment().test { api in
            let (cookie, _, agentToken) = try await Self.workspaceWithAgent(api)
            var app = reportedApp("code")
            app["display_name"] = "<img src=x onerror=alert(1)>\"'&"
            try await api.report(["version": "<script>alert(2)</script>", "apps": [app]], agentToken: agentToken)
            let page = try await api.page("/workspaces", cookie: cookie).html
            #expect(!page.contains("<img src=x") && !page.contains("<script>alert"))
            #expect(page.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;") && page.contains("&lt;script&gt;alert(2)&lt;/script&gt;"))

            let owner = try await api.login("owner@example.com", "correct horse battery")
            try await api.request(.post, "/api/v2/users", json: ["email": "<svg/onload=alert(3)>@x.io", "username": "odd", "password": "member password 1"], token: owner)
            let users = try await api.page("/users", cookie: cookie).html
            #expect(!users.contains("<svg/onload") && users.contains("&lt;svg/onload=alert(3)&gt;@x.io"))

            let login = try await api.page("/login?redirect=/x%22%3E%3Cscript%3Ealert(4)%3C/script%3E").html
            #expect(!login.contains("<script>alert(4)") && login.contains("/x&quot;&gt;&lt;script&gt;"))
        }
    }

    /// The terminal page of a visible agent loads xterm.js from `--xterm-path`; a member cannot open another's agent.
    @Test func terminalPage() async throws {
        let xterm = try Self.xtermDirectory()
        var deployment = try Deployment()
        deployment.environment.configuration.xtermPath = xterm.path
        try await deployment.test { api in
            let (cookie, agentID, _) = try await Self.workspaceWithAgent(api)
            let page = try await api.page("/terminal/\(agentID)", cookie: cookie)
            #expect(page.status == .ok && page.html.contains("data-agent=\"\(agentID)\"") && page.html.contains("data-state=\"connecting\""))
            #expect(page.html.contains("<script src=\"/assets/xterm/xterm.js\">") && page.html.contains("/assets/xterm/addons/fit/fit.js"))
            #expect(page.html.contains("owner/dev.main"))

            let owner = try await api.login("owner@example.com", "correct horse battery")
            try await api.request(.post, "/api/v2/users", json: Self.member, token: owner)
            let memberCookie = try await api.signInCookie(Self.member["email"]!, Self.member["password"]!)
            #expect(try await api.page("/terminal/\(agentID)", cookie: memberCookie).status == .notFound)
        }
        try? FileManager.default.removeItem(at: xterm)
    }

    /// Without xterm.js the server runs and the terminal page says what to install.
    @Test func terminalPageWithoutXterm() async throws {
        var deployment = try Deployment()
        deployment.environment.configuration.xtermPath = "/nonexistent/xterm"
        try await deployment.test { api in
            let (cookie, agentID, _) = try await Self.workspaceWithAgent(api)
            let page = try await api.page("/terminal/\(agentID)", cookie: cookie)
            #expect(page.status == .ok && page.html.contains("xterm.js is not installed") && page.html.contains("apt-get install libjs-xterm"))
            #expect(!page.html.contains("/assets/xterm/xterm.js\"") && page.html.contains("/nonexistent/xterm/xterm.js"))
            #expect(try await api.page("/assets/xterm/xterm.js").status == .notFound)
        }
    }

    /// Only the three files the page loads are served, with their types and caching; nothing else, however spelled.
    @Test func xtermAssetsServeOnlyTheirFiles() async throws {
        let xterm = try Self.xtermDirectory()
        var deployment = try Deployment()
        deployment.environment.configuration.xtermPath = xterm.path + "/"
        try await deployment.test { api in
            let script = try await api.page("/assets/xterm/xterm.js")
            #expect(script.status == .ok && script.html == "window.Terminal = function () {};")
            #expect(script.headers[.contentType] == "text/javascript; charset=utf-8" && script.headers[.cacheControl] == "public, max-age=86400")
            let etag = try #require(script.headers[.eTag])
            let again = try await api.client.execute(uri: "/assets/xterm/xterm.js", method: .get, headers: [.ifNoneMatch: etag])
            #expect(again.status == .notModified)
            #expect(try await api.page("/assets/xterm/xterm.css").headers[.contentType] == "text/css; charset=utf-8")
            #expect(try await api.page("/assets/xterm/addons/fit/fit.js").status == .ok)
            for path in ["/assets/xterm/secret.txt", "/assets/xterm/../secret.txt", "/assets/xterm/%2e%2e/secret.txt", "/assets/xterm/addons/fit/../../xterm.js",
                         "/assets/xterm/addons/../../secret.txt", "/assets/xterm/addons", "/assets/xterm/%2fetc%2fpasswd", "/assets/xterm/"] {
                let response = try await api.page(path)
                #expect(response.status == .notFound || response.status == .badRequest, "\(path)")
                #expect(!response.html.contains("do not serve"), "\(path)")
            }
        }
        try? FileManager.default.removeItem(at: xterm)
    }

    /// Debian 12's CommonJS stub as xterm.js: the gateway serves node-xterm's modules joined into one script instead
    /// (tests left out); without them the stub counts as not installed.
    @Test func xtermBundleReplacesDebiansStub() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("meshgate-xterm-bundle-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let library = root.appendingPathComponent("lib")
        try FileManager.default.createDirectory(at: library.appendingPathComponent("public"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: library.appendingPathComponent("common"), withIntermediateDirectories: true)
        let stub = root.appendingPathComponent("xterm.js")
        try Data("(function (factory) { factory(); })((function () { var Terminal_1 = require(\"./public/Terminal\"); module.exports = Terminal_1.Terminal; }));".utf8).write(to: stub)
        try Data("var Thing = require(\"../common/Thing\");\nexports.Terminal = Thing.Thing;".utf8).write(to: library.appendingPathComponent("public/Terminal.js"))
        try Data("exports.Thing = function () {};".utf8).write(to: library.appendingPathComponent("common/Thing.js"))
        try Data("require(\"chai\");".utf8).write(to: library.appendingPathComponent("public/Terminal.test.js"))

        guard case .bundled(let script, let etag) = await XtermBundle(stub: stub.path, library: library.path).script() else {
            Issue.record("the stub was not replaced by a bundle")
            return
        }
        #expect(script.contains("modules[\"public/Terminal\"] = function (exports, require, module) {") && script.contains("modules[\"common/Thing\"]"))
        #expect(!script.contains("chai") && script.contains("window.Terminal = load(\"public/Terminal\").Terminal;") && etag.hasPrefix("\""))
        #expect(await XtermBundle(stub: stub.path, library: root.appendingPathComponent("none").path).script() == .unusable)
        try Data("window.Terminal = function () {};".utf8).write(to: stub)
        #expect(await XtermBundle(stub: stub.path, library: library.path).script() == .file)
    }

    /// The path column names the DERP region as the map does, "direct" for UDP, and says when there is none yet.
    @Test func pathsAndTimesReadForPeople() throws {
        let map = DERPMap(regions: [900: DERPRegion(regionID: 900, regionCode: "fra", regionName: "Frankfurt", nodes: [])])
        let builder = DashboardViewBuilder(configuration: try Deployment().environment.configuration, derpMap: map, now: Date(timeIntervalSince1970: 10_000))
        #expect(builder.pathLabel(.derp(region: 900)) == "relay: Frankfurt")
        #expect(builder.pathLabel(.derp(region: 901)) == "relay: region 901")
        #expect(builder.pathLabel(.direct(endpoint: "203.0.113.7:41641")) == "direct")
        #expect(builder.pathLabel(nil) == "none yet")
        #expect(DashboardViewBuilder.milliseconds(3.25) == "3.2 ms" || DashboardViewBuilder.milliseconds(3.25) == "3.3 ms")
        #expect(DashboardViewBuilder.milliseconds(42.4) == "42 ms")
        #expect(DashboardViewBuilder.relative(Date(timeIntervalSince1970: 9_958), now: builder.now) == "42 s ago")
        #expect(DashboardViewBuilder.relative(Date(timeIntervalSince1970: 9_000), now: builder.now) == "16 min ago")
    }

    // MARK: Fixtures

    /// The owner signed in (cookie), workspace "dev" with agent "main".
    static func workspaceWithAgent(_ api: APIClient) async throws -> (cookie: String, agentID: String, agentToken: String) {
        let token = try await api.signInOwner()
        let workspace = try await api.request(.post, "/api/v2/workspaces", json: ["name": "dev"], token: token).object()
        let workspaceID = try #require(workspace["id"] as? String)
        let agent = try await api.request(.post, "/api/v2/workspaces/\(workspaceID)/agents", json: ["name": "main"], token: token).object()
        let agentID = try #require(agent["id"] as? String).lowercased()
        let agentToken = try #require(agent["token"] as? String)
        return (try await api.signInCookie("owner@example.com", "correct horse battery"), agentID, agentToken)
    }

    /// A stand-in xterm directory, with a file beside it that must never be served.
    static func xtermDirectory() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("meshgate-xterm-\(UUID().uuidString)")
        let directory = root.appendingPathComponent("xterm")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("addons/fit"), withIntermediateDirectories: true)
        try Data("window.Terminal = function () {};".utf8).write(to: directory.appendingPathComponent("xterm.js"))
        try Data(".xterm {}".utf8).write(to: directory.appendingPathComponent("xterm.css"))
        try Data("exports.fit = function () {};".utf8).write(to: directory.appendingPathComponent("addons/fit/fit.js"))
        try Data("do not serve".utf8).write(to: directory.appendingPathComponent("secret.txt"))
        try Data("do not serve".utf8).write(to: root.appendingPathComponent("secret.txt"))
        return directory
    }
}
