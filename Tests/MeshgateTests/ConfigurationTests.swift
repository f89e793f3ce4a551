import Foundation
import Gateway
import Logging
import Testing

@testable import meshgate

@Suite struct ConfigurationTests {
    func resolve(flags: [String: String] = [:], environment: [String: String] = [:], file: [String: String] = [:]) throws -> ServerSettings {
        try ServerSettings.resolve(ConfigurationSources(flags: flags, environment: environment, file: file, filePath: "/etc/meshgate.yaml"))
    }

    /// flag > MESHGATE_* > YAML > default, option by option.
    @Test func precedence() throws {
        let key = ServerSettings.Option.accessURL
        #expect(try resolve().gateway.accessURL.absoluteString == "http://localhost:3000")
        #expect(try resolve(file: [key: "https://file.example"]).gateway.accessURL.absoluteString == "https://file.example")
        #expect(
            try resolve(environment: ["MESHGATE_ACCESS_URL": "https://env.example"], file: [key: "https://file.example"])
                .gateway.accessURL.absoluteString == "https://env.example"
        )
        #expect(
            try resolve(
                flags: [key: "https://flag.example"], environment: ["MESHGATE_ACCESS_URL": "https://env.example"],
                file: [key: "https://file.example"]
            ).gateway.accessURL.absoluteString == "https://flag.example"
        )
        // Each option resolves on its own: a flag for one does not hide the file's value of another.
        let mixed = try resolve(flags: ["log-format": "json"], file: ["log-level": "debug", "log-format": "text"])
        #expect(mixed.logFormat == .json && mixed.logLevel == .debug)
    }

    /// An invalid value stops start-up with the option, the value and where it came from.
    @Test func invalidValueNamesOptionValueAndOrigin() throws {
        let error = #expect(throws: ConfigurationError.self) {
            try resolve(environment: ["MESHGATE_HTTP_ADDRESS": "localhost:99999"])
        }
        #expect(error?.description == "invalid value \"localhost:99999\" for --http-address (from environment variable MESHGATE_HTTP_ADDRESS): must be host:port, [ipv6]:port or :port with a port 0-65535")
        let fromFile = #expect(throws: ConfigurationError.self) { try resolve(file: ["log-format": "xml"]) }
        #expect(fromFile?.description.contains("key 'log-format' in /etc/meshgate.yaml") == true)
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["access-url": "ftp://x"]) }
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["access-url": "https://x/path"]) }
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["session-duration": "10 minutes"]) }
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["wildcard-access-url": "apps.example.com"]) }
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["login-rate-limit": "-1"]) }
        #expect(throws: ConfigurationError.self) { try resolve(environment: ["MESHGATE_AGENT_CONNECTION_TIMEOUT": "soon"]) }
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["tls-cert-file": "/nonexistent.pem"]) }
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["http-address": ""]) }
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["dev": "maybe"]) }
    }

    /// --agent-connection-timeout: 120 s unless a flag, MESHGATE_AGENT_CONNECTION_TIMEOUT or the file says otherwise.
    @Test func agentConnectionTimeout() throws {
        #expect(try resolve().gateway.agentConnectionTimeout == 120)
        #expect(try resolve(file: ["agent-connection-timeout": "5m"]).gateway.agentConnectionTimeout == 300)
        let both = try resolve(flags: ["agent-connection-timeout": "45s"], environment: ["MESHGATE_AGENT_CONNECTION_TIMEOUT": "10m"])
        #expect(both.gateway.agentConnectionTimeout == 45)
        let error = #expect(throws: ConfigurationError.self) { try resolve(flags: ["agent-connection-timeout": "0s"]) }
        #expect(error?.description.contains("--agent-connection-timeout") == true)
    }

    /// --xterm-path: Debian's libjs-xterm directory unless set; a missing directory is no start-up error (the terminal
    /// page says what to install).
    @Test func xtermPath() throws {
        #expect(try resolve().gateway.xtermPath == "/usr/share/javascript/xterm")
        #expect(try resolve(environment: ["MESHGATE_XTERM_PATH": "/nonexistent/xterm"]).gateway.xtermPath == "/nonexistent/xterm")
        #expect(try resolve(flags: ["xterm-path": "/a"], file: ["xterm-path": "/b"]).gateway.xtermPath == "/a")
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["xterm-path": ""]) }
    }

    @Test func devDefaults() throws {
        let dev = try resolve(flags: ["dev": "true"])
        #expect(dev.gateway.tlsAddress == ListenAddress(host: "127.0.0.1", port: 3443))
        #expect(dev.gateway.httpAddress == ListenAddress(host: "127.0.0.1", port: 3000))
        #expect(dev.gateway.accessURL.absoluteString == "https://localhost:3443")
        #expect(dev.gateway.dataDirectory == ".meshgate-dev")
    }

    @Test func valueParsers() throws {
        #expect(try ServerSettings.parseDuration("1h30m") == 5400)
        #expect(try ServerSettings.parseDuration("90s") == 90)
        #expect(ListenAddress(parsing: "[::1]:8080") == ListenAddress(host: "::1", port: 8080))
        #expect(ListenAddress(parsing: ":443") == ListenAddress(host: "0.0.0.0", port: 443))
        #expect(ListenAddress(parsing: "::1:80") == nil)
        #expect(try ServerSettings.parseWildcard("*.Apps.Example.com") == "*.apps.example.com")
        #expect(try ServerSettings.parseWildcard("*-apps.example.com") == "*-apps.example.com")
    }

    /// The DERP map options: none by default; flag > env > YAML like every option; the URL must be https
    /// (http only on loopback) and the file readable, else the error names option, value and origin.
    @Test func derpMapOptions() throws {
        let defaults = try resolve()
        #expect(defaults.derpConfigPath == nil && defaults.derpConfigURL == nil)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("derpmap-\(UUID().uuidString).json").path
        try "{}".write(toFile: file, atomically: true, encoding: .utf8)
        let url = "https://controlplane.tailscale.com/derpmap/default"
        let settings = try resolve(
            flags: ["derp-config-url": url], environment: ["MESHGATE_DERP_CONFIG_URL": "https://env.example/map.json", "MESHGATE_DERP_CONFIG_PATH": file],
            file: ["derp-config-path": "/etc/nonexistent.json"]
        )
        #expect(settings.derpConfigURL?.absoluteString == url && settings.derpConfigPath == file)
        #expect(try resolve(file: ["derp-config-url": "https://file.example/map"]).derpConfigURL?.absoluteString == "https://file.example/map")
        #expect(try resolve(flags: ["derp-config-url": "http://127.0.0.1:8080/map.json"]).derpConfigURL != nil)
        #expect(try resolve(flags: ["derp-config-url": "http://localhost/map.json"]).derpConfigURL != nil)
        #expect(try resolve(flags: ["derp-config-url": ""]).derpConfigURL == nil)

        let plain = #expect(throws: ConfigurationError.self) { try resolve(environment: ["MESHGATE_DERP_CONFIG_URL": "http://maps.example/map.json"]) }
        #expect(plain?.description == "invalid value \"http://maps.example/map.json\" for --derp-config-url (from environment variable MESHGATE_DERP_CONFIG_URL): must be an https:// URL (http:// only for 127.0.0.1 or localhost), e.g. https://controlplane.tailscale.com/derpmap/default")
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["derp-config-url": "not a url"]) }
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["derp-config-url": "ftp://maps.example/map.json"]) }
        let missing = #expect(throws: ConfigurationError.self) { try resolve(file: ["derp-config-path": "/etc/nonexistent.json"]) }
        #expect(missing?.description == "invalid value \"/etc/nonexistent.json\" for --derp-config-path (from key 'derp-config-path' in /etc/meshgate.yaml): file does not exist or is not readable")
        #expect(ServerSettings.Option.all.isSuperset(of: ["derp-config-path", "derp-config-url"]))
    }

    /// YAML: scalars become option values; unknown keys and nested values are refused.
    @Test func yamlFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("meshgate-\(UUID().uuidString).yaml").path
        try "access-url: https://yaml.example\nlogin-rate-limit: 5\ndev: false\n".write(toFile: path, atomically: true, encoding: .utf8)
        let values = try ConfigurationSources.loadFile(path, knownOptions: ServerSettings.Option.all)
        #expect(values == ["access-url": "https://yaml.example", "login-rate-limit": "5", "dev": "false"])

        try "acess-url: https://typo.example\n".write(toFile: path, atomically: true, encoding: .utf8)
        let typo = #expect(throws: ConfigurationFileError.self) { try ConfigurationSources.loadFile(path, knownOptions: ServerSettings.Option.all) }
        #expect(typo?.description.contains("unknown option 'acess-url'") == true)
        try "http-address:\n  host: x\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: ConfigurationFileError.self) { try ConfigurationSources.loadFile(path, knownOptions: ServerSettings.Option.all) }
    }

    /// Mesh options: a 64-hex key (never echoed), peers that need the key, http(s) URLs with /derp added.
    @Test func derpMeshOptions() throws {
        let key = String(repeating: "0f", count: 32)
        let settings = try resolve(environment: ["MESHGATE_DERP_MESH_KEY": key, "MESHGATE_DERP_MESH_PEERS": "https://replica-2:8443, http://10.0.0.3"])
        #expect(settings.derpMesh?.key == key)
        #expect(settings.derpMesh?.peers.map(\.absoluteString) == ["https://replica-2:8443/derp", "http://10.0.0.3/derp"])
        #expect(try resolve().derpMesh == nil)

        let badKey = #expect(throws: ConfigurationError.self) { try resolve(flags: ["derp-mesh-key": "secret-but-short"]) }
        #expect(badKey?.description.contains("secret-but-short") == false)
        #expect(badKey?.description.contains("--derp-mesh-key") == true)
        let peersWithoutKey = #expect(throws: ConfigurationError.self) { try resolve(flags: ["derp-mesh-peers": "https://replica-2"]) }
        #expect(peersWithoutKey?.description.contains("needs --derp-mesh-key") == true)
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["derp-mesh-key": key, "derp-server-enable": "false"]) }
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["derp-mesh-key": key, "derp-mesh-peers": "ftp://x"]) }
        #expect(try resolve(flags: ["derp-server-accept-rate": "50"]).derpAcceptRate == 50)
        #expect(throws: ConfigurationError.self) { try resolve(flags: ["derp-server-accept-rate": "-1"]) }
        #expect(try resolve(file: ["derp-force-websockets": "true"]).derpForceWebSockets)
        #expect(try !resolve().blockDirectConnections)
        #expect(try resolve(environment: ["MESHGATE_BLOCK_DIRECT_CONNECTIONS": "true"]).blockDirectConnections)
        #expect(try resolve().udpOffload)
        #expect(try !resolve(flags: ["udp-offload": "false"]).udpOffload)
        let badOffload = #expect(throws: ConfigurationError.self) { try resolve(environment: ["MESHGATE_UDP_OFFLOAD": "sometimes"]) }
        #expect(badOffload?.description.contains("udp-offload") == true)
    }
}
