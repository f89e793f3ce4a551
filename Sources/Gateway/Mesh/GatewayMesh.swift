import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import Tunnel

/// The gateway as a mesh node: a `MeshNode` whose path to agents is its own DERP relay, in-process (no TLS, no
/// TCP), so it reaches any agent that is logged in to the relay, behind any NAT. It is the `MeshDialer` the app
/// proxy and the terminal use. Runs as a service: the relay link lives until graceful shutdown.
public final class GatewayMesh: Service, MeshDialer {
    public let node: MeshNode
    private let relay: DERPServer?
    private let region: Int
    private let logger: Logger
    private let coordinator: Coordinator?
    /// What the coordinator told this node (see GatewayMesh+Coordinator).
    let session = Mutex(GatewayMeshSession())
    /// The latest echo to each known agent (see GatewayMesh+AgentPaths).
    let echoes = Mutex<[MeshAddress: AgentEcho]>([:])

    private init(node: MeshNode, relay: DERPServer?, region: Int, coordinator: Coordinator?, logger: Logger) {
        (self.node, self.relay, self.region, self.coordinator, self.logger) = (node, relay, region, coordinator, logger)
    }

    /// Starts the node (UDP on an ephemeral port, for direct paths to agents) with the gateway's key and address,
    /// on an event loop of `group` (see `dedicatedLoop`). With a coordinator, `run` also keeps this node's session in
    /// it (see GatewayMesh+Coordinator).
    public static func start(
        privateKey: NodePrivateKey, address: MeshAddress, relay: DERPServer?, region: Int, coordinator: Coordinator? = nil,
        direct: DirectPathConfiguration = .init(), host: String = "0.0.0.0", group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) async throws -> GatewayMesh {
        let node = try await MeshNode.start(privateKey: privateKey, address: address, host: host, direct: direct, group: group)
        return GatewayMesh(node: node, relay: relay, region: region, coordinator: coordinator, logger: logger)
    }

    /// A thread of its own for the node, on a machine with more than one core (nil on one core, where it shares the
    /// server's). Every packet to and from every agent, and the HTTP/1.1 of every app request on its streams, runs
    /// on the node's loop: sharing that loop with a share of the browsers' connections made it the busiest thread
    /// and left the others waiting for it (the app benchmark ran up to 20 % faster, and steadier, with it apart).
    /// Shut it down after the node.
    public static func dedicatedLoop() -> MultiThreadedEventLoopGroup? {
        System.coreCount > 1 ? MultiThreadedEventLoopGroup(numberOfThreads: 1) : nil
    }

    /// This node as peers must know it.
    public var peer: MeshPeer { MeshPeer(key: node.privateKey.publicKey, address: node.address, homeRegion: relay == nil ? nil : region) }

    public func run() async throws {
        logger.info("gateway mesh node up", metadata: ["mesh.node_key": "\(node.privateKey.publicKey.shortForm)", "mesh.address": "\(node.address)"])
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if let relay = self.relay {
                    let link = DERPInProcessClient(server: relay, privateKey: self.node.privateKey)
                    group.addTask { await self.node.runDERP(link, region: self.region) }
                }
                if let coordinator = self.coordinator {
                    group.addTask { await self.coordinate(with: coordinator) }
                    group.addTask { await self.echoAgents() }
                }
                group.addTask { try? await Task.sleep(for: .seconds(Int64.max / 2)) }  // until shutdown cancels the group
            }
        }
        try await node.close()
    }

    public func openStream<Output: Sendable>(
        to peer: MeshPeer, service: MeshService, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws -> Output {
        try await node.openStream(to: peer, service: service, initializer: initializer)
    }
}
