import Foundation
import Testing
import Tunnel
import Yams

@testable import Agent

@Suite struct AgentAppTests {
    /// The short flag form: defaults everywhere but slug and URL.
    @Test func shortFlag() throws {
        let app = try AgentApp(flag: "code=http://127.0.0.1:8080")
        #expect(app.slug == "code" && app.displayName == "code")
        #expect(app.url.absoluteString == "http://127.0.0.1:8080")
        #expect(app.sharingLevel == .owner && !app.subdomain && app.healthCheck == nil)
    }

    /// Every option of the extended flag form, the health path resolved against the app URL.
    @Test func extendedFlag() throws {
        let app = try AgentApp(
            flag: "code=http://127.0.0.1:8080/base/,name=VS Code,share=authenticated,subdomain,health=/healthz,interval=1m30s,threshold=5"
        )
        #expect(app.displayName == "VS Code" && app.sharingLevel == .authenticated && app.subdomain)
        #expect(app.healthCheck?.url.absoluteString == "http://127.0.0.1:8080/healthz")
        #expect(app.healthCheck?.interval == .seconds(90) && app.healthCheck?.threshold == 5)
        let defaults = try AgentApp(flag: "web=https://localhost:3000,health=http://127.0.0.1:9/ready,subdomain=false")
        #expect(defaults.healthCheck == AgentApp.HealthCheck(url: URL(string: "http://127.0.0.1:9/ready")!, interval: .seconds(5), threshold: 3))
        #expect(!defaults.subdomain)
        #expect(defaults.cors == .simple)
    }

    /// `cors=passthru` hands CORS to the app; the report carries it only then, so older servers see no change.
    @Test func corsBehavior() throws {
        let app = try AgentApp(flag: "api=http://127.0.0.1:9000,subdomain,cors=passthru")
        #expect(app.cors == .passthru)
        #expect(AgentAppReport(app: app, health: .disabled).cors == .passthru)
        #expect(AgentAppReport(app: try AgentApp(flag: "web=http://127.0.0.1:9000,cors=SIMPLE"), health: .disabled).cors == nil)
        #expect(throws: AgentAppError(app: "api", field: .cors, value: "open", reason: "must be one of: simple, passthru")) {
            try AgentApp(flag: "api=http://127.0.0.1:9000,cors=open")
        }
        let yaml = try YAMLDecoder().decode([AgentApp].self, from: "- {slug: api, url: 'http://127.0.0.1:9000', cors: passthru}")
        #expect(yaml.first?.cors == .passthru)
    }

    @Test(arguments: ["a", "code", "vs-code", "a1-b2-c3", "x8080", String(repeating: "a", count: 32)])
    func validSlugs(_ slug: String) {
        #expect(AgentApp.slugProblem(slug) == nil)
    }

    @Test(arguments: ["", "-code", "code-", "Code", "vs_code", "vs code", "vs--code", "8080", "443s", "cödé", String(repeating: "a", count: 33)])
    func invalidSlugs(_ slug: String) {
        #expect(AgentApp.slugProblem(slug) != nil)
    }

    /// Each bad flag names the app and the field it got wrong, and the value.
    @Test(arguments: [
        ("code", "code", AgentAppError.Field.app, "code"),
        ("Code=http://127.0.0.1:1", "Code", .slug, "Code"),
        ("=http://127.0.0.1:1", "=http://127.0.0.1:1", .slug, ""),
        ("code=ftp://127.0.0.1", "code", .url, "ftp://127.0.0.1"),
        ("code=127.0.0.1:8080", "code", .url, "127.0.0.1:8080"),
        ("code=http://user:pw@127.0.0.1:1", "code", .url, "http://user:pw@127.0.0.1:1"),
        ("code=http://127.0.0.1:1,share=everyone", "code", .share, "everyone"),
        ("code=http://127.0.0.1:1,subdomain=maybe", "code", .subdomain, "maybe"),
        ("code=http://127.0.0.1:1,name=", "code", .name, ""),
        ("code=http://127.0.0.1:1,health=", "code", .health, ""),
        ("code=http://127.0.0.1:1,health=ftp://x/", "code", .health, "ftp://x/"),
        ("code=http://127.0.0.1:1,health=/h,interval=0s", "code", .interval, "0s"),
        ("code=http://127.0.0.1:1,health=/h,interval=2h", "code", .interval, "2h"),
        ("code=http://127.0.0.1:1,health=/h,interval=500ms", "code", .interval, "500ms"),
        ("code=http://127.0.0.1:1,health=/h,threshold=0", "code", .threshold, "0"),
        ("code=http://127.0.0.1:1,health=/h,threshold=three", "code", .threshold, "three"),
        ("code=http://127.0.0.1:1,threshold=5", "code", .threshold, "5"),
        ("code=http://127.0.0.1:1,interval=5s", "code", .interval, "5s"),
        ("code=http://127.0.0.1:1,share", "code", .share, ""),
        ("code=http://127.0.0.1:1,share=owner,share=public", "code", .share, "share=public"),
        ("code=http://127.0.0.1:1,port=8080", "code", .app, "port=8080"),
    ])
    func badFlags(_ flag: String, _ app: String, _ field: AgentAppError.Field, _ value: String) {
        let error = #expect(throws: AgentAppError.self) { try AgentApp(flag: flag) }
        #expect(error?.app == app)
        #expect(error?.field == field)
        #expect(error?.value == value)
        #expect(error?.description.hasPrefix("app \"\(app)\": ") == true)
        if field != .app { #expect(error?.description.contains("invalid \(field.rawValue) \"\(value)\"") == true) }
    }

    @Test func wholeSeconds() {
        #expect(AgentApp.wholeSeconds("90") == 90)
        #expect(AgentApp.wholeSeconds("1h1m1s") == 3661)
        #expect(AgentApp.wholeSeconds("10") == 10)
        for bad in ["", "s", "10x", "1.5s", "5m3", "-5s", "99999999999999999999s"] { #expect(AgentApp.wholeSeconds(bad) == nil, "\(bad)") }
    }

    /// Two apps with one slug cannot both be addressed.
    @Test func duplicateSlugs() throws {
        let apps = try [AgentApp(flag: "code=http://127.0.0.1:1"), AgentApp(flag: "code=http://127.0.0.1:2")]
        let error = #expect(throws: AgentAppError.self) { try AgentApp.unique(apps) }
        #expect(error?.app == "code" && error?.field == .slug)
    }

    struct AgentConfig: Decodable { var apps: [AgentApp] }

    /// The config file form: the flag form's keys plus slug and url, YAML scalars of any type.
    @Test func yamlApps() throws {
        let yaml = """
            apps:
              - slug: code
                url: http://127.0.0.1:8080
                name: VS Code
                share: public
                subdomain: true
                health: /healthz
                interval: 10
                threshold: 5
              - slug: docs
                url: http://127.0.0.1:9000
                name:
            """
        let apps = try YAMLDecoder().decode(AgentConfig.self, from: yaml).apps
        #expect(apps.count == 2)
        #expect(apps[0] == (try AgentApp(flag: "code=http://127.0.0.1:8080,name=VS Code,share=public,subdomain,health=/healthz,interval=10s,threshold=5")))
        #expect(apps[1] == (try AgentApp(flag: "docs=http://127.0.0.1:9000")))
    }

    /// Bad YAML apps name the app (slug, or its place in the list) and the field.
    @Test(arguments: [
        ("- {slug: code, url: http://127.0.0.1:1, share: everyone}", "code", AgentAppError.Field.share),
        ("- {slug: code, url: http://127.0.0.1:1, subdomain: maybe}", "code", .subdomain),
        ("- {slug: code, url: http://127.0.0.1:1, health: /h, threshold: -1}", "code", .threshold),
        ("- {slug: code, url: http://127.0.0.1:1, health: [a, b]}", "code", .health),
        ("- {slug: code, url: http://127.0.0.1:1, sharing: public}", "code", .app),
        ("- {slug: code}", "code", .url),
        ("- {slug: ok, url: http://127.0.0.1:1}\n- {url: http://127.0.0.1:1}", "apps[1]", .slug),
        ("- {slug: Bad, url: http://127.0.0.1:1}", "Bad", .slug),
    ])
    func badYAML(_ list: String, _ app: String, _ field: AgentAppError.Field) {
        let thrown = #expect(throws: (any Error).self) { try YAMLDecoder().decode(AgentConfig.self, from: "apps:\n" + list) }
        let error = thrown.flatMap(AgentAppError.unwrapping)
        #expect(error?.app == app)
        #expect(error?.field == field)
    }

    /// The wire shape: snake_case keys, interval in seconds, no healthcheck key without one.
    @Test func reportJSON() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let checked = try AgentApp(flag: "code=http://127.0.0.1:8080,name=VS Code,subdomain,health=/healthz")
        let json = String(decoding: try encoder.encode(AgentAppReport(app: checked, health: .initializing)), as: UTF8.self)
        #expect(
            json == #"{"display_name":"VS Code","health":"initializing","healthcheck":{"interval":5,"threshold":3,"url":"http:\/\/127.0.0.1:8080\/healthz"},"sharing_level":"owner","slug":"code","subdomain":true,"url":"http:\/\/127.0.0.1:8080"}"#
                .replacingOccurrences(of: #"\/"#, with: "/")
        )
        let plain = AgentAppReport(app: try AgentApp(flag: "docs=http://127.0.0.1:9000,share=public"), health: .disabled)
        let plainJSON = String(decoding: try encoder.encode(plain), as: UTF8.self)
        #expect(plainJSON == #"{"display_name":"docs","health":"disabled","sharing_level":"public","slug":"docs","subdomain":false,"url":"http://127.0.0.1:9000"}"#)
        #expect(try JSONDecoder().decode(AgentAppReport.self, from: Data(plainJSON.utf8)) == plain)
    }
}
