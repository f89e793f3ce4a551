import AppProxy
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdHTTP2
import HummingbirdWSCompression
import HummingbirdWebSocket
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import UnixSignals
import Synchronization

/// Assembles the primary's listeners and background services. Holds no request logic of its own.
///
/// Listeners:
/// - TLS (`tlsAddress`): ALPN `h2` / `http/1.1` with WebSocket upgrades, see `ALPNChannel`.
/// - plain HTTP (`httpAddress`): everything when TLS is off; with TLS on, only `/healthz` and redirects.
/// - Prometheus (`prometheusAddress`): `/metrics` on its own port, so it can stay off the public network.
public struct GatewayServer: Sendable {
    public enum Listener: String, Sendable, CaseIterable { case http, tls, prometheus }
    /// How long in-flight requests and open WebSockets get to finish after SIGTERM before they are cut.
    public static let shutdownGracePeriod: Duration = .seconds(30)

    public let environment: GatewayEnvironment
    public let certificates: TLSCertificateStore?
    let metricsRegistry: PrometheusCollectorRegistry?
    let logger: Logger
    let requestLogLevel: Logger.Level

    /// - Parameters:
    ///   - metricsRegistry: the registry `MetricsSystem` was bootstrapped with; served on the Prometheus listener.
    ///   - certificates: the TLS certificates, when the caller loaded them already (to pin a self-signed one in
    ///     the DERP map); otherwise loaded here when a TLS listener is configured.
    public init(
        environment: GatewayEnvironment, metricsRegistry: PrometheusCollectorRegistry?, logger: Logger,
        requestLogLevel: Logger.Level = .info, certificates: TLSCertificateStore? = nil
    ) throws {
        self.environment = environment
        self.metricsRegistry = metricsRegistry
        self.logger = logger
        self.requestLogLevel = requestLogLevel
        let configuration = environment.configuration
        self.certificates = try certificates ?? configuration.tlsAddress.map { _ in try TLSCertificateStore(source: configuration.certificateSource, logger: logger) }
    }

    /// The services to run in one `ServiceGroup`. `onReady` is called once, with every listener's bound
    /// address, when all of them accept connections (ports given as 0 show the port the OS chose).
    public func services(onReady: @escaping @Sendable ([Listener: ListenAddress]) async -> Void) -> [any Service] {
        let configuration = environment.configuration
        // Decompressed messages may be as large as uncompressed ones (the library's default is 16 KiB, which breaks
        // any compressed DERP packet or terminal burst above it).
        let webSocket = WebSocketServerConfiguration(
            maxFrameSize: 1 << 20, extensions: [.perMessageDeflate(maxDecompressedFrameSize: 1 << 20)], autoPing: .enabled(timePeriod: .seconds(15))
        )
        let api = GatewayRouter.http(environment, requestLogLevel: requestLogLevel).buildResponder()
        let webSocketResponder = GatewayRouter.webSocket(environment).buildResponder()
        var expected: Set<Listener> = []
        var services: [any Service] = []
        let readiness = Readiness(onReady: onReady)

        func listen<R: HTTPResponder>(_ listener: Listener, _ address: ListenAddress, _ server: HTTPServerBuilder, _ responder: R)
        where R.Context: InitializableFromSource<ApplicationRequestContextSource> {
            expected.insert(listener)
            services.append(
                Application(
                    responder: responder,
                    server: server,
                    configuration: ApplicationConfiguration(address: .hostname(address.host, port: address.port), serverName: nil),
                    onServerRunning: { channel in
                        await readiness.bound(listener, ListenAddress(host: address.host, port: channel.localAddress?.port ?? address.port))
                    },
                    logger: logger
                )
            )
        }

        let derp = environment.derp
        let apps = environment.appUpgrades
        let fastPath = environment.appFastPath(observer: AppFastPathLog(logger: logger, level: requestLogLevel))
        // Each HTTP/1.1 connection gets its own fast path handler, after the HTTP codec; each HTTP/2 connection one on
        // its frames.
        let http1Configuration = { @Sendable (secure: Bool) in
            HTTP1Channel.Configuration(additionalChannelHandlers: fastPath.map { [$0.handler(secure: secure)] } ?? [])
        }
        let http1Builder = { @Sendable (responder: @escaping HTTPChannelHandler.Responder, secure: Bool) in
            DERPAwareHTTP1Channel(
                http1: HTTP1WebSocketUpgradeChannel(
                    responder: responder, webSocketResponder: webSocketResponder,
                    configuration: .init(http1: http1Configuration(secure), ws: webSocket)
                ),
                derp: derp, apps: apps, secure: secure
            )
        }
        if let tlsAddress = configuration.tlsAddress, let certificates {
            let builder = HTTPServerBuilder { responder in
                ALPNChannel(
                    certificates: certificates, http1: http1Builder(responder, true),
                    http2: AppHTTP2Channel(responder: responder, secure: true, connectionHandlers: { fastPath.map { [$0.http2Handler(secure: true)] } ?? [] })
                )
            }
            listen(.tls, tlsAddress, builder, api)
        }
        if let httpAddress = configuration.httpAddress {
            if configuration.tlsAddress != nil {
                listen(.http, httpAddress, .http1(), GatewayRouter.redirecting(to: configuration.accessURL).buildResponder())
            } else {
                listen(.http, httpAddress, HTTPServerBuilder { http1Builder($0, false) }, api)
            }
        }
        if let prometheusAddress = configuration.prometheusAddress, let metricsRegistry {
            listen(.prometheus, prometheusAddress, .http1(), MetricsEndpoint.router(registry: metricsRegistry).buildResponder())
        }
        readiness.expect(expected)

        if let certificates { services.append(CertificateReloadService(certificates: certificates, logger: logger)) }
        services.append(ExpiredKeySweepService(store: environment.store, clock: environment.clock, logger: logger))
        services.append(ShutdownNotice(logger: logger))
        services.append(CoordinatorExpiryService(coordinator: environment.coordinator))
        if let derp = environment.derp { services.append(DERPRelayService(derp: derp, logger: logger)) }
        return services
    }
}

/// Collects bound addresses and reports once all listeners are up.
private final class Readiness: Sendable {
    private struct State {
        var expected: Set<GatewayServer.Listener>?
        var bound: [GatewayServer.Listener: ListenAddress] = [:]
        var reported = false

        /// The full set of addresses the first time it is complete, else nil.
        mutating func completed() -> [GatewayServer.Listener: ListenAddress]? {
            guard !reported, let expected, Set(bound.keys) == expected else { return nil }
            reported = true
            return bound
        }
    }

    private let state = Mutex(State())
    private let onReady: @Sendable ([GatewayServer.Listener: ListenAddress]) async -> Void

    init(onReady: @escaping @Sendable ([GatewayServer.Listener: ListenAddress]) async -> Void) { self.onReady = onReady }

    /// Called once, before any listener runs.
    func expect(_ listeners: Set<GatewayServer.Listener>) {
        state.withLock { $0.expected = listeners }
    }

    func bound(_ listener: GatewayServer.Listener, _ address: ListenAddress) async {
        let complete = state.withLock { state in
            state.bound[listener] = address
            return state.completed()
        }
        if let complete { await onReady(complete) }
    }
}

/// Reloads the TLS certificate on SIGHUP. A bad new certificate is logged and the old one stays in use.
struct CertificateReloadService: Service {
    let certificates: TLSCertificateStore
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            switch certificates.reload() {
            case .success(let fingerprint):
                logger.notice("Reloaded TLS certificate", metadata: ["tls.fingerprint_sha256": "\(fingerprint)"])
            case .failure(let error):
                logger.error("TLS certificate reload failed; keeping the previous certificate", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Logs the moment graceful shutdown begins (SIGTERM/SIGINT): listeners stop accepting and in-flight
/// requests are drained, bounded by `GatewayServer.shutdownGracePeriod`.
struct ShutdownNotice: Service {
    let logger: Logger

    func run() async throws {
        try await gracefulShutdown()
        logger.notice("Shutting down", metadata: ["grace_period": "\(GatewayServer.shutdownGracePeriod)"])
    }
}

/// Deletes expired sessions and tokens at start-up and then hourly (expired keys are refused regardless).
struct ExpiredKeySweepService: Service {
    let store: any Store
    let clock: any WallClock
    let logger: Logger
    static let interval: Duration = .seconds(3600)

    func run() async throws {
        repeat {
            do {
                let removed = try await store.deleteAPIKeys(expiredBefore: clock.now)
                if removed > 0 { logger.info("Removed expired API keys", metadata: ["count": "\(removed)"]) }
            } catch {
                logger.warning("Sweeping expired API keys failed", metadata: ["error": "\(error)"])
            }
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.interval) }
            } catch {
                return  // cancelled or shutting down
            }
        } while true
    }
}
