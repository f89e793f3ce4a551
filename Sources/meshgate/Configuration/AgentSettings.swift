import Agent
import Foundation
import Logging
import Tunnel
import Yams

/// Everything `meshgate agent` needs, resolved once: flag > environment (`MESHGATE_AGENT_<NAME>`) > YAML file.
/// The file may also hold `apps:` (a list, see `AgentApp.Declaration`); `--app` flags add to them.
struct AgentSettings {
    var url: URL
    var token: String
    var trust: DERPTrust
    var apps: [AgentApp]
    var allowedPorts: Set<UInt16>?
    /// Keep this agent's mesh traffic on DERP: no direct UDP paths.
    var blockDirectConnections: Bool
    /// UDP segmentation and receive offload on the mesh socket (GSO/GRO).
    var udpOffload: Bool
    var logFormat: LogSetup.Format
    var logLevel: Logger.Level

    enum Option {
        static let url = "url"
        static let token = "token"
        static let tlsFingerprint = "tls-fingerprint"
        static let allowedPorts = "allowed-ports"
        static let logFormat = "log-format"
        static let logLevel = "log-level"
        static let blockDirectConnections = "block-direct-connections"
        static let udpOffload = "udp-offload"
        static let apps = "apps"
        static let scalars: Set<String> = [url, token, tlsFingerprint, allowedPorts, logFormat, logLevel, blockDirectConnections, udpOffload]
        static let secrets: Set<String> = [token]
    }

    static let environmentPrefix = "MESHGATE_AGENT_"

    /// Resolves the settings; `filePath` is the YAML file (if any) and `appFlags` the `--app` values.
    static func resolve(flags: [String: String], appFlags: [String], environment: [String: String], filePath: String?) throws -> AgentSettings {
        let text: String? = try filePath.map { path in
            do {
                return try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ConfigurationFileError(path: path, reason: "cannot read file (\(error.localizedDescription))")
            }
        }
        var fileScalars: [String: String] = [:]
        var fileApps: [AgentApp] = []
        if let text, let filePath {
            // The scalars go through the same checks as the server's file; `apps` is decoded on its own.
            fileScalars = try ConfigurationSources.loadFile(filePath, knownOptions: Option.scalars, structured: [Option.apps])
            do {
                fileApps = try YAMLDecoder().decode(AppsSection.self, from: text).apps ?? []
            } catch let error as AgentAppError {
                throw ConfigurationFileError(path: filePath, reason: "\(error)")
            } catch {
                throw ConfigurationFileError(path: filePath, reason: "apps: \(error)")
            }
        }
        var sources = ConfigurationSources(flags: flags, environment: environment, file: fileScalars, filePath: filePath)
        sources.environmentPrefix = environmentPrefix
        var reader = ConfigurationReader(sources: sources, secrets: Option.secrets)
        guard reader.sources.value(Option.url) != nil else {
            throw ConfigurationError(option: Option.url, value: "", origin: .defaultValue, reason: "required: the server's access URL (or \(sources.environmentName(Option.url)))")
        }
        let url = try reader.parse(Option.url, default: URL(string: "http://invalid")!) { text -> URL in
            guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host?.isEmpty == false else {
                throw ServerSettings.Reason("must be an http:// or https:// URL")
            }
            return url
        }
        guard reader.sources.value(Option.token) != nil else {
            throw ConfigurationError(option: Option.token, value: "", origin: .defaultValue, reason: "required: the agent token (or \(sources.environmentName(Option.token)))")
        }
        let token = try reader.parse(Option.token, default: "") { text -> String in
            guard !text.isEmpty, text.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { throw ServerSettings.Reason("must be the agent token printed when the agent was created") }
            return text
        }
        let trust = try reader.parse(Option.tlsFingerprint, default: DERPTrust.systemRoots) { text -> DERPTrust in
            guard let pin = DERPTrust(fingerprint: text) else {
                throw ServerSettings.Reason("must be the server certificate's SHA-256 fingerprint (64 hex digits, colons allowed)")
            }
            return pin
        }
        let allowedPorts = try reader.parse(Option.allowedPorts, default: nil) { text -> Set<UInt16>? in
            var ports = Set<UInt16>()
            for part in text.split(separator: ",") {
                guard let port = UInt16(part.trimmingCharacters(in: .whitespaces)), port > 0 else {
                    throw ServerSettings.Reason("must be comma-separated port numbers 1-65535")
                }
                ports.insert(port)
            }
            return ports
        }
        let logFormat = try reader.parse(Option.logFormat, default: .text, LogSetup.parseFormat)
        let logLevel = try reader.parse(Option.logLevel, default: .info, LogSetup.parseLevel)
        let blockDirectConnections = try reader.parse(Option.blockDirectConnections, default: false) { try ServerSettings.parseBool($0) }
        let udpOffload = try reader.parse(Option.udpOffload, default: true) { try ServerSettings.parseBool($0) }
        var flagApps: [AgentApp] = []
        for flag in appFlags {
            do {
                flagApps.append(try AgentApp(flag: flag))
            } catch {
                throw ConfigurationError(option: "app", value: flag, origin: .flag("app"), reason: "\(error)")
            }
        }
        let apps: [AgentApp]
        do {
            apps = try AgentApp.unique(fileApps + flagApps)
        } catch {
            throw ConfigurationError(option: "app", value: error.app, origin: .flag("app"), reason: "\(error)")
        }
        return AgentSettings(url: url, token: token, trust: trust, apps: apps, allowedPorts: allowedPorts,
            blockDirectConnections: blockDirectConnections, udpOffload: udpOffload, logFormat: logFormat, logLevel: logLevel)
    }

    private struct AppsSection: Decodable {
        let apps: [AgentApp]?
    }
}
