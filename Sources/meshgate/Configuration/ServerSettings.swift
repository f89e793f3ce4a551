import AppProxy
import Foundation
import Gateway
import Logging

/// Everything `meshgate server` needs, resolved once from flags, environment, YAML file and defaults.
struct ServerSettings {
    var gateway: GatewayConfiguration
    var logFormat: LogSetup.Format
    var logLevel: Logger.Level
    var dev: Bool
    var derpServerEnabled: Bool
    /// A DERP map in Tailscale's JSON, read at start-up and layered over the embedded region.
    var derpConfigPath: String?
    /// A DERP map fetched at start-up and refreshed; the file at `derpConfigPath` wins over it.
    var derpConfigURL: URL?
    var derpMesh: DERPMeshSettings?
    var derpForceWebSockets: Bool
    /// Keep the gateway's mesh traffic on DERP: no direct UDP paths to agents.
    var blockDirectConnections: Bool
    /// UDP segmentation and receive offload on the mesh socket (GSO/GRO).
    var udpOffload: Bool
    /// New relay connections admitted per second (burst: one second's worth); 0: unlimited.
    var derpAcceptRate: Int

    /// The relays this one meshes with, and the region's shared key.
    struct DERPMeshSettings {
        var key: String
        var peers: [URL]
    }

    /// Option names as flags and YAML keys; `MESHGATE_` + upper snake case as environment variables.
    enum Option {
        static let accessURL = "access-url"
        static let wildcardAccessURL = "wildcard-access-url"
        static let httpAddress = "http-address"
        static let tlsAddress = "tls-address"
        static let tlsCertFile = "tls-cert-file"
        static let tlsKeyFile = "tls-key-file"
        static let dataDir = "data-dir"
        static let logFormat = "log-format"
        static let logLevel = "log-level"
        static let prometheusAddress = "prometheus-address"
        static let sessionDuration = "session-duration"
        static let loginRateLimit = "login-rate-limit"
        static let agentConnectionTimeout = "agent-connection-timeout"
        static let disablePathApps = "disable-path-apps"
        static let allowPathAppSharing = "dangerous-allow-path-app-sharing"
        static let dev = "dev"
        static let xtermPath = "xterm-path"
        static let derpServerEnable = "derp-server-enable"
        static let derpConfigPath = DERPMapSource.pathOption
        static let derpConfigURL = DERPMapSource.urlOption
        static let derpMeshKey = "derp-mesh-key"
        static let derpMeshPeers = "derp-mesh-peers"
        static let derpForceWebSockets = "derp-force-websockets"
        static let blockDirectConnections = "block-direct-connections"
        static let udpOffload = "udp-offload"
        static let derpAcceptRate = "derp-server-accept-rate"
        static let secrets: Set<String> = [derpMeshKey]

        static let all: Set<String> = [
            accessURL, wildcardAccessURL, httpAddress, tlsAddress, tlsCertFile, tlsKeyFile, dataDir, logFormat, logLevel,
            prometheusAddress, sessionDuration, loginRateLimit, agentConnectionTimeout, disablePathApps, allowPathAppSharing, dev, derpServerEnable, derpConfigPath, derpConfigURL,
            derpMeshKey, derpMeshPeers, derpForceWebSockets, derpAcceptRate, xtermPath,
            blockDirectConnections, udpOffload,
        ]
    }

    /// Defaults that `--dev` changes, so `meshgate server --dev` is a complete local deployment.
    enum Defaults {
        static let httpAddress = "127.0.0.1:3000"
        static let devTLSAddress = "127.0.0.1:3443"
        static let devDataDir = ".meshgate-dev"
        static var dataDir: String {
            let environment = ProcessInfo.processInfo.environment
            if let xdg = environment["XDG_DATA_HOME"], !xdg.isEmpty { return xdg + "/meshgate" }
            return (environment["HOME"] ?? FileManager.default.currentDirectoryPath) + "/.local/share/meshgate"
        }
    }

    static func resolve(_ sources: ConfigurationSources) throws -> ServerSettings {
        var reader = ConfigurationReader(sources: sources, secrets: Option.secrets)
        let dev = try reader.parse(Option.dev, default: false) { try parseBool($0) }
        let logFormat = try reader.parse(Option.logFormat, default: .text, LogSetup.parseFormat)
        let logLevel = try reader.parse(Option.logLevel, default: .info, LogSetup.parseLevel)
        let httpAddress = try reader.parse(Option.httpAddress, default: ListenAddress(parsing: Defaults.httpAddress)) { try parseAddress($0) }
        let tlsAddress = try reader.parse(Option.tlsAddress, default: dev ? ListenAddress(parsing: Defaults.devTLSAddress) : nil) { try parseAddress($0) }
        guard httpAddress != nil || tlsAddress != nil else {
            throw ConfigurationError(option: Option.httpAddress, value: "", origin: reader.origin(Option.httpAddress), reason: "set --http-address or --tls-address: nothing would listen")
        }
        let certificateFile = try reader.parse(Option.tlsCertFile, default: nil) { try parseReadableFile($0) }
        let keyFile = try reader.parse(Option.tlsKeyFile, default: nil) { try parseReadableFile($0) }
        if (certificateFile == nil) != (keyFile == nil) {
            let given = certificateFile == nil ? Option.tlsKeyFile : Option.tlsCertFile
            throw ConfigurationError(
                option: given, value: certificateFile ?? keyFile ?? "", origin: reader.origin(given),
                reason: "--tls-cert-file and --tls-key-file must be given together"
            )
        }
        let accessURL = try reader.parse(Option.accessURL, default: defaultAccessURL(http: httpAddress, tls: tlsAddress)) { try parseAccessURL($0) }
        let wildcard = try reader.parse(Option.wildcardAccessURL, default: nil) { try parseWildcard($0) }
        let dataDir = try reader.parse(Option.dataDir, default: dev ? Defaults.devDataDir : Defaults.dataDir) { text -> String in
            guard !text.isEmpty else { throw Reason("must not be empty") }
            return text
        }
        let prometheus = try reader.parse(Option.prometheusAddress, default: nil) { try parseAddress($0) }
        let sessionLifetime = try reader.parse(Option.sessionDuration, default: 24 * 3600) { try parseDuration($0) }
        let loginRateLimit = try reader.parse(Option.loginRateLimit, default: 10) { text -> Int in
            guard let value = Int(text), value >= 0 else { throw Reason("must be a whole number ≥ 0 (0 disables the limit)") }
            return value
        }
        let agentConnectionTimeout = try reader.parse(Option.agentConnectionTimeout, default: 120) { try parseDuration($0) }
        let disablePathApps = try reader.parse(Option.disablePathApps, default: false) { try parseBool($0) }
        let allowPathAppSharing = try reader.parse(Option.allowPathAppSharing, default: false) { try parseBool($0) }
        // Not checked here: without xterm.js the server still runs, and the terminal page says how to install it.
        let xtermPath = try reader.parse(Option.xtermPath, default: GatewayConfiguration.defaultXtermPath) { text -> String in
            guard !text.isEmpty else { throw Reason("must not be empty") }
            return text
        }
        let derpServerEnabled = try reader.parse(Option.derpServerEnable, default: true) { try parseBool($0) }
        let derpConfigPath = try reader.parse(Option.derpConfigPath, default: nil) { try parseReadableFile($0) }
        let derpConfigURL = try reader.parse(Option.derpConfigURL, default: nil) { try parseDERPMapURL($0) }
        let derpMeshKey = try reader.parse(Option.derpMeshKey, default: nil) { text -> String? in
            if text.isEmpty { return nil }
            guard text.count == 64, text.allSatisfy(\.isHexDigit) else { throw Reason("must be 64 hex digits (e.g. from: openssl rand -hex 32)") }
            return text.lowercased()
        }
        let derpMeshPeers = try reader.parse(Option.derpMeshPeers, default: []) { try parseMeshPeers($0) }
        if !derpMeshPeers.isEmpty, derpMeshKey == nil {
            throw ConfigurationError(
                option: Option.derpMeshPeers, value: derpMeshPeers.map(\.absoluteString).joined(separator: ","), origin: reader.origin(Option.derpMeshPeers),
                reason: "needs --derp-mesh-key: siblings only accept mesh clients that present the region's key"
            )
        }
        if derpMeshKey != nil, !derpServerEnabled {
            throw ConfigurationError(
                option: Option.derpMeshKey, value: "(hidden)", origin: reader.origin(Option.derpMeshKey),
                reason: "meshing needs the built-in relay (--derp-server-enable=true)"
            )
        }
        let derpForceWebSockets = try reader.parse(Option.derpForceWebSockets, default: false) { try parseBool($0) }
        let blockDirectConnections = try reader.parse(Option.blockDirectConnections, default: false) { try parseBool($0) }
        let udpOffload = try reader.parse(Option.udpOffload, default: true) { try parseBool($0) }
        let derpAcceptRate = try reader.parse(Option.derpAcceptRate, default: 0) { text -> Int in
            guard let value = Int(text), value >= 0 else { throw Reason("must be a whole number ≥ 0 (0: unlimited)") }
            return value
        }
        return ServerSettings(
            gateway: GatewayConfiguration(
                accessURL: accessURL, wildcardAccessURL: wildcard, httpAddress: httpAddress, tlsAddress: tlsAddress,
                tlsCertificateFile: certificateFile, tlsKeyFile: keyFile, dataDirectory: dataDir, prometheusAddress: prometheus,
                sessionLifetime: sessionLifetime, loginRateLimit: loginRateLimit, agentConnectionTimeout: agentConnectionTimeout,
                disablePathApps: disablePathApps, allowPathAppSharing: allowPathAppSharing, xtermPath: xtermPath
            ),
            logFormat: logFormat, logLevel: logLevel, dev: dev, derpServerEnabled: derpServerEnabled,
            derpConfigPath: derpConfigPath, derpConfigURL: derpConfigURL,
            derpMesh: derpMeshKey.map { DERPMeshSettings(key: $0, peers: derpMeshPeers) },
            derpForceWebSockets: derpForceWebSockets, blockDirectConnections: blockDirectConnections, udpOffload: udpOffload,
            derpAcceptRate: derpAcceptRate
        )
    }

    /// Without --access-url: the TLS listener if any, else the HTTP one; wildcard hosts become "localhost".
    static func defaultAccessURL(http: ListenAddress?, tls: ListenAddress?) -> URL {
        let (scheme, address) = tls.map { ("https", $0) } ?? ("http", http ?? ListenAddress(host: "localhost", port: 3000))
        let host = ["0.0.0.0", "::", "127.0.0.1", "::1"].contains(address.host) ? "localhost" : address.host
        let display = host.contains(":") ? "[\(host)]" : host
        return URL(string: "\(scheme)://\(display):\(address.port)")!
    }

    // MARK: Value parsers: each throws `Reason` with what a valid value looks like.

    struct Reason: Error { let text: String; init(_ text: String) { self.text = text } }

    static func parseBool(_ text: String) throws -> Bool {
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw Reason("must be true or false")
        }
    }

    /// "" means "off" for optional listeners.
    static func parseAddress(_ text: String) throws -> ListenAddress? {
        if text.isEmpty { return nil }
        guard let address = ListenAddress(parsing: text) else { throw Reason("must be host:port, [ipv6]:port or :port with a port 0-65535") }
        return address
    }

    static func parseReadableFile(_ text: String) throws -> String? {
        if text.isEmpty { return nil }
        guard FileManager.default.isReadableFile(atPath: text) else { throw Reason("file does not exist or is not readable") }
        return text
    }

    static func parseAccessURL(_ text: String) throws -> URL {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = url.host, !host.isEmpty
        else { throw Reason("must be an absolute http:// or https:// URL, e.g. https://meshgate.example.com") }
        guard url.query == nil, url.fragment == nil, url.path.isEmpty || url.path == "/" else {
            throw Reason("must not have a path, query or fragment")
        }
        return url
    }

    /// https only: the map decides where nodes send their traffic. Plain http is allowed on loopback, where no
    /// one can tamper with it (tests, a local mirror).
    static func parseDERPMapURL(_ text: String) throws -> URL? {
        if text.isEmpty { return nil }
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased(), !host.isEmpty,
            scheme == "https" || (scheme == "http" && ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host))
        else { throw Reason("must be an https:// URL (http:// only for 127.0.0.1 or localhost), e.g. https://controlplane.tailscale.com/derpmap/default") }
        return url
    }

    /// Comma-separated http(s) URLs of sibling relays; "/derp" is added when a URL has no path.
    static func parseMeshPeers(_ text: String) throws -> [URL] {
        try text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map { item in
            guard var url = URL(string: item), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
                let host = url.host, !host.isEmpty
            else { throw Reason("must be comma-separated http(s) URLs of sibling relays, e.g. https://replica-2.internal:443") }
            if url.path.isEmpty || url.path == "/" { url = URL(string: "\(scheme)://\(url.host!)\(url.port.map { ":\($0)" } ?? "")/derp")! }
            return url
        }
    }

    /// "*.apps.example.com" or "*-apps.example.com": a single leading wildcard label.
    static func parseWildcard(_ text: String) throws -> String? {
        if text.isEmpty { return nil }
        guard AppHostname(pattern: text) != nil, !text.contains("/") else { throw Reason("must look like *.apps.example.com or *-apps.example.com") }
        return text.lowercased()
    }

    /// Go-style durations: "90s", "15m", "24h", "1h30m".
    static func parseDuration(_ text: String) throws -> TimeInterval {
        let units: [Character: TimeInterval] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        var total: TimeInterval = 0
        var number = ""
        for character in text {
            if character.isNumber {
                number.append(character)
            } else if let unit = units[character], let value = Double(number) {
                total += value * unit
                number = ""
            } else {
                throw Reason("must be a duration such as 90s, 15m, 24h or 1h30m")
            }
        }
        guard number.isEmpty, total > 0 else { throw Reason("must be a positive duration such as 90s, 15m, 24h or 1h30m") }
        return total
    }

    /// Looks up each option once and wraps parser failures into a `ConfigurationError` that names it.
}
