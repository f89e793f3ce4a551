import ArgumentParser
import Foundation
import Gateway
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

enum BuildInfoVersion { static let value = BuildInfo.version }

/// `meshgate server`: the primary at the access URL.
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the primary: TLS front, API and accounts.",
        discussion: """
            Every option is also an environment variable MESHGATE_<NAME> (e.g. MESHGATE_ACCESS_URL) and a key in the \
            YAML file given by --config (e.g. access-url: https://…). Precedence: flag > environment > file > default. \
            An invalid value stops start-up naming the option. See config/meshgate.yaml for a commented example.
            """
    )

    @Option(name: .customLong("config"), help: "YAML configuration file. (env: MESHGATE_CONFIG)")
    var configFile: String?

    @Option(name: .customLong("access-url"), help: "URL users and agents reach this deployment at. (env: MESHGATE_ACCESS_URL; default: derived from the TLS, else HTTP listener)")
    var accessURL: String?

    @Option(name: .customLong("wildcard-access-url"), help: "Wildcard host for subdomain apps, *.apps.example.com or *-apps.example.com. (env: MESHGATE_WILDCARD_ACCESS_URL)")
    var wildcardAccessURL: String?

    @Option(name: .customLong("http-address"), help: "Plain HTTP listen address; \"\" disables. Serves everything without TLS, else redirects to the access URL. (env: MESHGATE_HTTP_ADDRESS; default: 127.0.0.1:3000)")
    var httpAddress: String?

    @Option(name: .customLong("tls-address"), help: "TLS listen address (HTTP/2 and HTTP/1.1 with WebSockets); turns TLS on. (env: MESHGATE_TLS_ADDRESS; default: off, 127.0.0.1:3443 with --dev)")
    var tlsAddress: String?

    @Option(name: .customLong("tls-cert-file"), help: "PEM certificate chain, leaf first. Reloaded on SIGHUP. Without it a self-signed certificate for the access URL's host is generated. (env: MESHGATE_TLS_CERT_FILE)")
    var tlsCertFile: String?

    @Option(name: .customLong("tls-key-file"), help: "PEM private key for --tls-cert-file. (env: MESHGATE_TLS_KEY_FILE)")
    var tlsKeyFile: String?

    @Option(name: .customLong("data-dir"), help: "Directory for the SQLite database and generated certificates. (env: MESHGATE_DATA_DIR; default: $XDG_DATA_HOME/meshgate or ~/.local/share/meshgate, ./.meshgate-dev with --dev)")
    var dataDir: String?

    @Option(name: .customLong("log-format"), help: "text or json. (env: MESHGATE_LOG_FORMAT; default: text)")
    var logFormat: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical. (env: MESHGATE_LOG_LEVEL; default: info)")
    var logLevel: String?

    @Option(name: .customLong("prometheus-address"), help: "Serve Prometheus metrics at http://ADDRESS/metrics. (env: MESHGATE_PROMETHEUS_ADDRESS; default: off)")
    var prometheusAddress: String?

    @Option(name: .customLong("session-duration"), help: "Lifetime of a login session, e.g. 24h, 90m. (env: MESHGATE_SESSION_DURATION; default: 24h)")
    var sessionDuration: String?

    @Option(name: .customLong("login-rate-limit"), help: "Login attempts allowed per minute per client address; 0 disables. (env: MESHGATE_LOGIN_RATE_LIMIT; default: 10)")
    var loginRateLimit: String?

    @Option(name: .customLong("agent-connection-timeout"), help: "How long a new agent that never connected shows as connecting before it shows as timeout, e.g. 120s, 5m. (env: MESHGATE_AGENT_CONNECTION_TIMEOUT; default: 120s)")
    var agentConnectionTimeout: String?

    @Option(name: .customLong("disable-path-apps"), help: "Serve apps only on their own subdomains (--wildcard-access-url); path apps answer 403. (env: MESHGATE_DISABLE_PATH_APPS; default: false)")
    var disablePathApps: String?

    @Option(name: .customLong("dangerous-allow-path-app-sharing"), help: "Let path apps follow their sharing level (authenticated, public). Path apps share the dashboard's origin, so a shared one can act as its visitors. (env: MESHGATE_DANGEROUS_ALLOW_PATH_APP_SHARING; default: false)")
    var allowPathAppSharing: String?

    @Option(name: .customLong("derp-server-enable"), help: "Run the built-in DERP relay at /derp (Upgrade: DERP or WebSocket subprotocol derp). (env: MESHGATE_DERP_SERVER_ENABLE; default: true)")
    var derpServerEnable: String?

    @Option(name: .customLong("derp-config-path"), help: "DERP map file in Tailscale's JSON format, layered over the embedded region (a region 999 replaces it). (env: MESHGATE_DERP_CONFIG_PATH; default: none)")
    var derpConfigPath: String?

    @Option(name: .customLong("derp-config-url"), help: "https URL of a DERP map in Tailscale's JSON format, fetched at start-up and every 5 minutes; --derp-config-path wins over it. (env: MESHGATE_DERP_CONFIG_URL; default: none)")
    var derpConfigURL: String?

    @Option(name: .customLong("derp-mesh-key"), help: "Shared secret (64 hex digits) of the relays in one region; with it this relay accepts mesh peers and dials --derp-mesh-peers. Never logged. (env: MESHGATE_DERP_MESH_KEY; default: none)")
    var derpMeshKey: String?

    @Option(name: .customLong("derp-mesh-peers"), help: "Comma-separated URLs of sibling relays to mesh with (replicas, regions), e.g. https://replica-2:443; each is dialed as a mesh client that forwards packets one hop. (env: MESHGATE_DERP_MESH_PEERS; default: none)")
    var derpMeshPeers: String?

    @Option(name: .customLong("derp-force-websockets"), help: "Dial DERP relays (mesh peers) over WebSockets only, never Upgrade: DERP. (env: MESHGATE_DERP_FORCE_WEBSOCKETS; default: false)")
    var derpForceWebSockets: String?

    @Option(name: .customLong("block-direct-connections"), help: "Keep mesh traffic to agents on the DERP relay: no direct UDP paths. (env: MESHGATE_BLOCK_DIRECT_CONNECTIONS; default: false)")
    var blockDirectConnections: String?

    @Option(name: .customLong("udp-offload"), help: "Let the kernel batch the mesh's UDP datagrams (GSO and GRO) where it and each route can; false sends and reads them one by one. (env: MESHGATE_UDP_OFFLOAD; default: true)")
    var udpOffload: String?

    @Option(name: .customLong("derp-server-accept-rate"), help: "New relay connections accepted per second (bursts of one second's worth); excess upgrades get 429. 0: unlimited. (env: MESHGATE_DERP_SERVER_ACCEPT_RATE; default: 0)")
    var derpServerAcceptRate: String?

    @Flag(name: .customLong("dev"), inversion: .prefixedNo, help: "Development mode: HTTP and TLS listeners with a generated certificate, data in ./.meshgate-dev, an owner account printed at start. (env: MESHGATE_DEV)")
    var dev: Bool?

    /// The flags actually given, keyed by option name.
    var flags: [String: String] {
        typealias O = ServerSettings.Option
        let pairs: [(String, String?)] = [
            (O.accessURL, accessURL), (O.wildcardAccessURL, wildcardAccessURL), (O.httpAddress, httpAddress),
            (O.tlsAddress, tlsAddress), (O.tlsCertFile, tlsCertFile), (O.tlsKeyFile, tlsKeyFile), (O.dataDir, dataDir),
            (O.logFormat, logFormat), (O.logLevel, logLevel), (O.prometheusAddress, prometheusAddress),
            (O.sessionDuration, sessionDuration), (O.loginRateLimit, loginRateLimit),
            (O.agentConnectionTimeout, agentConnectionTimeout), (O.disablePathApps, disablePathApps), (O.allowPathAppSharing, allowPathAppSharing), (O.dev, dev.map { $0 ? "true" : "false" }),
            (O.derpServerEnable, derpServerEnable), (O.derpConfigPath, derpConfigPath), (O.derpConfigURL, derpConfigURL),
            (O.derpMeshKey, derpMeshKey), (O.derpMeshPeers, derpMeshPeers), (O.derpForceWebSockets, derpForceWebSockets),
            (O.blockDirectConnections, blockDirectConnections), (O.udpOffload, udpOffload),
            (O.derpAcceptRate, derpServerAcceptRate),
        ]
        return Dictionary(uniqueKeysWithValues: pairs.compactMap { name, value in value.map { (name, $0) } })
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let settings: ServerSettings
        do {
            let path = configFile ?? environment["MESHGATE_CONFIG"]
            let file = try path.map { try ConfigurationSources.loadFile($0, knownOptions: ServerSettings.Option.all) } ?? [:]
            settings = try ServerSettings.resolve(ConfigurationSources(flags: flags, environment: environment, file: file, filePath: path))
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        } catch let error as ConfigurationFileError {
            throw ValidationError(error.description)
        }
        try await ServerRunner(settings: settings).run()
    }
}
