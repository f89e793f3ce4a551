import AppProxy
import Foundation

/// A host and port to listen on, parsed from "host:port", "[v6]:port" or ":port" (all interfaces).
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) { (self.host, self.port) = (host, port) }

    public init?(parsing text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (0...65535).contains(port) else { return nil }
        self.host = host.isEmpty ? "0.0.0.0" : String(host)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// The gateway's resolved settings. Built once at start-up (flags > env > YAML > defaults) and never mutated.
public struct GatewayConfiguration: Sendable {
    /// The URL users and agents reach this deployment at; links, redirects and cookies derive from it.
    public var accessURL: URL
    /// Host pattern for subdomain apps, e.g. "*.apps.example.com" (validated; apps use it).
    public var wildcardAccessURL: String?
    public var httpAddress: ListenAddress?
    public var tlsAddress: ListenAddress?
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    public var dataDirectory: String
    public var prometheusAddress: ListenAddress?
    public var sessionLifetime: TimeInterval
    /// Login attempts per minute per client address; 0 disables the limit.
    public var loginRateLimit: Int
    /// How long after its creation an agent that never connected is `connecting`; then it is `timeout`.
    public var agentConnectionTimeout: TimeInterval
    /// `--disable-path-apps`: apps only on their own subdomains (path apps share the dashboard's origin).
    public var disablePathApps: Bool
    /// `--dangerous-allow-path-app-sharing`: path apps follow their sharing level instead of being owner-only.
    public var allowPathAppSharing: Bool
    /// `--xterm-path`: the directory the web terminal's xterm.js 3.x comes from (Debian's libjs-xterm); served
    /// under `/assets/xterm/`. A missing directory only disables the terminal page.
    public var xtermPath: String

    public init(
        accessURL: URL, wildcardAccessURL: String? = nil, httpAddress: ListenAddress?, tlsAddress: ListenAddress?,
        tlsCertificateFile: String? = nil, tlsKeyFile: String? = nil, dataDirectory: String,
        prometheusAddress: ListenAddress? = nil, sessionLifetime: TimeInterval = 24 * 3600, loginRateLimit: Int = 10,
        agentConnectionTimeout: TimeInterval = 120, disablePathApps: Bool = false, allowPathAppSharing: Bool = false,
        xtermPath: String = GatewayConfiguration.defaultXtermPath
    ) {
        self.accessURL = accessURL
        self.wildcardAccessURL = wildcardAccessURL
        self.httpAddress = httpAddress
        self.tlsAddress = tlsAddress
        self.tlsCertificateFile = tlsCertificateFile
        self.tlsKeyFile = tlsKeyFile
        self.dataDirectory = dataDirectory
        self.prometheusAddress = prometheusAddress
        self.sessionLifetime = sessionLifetime
        self.loginRateLimit = loginRateLimit
        self.agentConnectionTimeout = agentConnectionTimeout
        (self.disablePathApps, self.allowPathAppSharing) = (disablePathApps, allowPathAppSharing)
        self.xtermPath = xtermPath
    }

    /// Where Debian's libjs-xterm installs xterm.js.
    public static let defaultXtermPath = "/usr/share/javascript/xterm"

    /// The wildcard host subdomain apps live under, parsed.
    public var appHostname: AppHostname? { wildcardAccessURL.flatMap(AppHostname.init(pattern:)) }

    /// Where the TLS certificate comes from: the given files, or a self-signed one for the access URL's host.
    public var certificateSource: CertificateSource {
        if let tlsCertificateFile, let tlsKeyFile { return .files(certificate: tlsCertificateFile, key: tlsKeyFile) }
        return .selfSigned(host: accessURL.host ?? "localhost", directory: dataDirectory)
    }
}
