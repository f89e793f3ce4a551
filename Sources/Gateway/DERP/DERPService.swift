import Foundation
import Logging
import NIOCore
import Tunnel

/// The gateway's DERP relay: one `DERPServer`, reached over `Upgrade: DERP` or a WebSocket with subprotocol
/// `derp` at `/derp`, on every listener.
public final class DERPService: Sendable {
    public let server: DERPServer

    public init(server: DERPServer) { self.server = server }

    /// The 101 reply to `GET /derp` with `Upgrade: DERP` (Tailscale's headers).
    func upgradeResponse() -> String {
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"
            + "Derp-Version: \(DERPLimits.protocolVersion)\r\nDerp-Public-Key: \(server.publicKey.hex)\r\n\r\n"
    }

    /// Runs a raw-TCP (upgraded) DERP connection until it ends.
    func serve(_ connection: NIOAsyncChannel<DERPFrame, DERPFrame>, logger: Logger) async {
        let channel = connection.channel
        do {
            try await connection.executeThenClose { inbound, outbound in
                try await server.serve(frames: inbound, write: { try await outbound.write($0) }, close: { channel.close(promise: nil) })
            }
        } catch {
            // A client breaking the protocol loses its own connection only.
            logger.debug("DERP connection ended", metadata: ["error": "\(error)"])
        }
    }
}
