import Agent
import ArgumentParser
import Foundation
import Gateway
import Logging
import ServiceLifecycle
import Tunnel
import UnixSignals

/// `meshgate agent`: runs inside a workspace and dials out to the primary only.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run a workspace agent: join the mesh through the primary and serve this workspace's ports and apps.",
        discussion: """
            Every option is also an environment variable MESHGATE_AGENT_<NAME> (e.g. MESHGATE_AGENT_TOKEN) and a key \
            in the YAML file given by --config, which may also list apps under `apps:`. Precedence: flag > environment > \
            file. The agent reconnects by itself for as long as it runs; SIGTERM or SIGINT leaves the mesh cleanly.
            """
    )

    @Option(name: .customLong("config"), help: "YAML configuration file. (env: MESHGATE_AGENT_CONFIG)")
    var configFile: String?

    @Option(name: .customLong("url"), help: "The primary's access URL. (env: MESHGATE_AGENT_URL; required)")
    var url: String?

    @Option(name: .customLong("token"), help: "The agent token printed when the agent was created; prefer the environment variable, as flags show in `ps`. (env: MESHGATE_AGENT_TOKEN; required)")
    var token: String?

    @Option(name: .customLong("tls-fingerprint"), help: "SHA-256 fingerprint of a self-signed server certificate to trust (as `meshgate server` prints it). (env: MESHGATE_AGENT_TLS_FINGERPRINT; default: system roots)")
    var tlsFingerprint: String?

    @Option(name: .customLong("allowed-ports"), help: "Comma-separated local ports the mesh may reach on 127.0.0.1. (env: MESHGATE_AGENT_ALLOWED_PORTS; default: all)")
    var allowedPorts: String?

    @Option(name: .customLong("app"), help: "An app: SLUG=URL[,name=…][,share=owner|authenticated|public][,subdomain][,health=/path][,interval=5s][,threshold=3]. Repeatable.")
    var apps: [String] = []

    @Option(name: .customLong("block-direct-connections"), help: "Keep mesh traffic on the DERP relay: no direct UDP paths. (env: MESHGATE_AGENT_BLOCK_DIRECT_CONNECTIONS; default: false)")
    var blockDirectConnections: String?

    @Option(name: .customLong("udp-offload"), help: "Let the kernel batch the mesh's UDP datagrams (GSO and GRO) where it and each route can; false sends and reads them one by one. (env: MESHGATE_AGENT_UDP_OFFLOAD; default: true)")
    var udpOffload: String?

    @Option(name: .customLong("log-format"), help: "text or json. (env: MESHGATE_AGENT_LOG_FORMAT; default: text)")
    var logFormat: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical. (env: MESHGATE_AGENT_LOG_LEVEL; default: info)")
    var logLevel: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let settings: AgentSettings
        do {
            typealias O = AgentSettings.Option
            let pairs: [(String, String?)] = [
                (O.url, url), (O.token, token), (O.tlsFingerprint, tlsFingerprint), (O.allowedPorts, allowedPorts),
                (O.logFormat, logFormat), (O.logLevel, logLevel), (O.blockDirectConnections, blockDirectConnections),
                (O.udpOffload, udpOffload),
            ]
            settings = try AgentSettings.resolve(
                flags: Dictionary(uniqueKeysWithValues: pairs.compactMap { name, value in value.map { (name, $0) } }), appFlags: apps,
                environment: environment, filePath: configFile ?? environment[AgentSettings.environmentPrefix + "CONFIG"]
            )
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        } catch let error as ConfigurationFileError {
            throw ValidationError(error.description)
        }
        let logger = LogSetup.bootstrap(format: settings.logFormat, level: settings.logLevel, label: "meshgate.agent")
        let runtime = AgentRuntime(
            configuration: AgentConfiguration(
                url: settings.url, token: settings.token, trust: settings.trust, apps: settings.apps, allowedPorts: settings.allowedPorts,
                version: BuildInfo.version, direct: DirectPathConfiguration(blocked: settings.blockDirectConnections, udpOffload: settings.udpOffload)
            ),
            logger: logger
        )
        let service = AgentService(runtime: runtime)
        var group = ServiceGroupConfiguration(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        group.maximumGracefulShutdownDuration = .seconds(10)
        do {
            try await ServiceGroup(configuration: group).run()
        } catch let error as AgentRuntimeError {
            logger.critical("agent cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(2)
        }
    }
}

/// The runtime as a service: graceful shutdown means leaving the mesh (peers hear "gone"), then returning.
private struct AgentService: Service {
    let runtime: AgentRuntime

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await runtime.run()
        } onGracefulShutdown: {
            runtime.stop()
        }
    }
}
