import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import Tunnel

/// HTTP and WebSocket routes of the DERP relay.
struct DERPRoutes {
    let service: DERPService

    /// `/derp/latency-check` and `/derp/probe` answer 200 for latency measurement and health probes;
    /// a plain `GET /derp` explains what it needs.
    func addHTTPRoutes(to router: Router<GatewayContext>) {
        router.get("derp/latency-check") { _, _ in Response(status: .ok) }
        router.get("derp/probe") { _, _ in Response(status: .ok) }
        router.get("derp") { _, _ -> Response in
            throw APIError(.upgradeRequired, "DERP requires a connection upgrade.", detail: "send Upgrade: DERP, or a WebSocket with subprotocol derp")
        }
    }

    /// `GET /derp` as a WebSocket with subprotocol `derp`: a byte stream of DERP frames in binary messages.
    func addWebSocketRoute(to router: Router<GatewayWebSocketContext>) {
        router.ws("/derp") { request, _ in
            let offered = request.headers[values: .secWebSocketProtocol].flatMap { $0.split(separator: ",") }
            guard offered.contains(where: { $0.trimmingCharacters(in: .whitespaces) == "derp" }), service.server.admitConnection() else {
                return .dontUpgrade
            }
            return .upgrade([.secWebSocketProtocol: "derp"])
        } onUpgrade: { inbound, outbound, context in
            let bytes = inbound.messages(maxSize: DERPLimits.maxFrameLength).compactMap { message -> ByteBuffer? in
                if case .binary(let buffer) = message { return buffer }
                return nil
            }
            let frames = DERPFrameSequence(bytes: bytes, maximumFrameLength: DERPLimits.maxClientInfoLength)
            do {
                try await service.server.serve(
                    frames: frames,
                    write: { frames in
                        // One message per batch: the stream's bytes, not its frames, are what the receiver reads.
                        var buffer = ByteBuffer()
                        for frame in frames { try DERPFrameEncoder().encode(data: frame, out: &buffer) }
                        try await outbound.write(.binary(buffer))
                    },
                    close: { Task { try? await outbound.close(.normalClosure, reason: nil) } }
                )
            } catch {
                context.logger.debug("DERP WebSocket ended", metadata: ["error": "\(error)"])
            }
        }
    }
}
