import Foundation
import Hummingbird
import NIOCore
import Tunnel

/// `GET /api/v2/derp-map`: the relays nodes may use, in Tailscale's JSON (Go field names, so not `APIJSON`'s
/// snake_case). The CLI reads it with a user session and agents with their token (`Meshgate-Agent-Token`).
struct DERPMapRoutes {
    let provider: any DERPMapProvider
    let authenticator: Authenticator

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    func addRoutes(to group: RouterGroup<GatewayContext>) {
        group.get("derp-map") { request, context -> Response in
            try await authorize(request, context: context)
            let body = try Self.encoder.encode(provider.current)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
    }

    /// A signed-in user or an agent; a credential that was presented but refused says why.
    private func authorize(_ request: Request, context: GatewayContext) async throws {
        if context.session != nil { return }
        if request.headers[SessionCredential.agentTokenHeaderName] != nil {
            guard try await authenticator.agent(in: request) != nil else { throw APIError(.unauthorized, "Invalid agent token.") }
            return
        }
        if let problem = context.sessionProblem { throw APIError(.unauthorized, problem) }
        throw APIError(
            .unauthorized, "You are not signed in.",
            detail: "Send a session token (Meshgate-Session-Token header or cookie) or an agent token (Meshgate-Agent-Token header)."
        )
    }
}
