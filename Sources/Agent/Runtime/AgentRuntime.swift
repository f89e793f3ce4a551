import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import Tunnel

/// What `meshgate agent` needs to join the mesh.
public struct AgentConfiguration: Sendable {
    /// The primary's access URL.
    public var url: URL
    /// The agent token (`Meshgate-Agent-Token`).
    public var token: String
    /// How the primary's certificate is trusted (a pin for a self-signed server).
    public var trust: DERPTrust
    public var apps: [AgentApp]
    /// Local ports mesh streams may reach on 127.0.0.1; all when nil.
    public var allowedPorts: Set<UInt16>?
    /// The agent software's version, reported to the server.
    public var version: String
    /// Direct UDP paths to peers (`--block-direct-connections` keeps everything on DERP).
    public var direct: DirectPathConfiguration

    public init(
        url: URL, token: String, trust: DERPTrust = .systemRoots, apps: [AgentApp] = [], allowedPorts: Set<UInt16>? = nil, version: String,
        direct: DirectPathConfiguration = .init()
    ) {
        (self.url, self.token, self.trust, self.apps, self.allowedPorts, self.version) = (url, token, trust, apps, allowedPorts, version)
        self.direct = direct
    }
}

/// A workspace agent: it dials out only. It learns who it is and the relays from the API, homes on one DERP
/// region, keeps a coordinator session, serves mesh streams (`tcp:PORT` to 127.0.0.1, `pty` terminal sessions) and reports its apps and
/// their health. Everything reconnects with backoff for as long as it runs; `stop()` leaves cleanly (peers hear
/// "gone" at once).
public final class AgentRuntime: Sendable {
    public let configuration: AgentConfiguration
    private let logger: Logger
    private let control: ControlClient
    private let stopSignal = AsyncStream<Void>.makeStream()
    /// The peers the coordinator gave this agent (the gateway, proxies, clients with a tunnel to it).
    private let peers = Mutex<Set<NodePublicKey>>([])
    private let coordinator: CoordinatorClient
    private let reportRequests: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)
    private let terminals: PTYService

    public init(configuration: AgentConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        control = ControlClient(baseURL: configuration.url, trust: configuration.trust, headers: [AgentIdentity.tokenHeader: configuration.token])
        coordinator = CoordinatorClient(control: control, logger: logger)
        reportRequests = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        terminals = PTYService(logger: logger)
    }

    /// Runs until `stop()` or cancellation. Throws only when the server refuses the agent token at start: a
    /// typo is better reported than retried forever. Later refusals (a deleted agent) are logged and retried.
    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.join() }
            group.addTask { for await _ in self.stopSignal.stream {} }
            try await group.next()
            await coordinator.disconnect()  // peers hear "gone" now, not "lost"
            await terminals.closeAll()
            group.cancelAll()
        }
        logger.notice("agent stopped")
    }

    /// Leaves the mesh: the coordinator hears `disconnect`, then `run` returns.
    public func stop() {
        stopSignal.continuation.finish()
    }

    /// Learns who this agent is and the relays, then serves until cancelled.
    private func join() async throws {
        let identity = try await untilAnswered("GET \(AgentIdentity.path)") {
            try await self.control.get(AgentIdentity.self, AgentIdentity.path)
        }
        let derpMap = try await untilAnswered("GET /api/v2/derp-map") {
            try await self.control.get(DERPMap.self, "/api/v2/derp-map")
        }
        guard let home = Self.homeRegion(in: derpMap) else {
            throw AgentRuntimeError.noRelay("the server's DERP map has no relay this agent can use")
        }
        let node = try await MeshNode.start(privateKey: .generate(), address: .agent(identity.id), direct: configuration.direct)
        logger.notice("agent joining the mesh", metadata: [
            "agent.id": "\(identity.id)", "mesh.node_key": "\(node.privateKey.publicKey.shortForm)", "mesh.address": "\(node.address)",
            "derp.region": "\(home.region)", "derp.url": "\(home.url)",
        ])
        let allowed = configuration.allowedPorts
        let forward = MeshTCPForward(allows: { port in allowed?.contains(port) ?? true })
        let terminals = self.terminals
        try await node.listen { request in
            forward.decision(for: request) ?? terminals.decision(for: request) ?? .refuse(reason: "this agent does not offer \(request.service)")
        }
        let derp = DERPClient(configuration: .init(url: home.url, privateKey: node.privateKey, trust: home.trust, isHome: true), logger: logger)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await node.runDERP(derp, region: home.region) { event in
                    switch event {
                    case .connected(_, let transport):
                        self.logger.info("relay connected", metadata: ["derp.region": "\(home.region)", "derp.transport": "\(transport.rawValue)"])
                        // Handshakes peers sent while this agent was off the relay were lost; WireGuard would retry
                        // only after 5 s. Starting them from here makes a relay reconnect cost one round trip.
                        let peers = self.peers.withLock { $0 }
                        Task { for peer in peers { try? await node.forceHandshake(with: peer) } }
                    case .disconnected(let reason): self.logger.warning("relay disconnected; reconnecting", metadata: ["derp.region": "\(home.region)", "reason": "\(reason)"])
                    case .health(let problem): self.logger.warning("relay reports a problem", metadata: ["derp.region": "\(home.region)", "problem": "\(problem)"])
                    default: break
                    }
                }
            }
            group.addTask { await self.coordinator.run { event in await self.handle(event, node: node) } }
            group.addTask { await self.reportApps() }
            // The coordinator client re-sends the latest description after each reconnect.
            group.addTask {
                await node.announce(homeRegion: home.region, version: self.configuration.version) { self.coordinator.update($0) }
            }
            await group.waitForAll()  // until cancelled
        }
        try? await node.close()
    }

    private func handle(_ event: CoordinatorClient.Event, node: MeshNode) async {
        switch event {
        case .connected:
            logger.info("coordinator connected")
            reportRequests.continuation.yield()  // a restarted server may have lost nothing, but it costs one request
        case .disconnected(let reason):
            logger.warning("coordinator disconnected; reconnecting", metadata: ["reason": "\(reason)"])
        case .refused(let message):
            logger.warning("coordinator refused a request", metadata: ["reason": "\(message)"])
        case .updates(let updates):
            for update in updates {
                switch update {
                case .node(let peer):
                    guard let address = peer.addresses.first?.address else { continue }
                    try? await node.ensurePeer(
                        MeshPeer(key: peer.key, address: address, homeRegion: peer.homeRegion == 0 ? nil : peer.homeRegion, endpoints: peer.endpoints)
                    )
                    // A new peer (the gateway opening its first stream here) already sent its handshake, which was
                    // dropped while this agent did not know it yet; WireGuard would retry only after 5 s.
                    if peers.withLock({ $0.insert(peer.key).inserted }) { try? await node.forceHandshake(with: peer.key) }
                    logger.debug("peer updated", metadata: ["mesh.peer": "\(peer.key.shortForm)", "mesh.address": "\(address)"])
                case .lost:
                    break  // keep its session: it is expected back
                case .gone(let key):
                    try? await node.removePeer(key)
                    peers.withLock { _ = $0.remove(key) }
                    logger.debug("peer gone", metadata: ["mesh.peer": "\(key.shortForm)"])
                }
            }
        }
    }

    /// Sends the apps and their health on start, after each coordinator reconnect and after every health
    /// change; a failed send is retried with backoff unless a newer report supersedes it.
    private func reportApps() async {
        // The probe's HTTP client must be shut down, so it lives exactly as long as this task.
        try? await HTTPHealthProbe.withProbe { probe in
            let monitor = AppHealthMonitor(apps: configuration.apps, probe: probe, clock: ContinuousClock(), logger: logger)
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await monitor.run { _ in self.reportRequests.continuation.yield() }  // the monitor logs the change
                }
                group.addTask { await self.sendReports(monitor) }
                await group.waitForAll()  // until cancelled
            }
        }
    }

    private func sendReports(_ monitor: AppHealthMonitor<ContinuousClock>) async {
        var backoff = Duration.milliseconds(500)
        for await _ in reportRequests.stream {
            let report = AgentReport(version: configuration.version, apps: monitor.reports)
            do {
                try await control.post(AgentIdentity.reportPath, json: report)
                backoff = .milliseconds(500)
            } catch {
                logger.warning("app report failed; retrying", metadata: ["error": "\(error)"])
                do { try await Task.sleep(for: backoff.jittered()) } catch { return }
                backoff = min(backoff * 2, .seconds(30))
                reportRequests.continuation.yield()
            }
        }
    }

    /// Calls `body` until it answers, backing off between failures; a refusal (401, 403, 404) is final.
    private func untilAnswered<T: Sendable>(_ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        var backoff = Duration.milliseconds(250)
        while true {
            do {
                return try await body()
            } catch let error as ControlError where error.isPermanent {
                throw AgentRuntimeError.refused("\(what): \(error)")
            } catch {
                logger.warning("server not reachable yet; retrying", metadata: ["request": "\(what)", "error": "\(error)"])
            }
            try await Task.sleep(for: backoff.jittered())  // throws when cancelled
            backoff = min(backoff * 2, .seconds(10))
        }
    }

    /// The region to home on: the lowest-numbered region with a relay node (a latency-based choice needs
    /// netcheck, which comes with direct paths).
    static func homeRegion(in map: DERPMap) -> (region: Int, url: URL, trust: DERPTrust)? {
        for region in map.regionIDs {
            guard let relay = map.regions[region]?.nodes.first(where: { !$0.stunOnly }), let url = relay.url else { continue }
            return (region, url, DERPTrust(certName: relay.certName))
        }
        return nil
    }
}

/// `GET /api/v2/workspaceagents/me`: the agent the token belongs to.
struct AgentIdentity: Decodable, Sendable {
    static let path = "/api/v2/workspaceagents/me"
    static let reportPath = "/api/v2/workspaceagents/me/report"
    static let tokenHeader = MeshgateCredentials.agentTokenHeader
    let id: UUID
}

public enum AgentRuntimeError: Error, CustomStringConvertible {
    case refused(String)
    case noRelay(String)

    public var description: String {
        switch self {
        case .refused(let why): "the server refused this agent (\(why)); check --token"
        case .noRelay(let why): why
        }
    }
}
