import Agent
import Foundation
import Testing
import Tunnel

@testable import meshgate

@Suite struct AgentSettingsTests {
    func resolve(flags: [String: String] = [:], apps: [String] = [], environment: [String: String] = [:], file: String? = nil) throws -> AgentSettings {
        var path: String?
        if let file {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("agent-\(UUID().uuidString).yaml").path
            try file.write(toFile: path!, atomically: true, encoding: .utf8)
        }
        defer { path.map { try? FileManager.default.removeItem(atPath: $0) } }
        return try AgentSettings.resolve(flags: flags, appFlags: apps, environment: environment, filePath: path)
    }

    @Test func precedenceAndEnvironmentPrefix() throws {
        let settings = try resolve(
            flags: ["url": "https://flag.example"],
            environment: ["MESHGATE_AGENT_URL": "https://env.example", "MESHGATE_AGENT_TOKEN": "abc-def", "MESHGATE_URL": "https://server.example"],
            file: "url: https://file.example\ntoken: from-file\nallowed-ports: 8080, 3000\n"
        )
        #expect(settings.url.absoluteString == "https://flag.example")
        #expect(settings.token == "abc-def")
        #expect(settings.allowedPorts == [8080, 3000])
        #expect(settings.trust == .systemRoots)
        #expect(!settings.blockDirectConnections)
        #expect(try resolve(flags: ["url": "http://x", "token": "t", "block-direct-connections": "yes"]).blockDirectConnections)
        #expect(settings.udpOffload)
        #expect(try !resolve(flags: ["url": "http://x", "token": "t", "udp-offload": "false"]).udpOffload)
    }

    @Test func appsFromFileAndFlags() throws {
        let settings = try resolve(
            flags: ["url": "http://127.0.0.1:3000", "token": "t"], apps: ["web=http://127.0.0.1:8080,share=public"],
            file: "apps:\n  - slug: code\n    url: http://127.0.0.1:13337\n    subdomain: true\n"
        )
        #expect(settings.apps.map(\.slug) == ["code", "web"])
        #expect(settings.apps[0].subdomain && settings.apps[1].sharingLevel == .public)
        let twice = #expect(throws: ConfigurationError.self) {
            try resolve(flags: ["url": "http://x", "token": "t"], apps: ["code=http://127.0.0.1:1"], file: "apps:\n  - slug: code\n    url: http://127.0.0.1:2\n")
        }
        #expect(twice?.description.contains("declared twice") == true)
    }

    @Test func invalidValuesNameTheOption() throws {
        let url = #expect(throws: ConfigurationError.self) { try resolve(flags: ["url": "ftp://example.com", "token": "t"]) }
        #expect(url?.description.contains("--url") == true && url?.description.contains("ftp://example.com") == true)
        let missing = #expect(throws: ConfigurationError.self) { try resolve(flags: ["url": "http://x"]) }
        #expect(missing?.description.contains("--token") == true && missing?.description.contains("MESHGATE_AGENT_TOKEN") == true)
        let pin = #expect(throws: ConfigurationError.self) { try resolve(flags: ["url": "http://x", "token": "t", "tls-fingerprint": "abcd"]) }
        #expect(pin?.description.contains("--tls-fingerprint") == true)
        let ports = #expect(throws: ConfigurationError.self) { try resolve(flags: ["url": "http://x", "token": "t", "allowed-ports": "80,0"]) }
        #expect(ports?.description.contains("--allowed-ports") == true)
        let typo = #expect(throws: ConfigurationFileError.self) { try resolve(flags: ["url": "http://x", "token": "t"], file: "tokn: x\n") }
        #expect(typo?.description.contains("unknown option 'tokn'") == true)
    }

    @Test func tokenNeverInErrors() throws {
        let error = #expect(throws: ConfigurationError.self) { try resolve(flags: ["url": "http://x", "token": "secret value"]) }
        #expect(error?.description.contains("secret") == false)
    }

    @Test func fingerprintAsPrinted() throws {
        let printed = (0..<32).map { String(format: "%02X", $0) }.joined(separator: ":")
        let settings = try resolve(flags: ["url": "https://x", "token": "t", "tls-fingerprint": printed])
        #expect(settings.trust == .pinnedSHA256(Array(0..<32)))
    }
}
