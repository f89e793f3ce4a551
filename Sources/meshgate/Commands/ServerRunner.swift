import Foundation
import Gateway
import Tunnel
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals

/// Brings a resolved `ServerSettings` to life: logging, metrics, store, dev account, services.
struct ServerRunner {
    let settings: ServerSettings

    func run() async throws {
        let logger = LogSetup.bootstrap(format: settings.logFormat, level: settings.logLevel)
        let registry = bootstrapMetrics()
        let configuration = settings.gateway

        let store: SQLiteStore
        do {
            try FileManager.default.createDirectory(
                atPath: configuration.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]
            )
            store = try SQLiteStore(path: configuration.dataDirectory + "/meshgate.db")
        } catch {
            throw StartupError("cannot open the database in --data-dir \(configuration.dataDirectory): \(error)")
        }
        let hasher = try PasswordHasher()
        var derp: DERPService?
        if settings.derpServerEnabled {
            // The relay's key is its identity to clients that pin it: kept across restarts.
            let key = try NodePrivateKey.loadOrCreate(path: configuration.dataDirectory + "/derp.key")
            var relayConfiguration = DERPServer.Configuration()
            relayConfiguration.acceptRate = settings.derpAcceptRate
            let relay = DERPServer(privateKey: key, meshKey: settings.derpMesh?.key, configuration: relayConfiguration)
            let transport: DERPTransport = settings.derpForceWebSockets ? .webSocket : .automatic
            let peers = (settings.derpMesh?.peers ?? []).map { url in
                DERPMeshPeer(server: relay, url: url, meshKey: relay.meshKey ?? "", transport: transport, logger: logger)
            }
            derp = DERPService(server: relay, meshPeers: peers)
            logger.info("DERP relay enabled", metadata: ["derp.server_key": "\(key.publicKey.shortForm)", "derp.mesh_peers": "\(peers.map(\.url))"])
        }
        let certificates: TLSCertificateStore?
        do {
            certificates = try configuration.tlsAddress.map { _ in try TLSCertificateStore(source: configuration.certificateSource, logger: logger) }
        } catch let error as TLSSetupError {
            throw StartupError("TLS certificate: \(error)")
        }
        // Nodes can only trust a generated certificate by its hash: the embedded region carries it as CertName.
        let selfSignedPin = configuration.tlsCertificateFile == nil ? certificates?.derpCertName : nil
        let derpMap = try await loadDERPMap(certName: selfSignedPin ?? "", logger: logger)
        var environment = GatewayEnvironment(
            configuration: configuration, store: store, clock: SystemWallClock(), hasher: hasher, pubsub: InMemoryPubSub(), derp: derp,
            derpMap: derpMap
        )
        // The gateway's own mesh node, on its relay in-process and in the coordinator: how it reaches agents
        // behind any NAT.
        var mesh: GatewayMesh?
        let meshLoop = derp == nil ? nil : GatewayMesh.dedicatedLoop()
        defer { meshLoop?.shutdownGracefully { _ in } }
        if let relay = derp?.server {
            let nodeKey = try NodePrivateKey.loadOrCreate(path: configuration.dataDirectory + "/node.key")
            let node = try await GatewayMesh.start(
                privateKey: nodeKey, address: .random(), relay: relay, region: DERPMap.embeddedRegionID, coordinator: environment.coordinator,
                direct: DirectPathConfiguration(blocked: settings.blockDirectConnections, udpOffload: settings.udpOffload), group: meshLoop ?? MultiThreadedEventLoopGroup.singleton,
                logger: logger
            )
            // Its paths and round trips to agents are part of the agents' state in the API.
            environment.agentPaths = node
            mesh = node
        }
        environment.agentStreams = mesh.map { AgentStreamPool(dialer: $0) }
        environment.agentDialer = mesh
        let server: GatewayServer
        do {
            server = try GatewayServer(environment: environment, metricsRegistry: registry, logger: logger, certificates: certificates)
        } catch let error as TLSSetupError {
            throw StartupError("TLS certificate: \(error)")
        }
        if let certificates = server.certificates {
            logger.notice("TLS certificate in use", metadata: ["tls.fingerprint_sha256": "\(certificates.currentFingerprint)"])
        }
        let developmentAccount = settings.dev ? try await DevelopmentAccount.ensure(store: store, hasher: hasher, dataDirectory: configuration.dataDirectory) : nil
        // --dev with the relay: a demo workspace whose agent runs as a child process, with a demo app behind it.
        let development: (workspace: DevelopmentWorkspace, agent: AgentSupervisor)?
        if let developmentAccount, mesh != nil {
            let workspace = try await DevelopmentWorkspace.ensure(store: store, ownerEmail: developmentAccount.email, dataDirectory: configuration.dataDirectory)
            let agent = AgentSupervisor(token: workspace.agentToken, logFormat: settings.logFormat, logLevel: settings.logLevel.rawValue, logger: logger)
            development = (workspace, agent)
        } else {
            development = nil
        }
        let fingerprint = server.certificates?.currentFingerprint

        let services = server.services { addresses in
            var metadata: Logger.Metadata = ["access_url": "\(configuration.accessURL.absoluteString)"]
            for (listener, address) in addresses { metadata["\(listener.rawValue).address"] = "\(address)" }
            logger.notice("meshgate ready", metadata: metadata)
            if let developmentAccount {
                developmentAccount.printBanner(accessURL: configuration.accessURL, fingerprint: fingerprint, workspace: development?.workspace)
            }
            // The agent dials the listener it can trust: TLS with the certificate's pin, else plain HTTP.
            if let agent = development?.agent {
                if let tls = addresses[.tls] {
                    agent.serverReady(.init(url: AgentSupervisor.localURL("https", tls), fingerprint: configuration.tlsCertificateFile == nil ? fingerprint : nil))
                } else if let http = addresses[.http] {
                    agent.serverReady(.init(url: AgentSupervisor.localURL("http", http), fingerprint: nil))
                }
            }
        }
        var developmentServices: [any Service] = []
        if let agent = development?.agent {
            developmentServices = [DemoApp.service(logger: logger) { port in agent.demoAppReady(port: port) }, agent]
        }
        var groupConfiguration = ServiceGroupConfiguration(services: services + [derpMap] + (mesh.map { [$0] } ?? []) + developmentServices, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = GatewayServer.shutdownGracePeriod
        let group = ServiceGroup(configuration: groupConfiguration)
        try await group.run()
        logger.notice("meshgate stopped")
    }

    /// The embedded region (when the relay runs) with the maps of --derp-config-url and --derp-config-path on top.
    private func loadDERPMap(certName: String, logger: Logger) async throws -> DERPMapSource {
        let embedded = settings.derpServerEnabled ? DERPMap.embedded(accessURL: settings.gateway.accessURL, stunPort: nil, certName: certName) : nil
        let source: DERPMapSource
        do {
            source = try await DERPMapSource.load(
                DERPMapSource.Configuration(embedded: embedded, path: settings.derpConfigPath, url: settings.derpConfigURL), logger: logger
            )
        } catch let error as DERPMapSourceError {
            throw StartupError("DERP map: \(error)")
        }
        let regions = source.current.regionIDs
        if regions.isEmpty {
            logger.warning("The DERP map is empty: nodes that cannot reach each other directly will not connect")
        } else {
            logger.info("DERP map loaded", metadata: ["derp.region_ids": "\(regions)"])
        }
        return source
    }

    private func bootstrapMetrics() -> PrometheusCollectorRegistry? {
        guard settings.gateway.prometheusAddress != nil else { return nil }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }
}

struct StartupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
