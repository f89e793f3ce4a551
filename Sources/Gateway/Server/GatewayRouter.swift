import AppProxy
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import Tunnel

/// What the API needs at run time, assembled once by `GatewayServer` (and by tests).
public struct GatewayEnvironment: Sendable {
    public var configuration: GatewayConfiguration
    public var store: any Store
    public var clock: any WallClock
    public var hasher: PasswordHasher
    public var pubsub: any PubSub
    /// The built-in DERP relay; nil when disabled.
    public var derp: DERPService?
    /// The map served at `/api/v2/derp-map` (a `DERPMapSource` in a running server).
    public var derpMap: any DERPMapProvider
    /// The node exchange behind `/api/v2/coordinate`; by default with `TunnelPolicy` over `store`, recording
    /// agents' connections in `store` (`AgentPresenceRecorder`).
    public var coordinator: Coordinator
    /// The gateway's mesh paths to agents, shown in the API; the running server sets its `GatewayMesh` here.
    public var agentPaths: any AgentPathProvider
    /// Streams to agents' ports with HTTP keep-alive (an `AgentStreamPool` over the gateway's mesh node); nil
    /// without a mesh node.
    public var agentStreams: (any AgentStreamSource)? = nil
    /// Opens raw streams to agents (WebSocket upgrades, HTTPS apps): the gateway's mesh node; nil without one.
    public var agentDialer: (any AgentStreamDialer)? = nil
    /// Rotating keys of signed app tokens and of the cross-domain app login, cached; created in the store at first use.
    public var appTokenKeys: AppKeyStore<AppTokenSigning>
    /// Tokens the app gate verified: shared by every gate built here and by the app proxy's fast path.
    let verifiedAppTokens = VerifiedAppTokens()
    public var appConnectKeys: AppKeyStore<AppConnectEncryption>

    public init(
        configuration: GatewayConfiguration, store: any Store, clock: any WallClock, hasher: PasswordHasher, pubsub: any PubSub,
        derp: DERPService? = nil, derpMap: any DERPMapProvider = DERPMap(), coordinator: Coordinator? = nil,
        agentPaths: any AgentPathProvider = NoAgentPaths()
    ) {
        (self.configuration, self.store, self.clock, self.hasher, self.pubsub, self.derp) = (configuration, store, clock, hasher, pubsub, derp)
        (self.derpMap, self.agentPaths) = (derpMap, agentPaths)
        self.coordinator = coordinator
            ?? Coordinator(authorizer: TunnelPolicy(store: store), clock: clock, presence: AgentPresenceRecorder(store: store, pubsub: pubsub))
        appTokenKeys = AppKeyStore(store: store, clock: clock)
        appConnectKeys = AppKeyStore(store: store, clock: clock)
    }

    var authenticator: Authenticator { Authenticator(store: store, clock: clock) }

    /// Resolve → authorize for apps; shared by plain requests and WebSocket upgrades.
    var appGate: AppGate {
        let gate = AppGate.Configuration(
            accessURL: configuration.accessURL, hostname: configuration.appHostname, pathAppsDisabled: configuration.disablePathApps,
            pathAppSharing: configuration.allowPathAppSharing
        )
        let clock = self.clock
        return AppGate(
            configuration: gate, resolver: StoreAppResolver(store: store, coordinator: coordinator), sessions: authenticator, tokens: appTokenKeys,
            now: { clock.now }, verifiedTokens: verifiedAppTokens
        )
    }

    /// App WebSocket upgrades, when there is a mesh to reach agents through.
    var appUpgrades: AppUpgrades? { agentDialer.map { AppUpgrades(gate: appGate, dialer: $0) } }

    /// The app proxy, when there is a mesh to reach agents through.
    var appProxy: AppProxyMiddleware<GatewayContext>? {
        guard let streams = agentStreams, let dialer = agentDialer else { return nil }
        return AppProxyMiddleware(
            gate: appGate, forwarder: AppForwarder(streams: streams, dialer: dialer), connectKeys: appConnectKeys,
            clientAddress: { $0.remoteAddress ?? "" }
        )
    }
    /// The app proxy's fast path (below Hummingbird), when the streams to agents can hand out idle ones.
    func appFastPath(observer: any AppFastPathObserver) -> AppFastPath? {
        guard appProxy != nil, let streams = agentStreams as? any IdleAgentStreamSource else { return nil }
        return AppFastPath(gate: appGate, streams: streams, observer: observer)
    }

    var ptyRoutes: PTYRoutes {
        PTYRoutes(store: store, dialer: agentDialer, accessURL: configuration.accessURL, logger: Logger(label: "meshgate.terminal"))
    }
    var coordinatorRoutes: CoordinatorRoutes { CoordinatorRoutes(coordinator: coordinator, store: store, authenticator: authenticator) }
    var workspacesRoutes: WorkspacesRoutes {
        let agentViews = AgentViews(store: store, coordinator: coordinator, paths: agentPaths, clock: clock, connectionTimeout: configuration.agentConnectionTimeout)
        return WorkspacesRoutes(store: store, clock: clock, pubsub: pubsub, authenticator: authenticator, agentViews: agentViews)
    }
}

/// Builds the routers: one for HTTP requests and one that decides WebSocket upgrades.
public enum GatewayRouter {
    public static func http(_ environment: GatewayEnvironment, requestLogLevel: Logger.Level = .info) -> Router<GatewayContext> {
        let router = Router(context: GatewayContext.self)
        router.add(middleware: RequestLogMiddleware(level: requestLogLevel))
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: APIErrorMiddleware())
        // Apps first: a subdomain app's host or a /@user/… path is never the API's.
        if let apps = environment.appProxy { router.add(middleware: apps) }
        router.get("healthz") { _, _ in "OK" }
        if let derp = environment.derp { DERPRoutes(service: derp).addHTTPRoutes(to: router) }
        let configuration = environment.configuration
        let sessions = SessionPolicy(sessionLifetime: configuration.sessionLifetime, secureCookies: configuration.accessURL.scheme == "https")
        // One Accounts for the API and the dashboard's forms: one login rate limit.
        let accounts = Accounts(
            store: environment.store, hasher: environment.hasher, clock: environment.clock,
            limiter: LoginRateLimiter(limit: configuration.loginRateLimit, clock: environment.clock), sessions: sessions
        )
        let workspaces = environment.workspacesRoutes
        Dashboard(
            accounts: accounts, workspaces: workspaces, configuration: configuration, derpMap: environment.derpMap,
            xterm: XtermAssets(directory: configuration.xtermPath, logger: Logger(label: "meshgate.xterm"))
        ).addRoutes(to: router, authenticator: environment.authenticator)

        let api = router.group("api/v2")
        api.add(middleware: SessionMiddleware(authenticator: environment.authenticator))
        api.get("buildinfo") { _, _ in
            BuildInfoResponse(version: BuildInfo.version, accessURL: environment.configuration.accessURL.absoluteString)
        }
        let users = UsersRoutes(accounts: accounts)
        users.addPublicRoutes(to: api)
        workspaces.addAgentRoutes(to: api)
        DERPMapRoutes(provider: environment.derpMap, authenticator: environment.authenticator).addRoutes(to: api)
        environment.coordinatorRoutes.addHTTPRoutes(to: api)
        environment.ptyRoutes.addHTTPRoutes(to: api)
        ApplicationsRoutes(
            store: environment.store, clock: environment.clock, configuration: configuration, sessions: sessions, connectKeys: environment.appConnectKeys
        ).addRoutes(to: api)
        let signedIn = api.group(context: SignedInContext.self)
        users.addSignedInRoutes(to: signedIn)
        workspaces.addSignedInRoutes(to: signedIn)
        AgentHTTPCheckRoutes(workspaces: workspaces, streams: environment.agentStreams).addRoutes(to: signedIn)
        return router
    }

    public static func webSocket(_ environment: GatewayEnvironment) -> Router<GatewayWebSocketContext> {
        let router = Router(context: GatewayWebSocketContext.self)
        router.add(middleware: SessionMiddleware(authenticator: environment.authenticator))
        environment.workspacesRoutes.addWebSocketRoutes(to: router)
        if let derp = environment.derp { DERPRoutes(service: derp).addWebSocketRoute(to: router) }
        environment.coordinatorRoutes.addWebSocketRoute(to: router)
        environment.ptyRoutes.addWebSocketRoute(to: router)
        return router
    }

    /// The plain-HTTP listener of a TLS deployment: health checks, and redirects to the access URL.
    static func redirecting(to accessURL: URL) -> Router<GatewayContext> {
        let router = Router(context: GatewayContext.self)
        router.add(middleware: AccessURLRedirectMiddleware(accessURL: accessURL))
        router.get("healthz") { _, _ in "OK" }
        return router
    }
}
