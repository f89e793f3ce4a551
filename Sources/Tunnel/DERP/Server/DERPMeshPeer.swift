import Foundation
import Logging
import NIOCore
import NIOPosix

/// This relay's link to one sibling in its region (replicas, or the regions of workspace proxies): a mesh
/// client that logs in with the shared mesh key, watches the sibling's connections and forwards packets for
/// the sibling's clients one hop with ForwardPacket. Each relay dials every other, so presence is symmetric.
public final class DERPMeshPeer: DERPForwarder {
    public let url: URL
    private let server: DERPServer
    private let client: DERPClient
    private let logger: Logger

    public init(
        server: DERPServer, url: URL, meshKey: String, trust: DERPTrust = .systemRoots, transport: DERPTransport = .automatic,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
    ) {
        self.server = server
        self.url = url
        self.logger = logger
        // The relay's own key: siblings know it as a mesh peer, not as a node.
        self.client = DERPClient(
            configuration: .init(url: url, privateKey: server.privateKey, meshKey: meshKey, trust: trust, transport: transport),
            group: group, logger: logger
        )
    }

    public func forward(source: NodePublicKey, destination: NodePublicKey, packet: ByteBuffer) {
        if !client.send(frame: .forwardPacket(source: source, destination: destination, packet: packet)) {
            server.counters.drop(.meshUnavailable)
        }
    }

    /// Watches the sibling until cancelled, reconnecting as needed.
    public func run() async {
        await client.run { [self] event in
            switch event {
            case .connected(let key, _) where key == server.publicKey:
                // Our own URL is in the peer list (one list shared by every replica): nothing to watch.
                logger.warning("DERP mesh peer is this relay itself; ignoring it", metadata: ["derp.peer_url": "\(url)"])
            case .connected(let key, _):
                logger.info("DERP mesh peer connected", metadata: ["derp.peer_url": "\(url)", "derp.server_key": "\(key.shortForm)"])
                client.send(frame: .watchConns)
            case .peerPresent(let key):
                server.addRemote(key, via: self)
            case .peerGone(let key, _):
                server.removeRemote(key, via: self)
            case .disconnected(let reason):
                // Whatever the sibling had is unknown now; packets for those keys get PeerGone until it returns.
                server.removeRemotes(via: self)
                logger.debug("DERP mesh peer disconnected", metadata: ["derp.peer_url": "\(url)", "error": "\(reason)"])
            case .packet, .health:
                break
            }
        }
        server.removeRemotes(via: self)
    }
}
