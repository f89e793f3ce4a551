import Foundation
import Tunnel
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket

/// `GET /api/v2/coordinate`: the coordinator socket, JSON text messages as `CoordinatorWire` describes.
///
/// An agent token (`Meshgate-Agent-Token`) makes the socket that agent and nothing else, even with a user
/// session alongside: an agent token never acts as a user. Otherwise a user session makes it one of that user's
/// clients; `?client_id=<uuid>` names the client so its reconnection replaces it (a fresh id when absent).
struct CoordinatorRoutes {
    let coordinator: Coordinator
    let store: any Store
    let authenticator: Authenticator

    /// Reached only when the request was not a WebSocket upgrade, or the upgrade was refused: says why.
    func addHTTPRoutes(to group: RouterGroup<GatewayContext>) {
        group.get("coordinate") { request, context -> Response in
            switch try await resolveIdentity(request, session: context.session, sessionProblem: context.sessionProblem) {
            case .failure(let error): throw error
            case .success: throw APIError.badRequest("This endpoint needs a WebSocket upgrade.", detail: "connect with a WebSocket client")
            }
        }
    }

    func addWebSocketRoute(to router: Router<GatewayWebSocketContext>) {
        router.ws("/api/v2/coordinate") { request, context in
            guard case .success = try await resolveIdentity(request, session: context.session, sessionProblem: context.sessionProblem) else { return .dontUpgrade }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            // Resolved again: the handler cannot carry a value from the upgrade decision, and the agent may be gone.
            let requestContext = context.requestContext
            guard case .success(let identity) = try await resolveIdentity(context.request, session: requestContext.session, sessionProblem: nil) else {
                try await outbound.close(.policyViolation, reason: "credential no longer valid")
                return
            }
            try await serve(identity, inbound: inbound, outbound: outbound)
        }
    }

    /// Runs one socket: a writer drains the coordinator's queue for it, a reader feeds it what the node sends.
    private func serve(_ identity: NodeIdentity, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        let (connection, outgoing) = await coordinator.connect(identity)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await event in outgoing {
                    switch event {
                    case .message(let message): try await outbound.write(.text(CoordinatorWire.encode(message)))
                    case .close(let reason):
                        try await outbound.close(Self.closeCode(reason), reason: reason.description)
                        return
                    }
                }
                // The queue ended without a close: the coordinator released the socket because it fell behind.
                try await outbound.close(Self.closeCode(.fellBehind), reason: CoordinatorCloseReason.fellBehind.description)
            }
            group.addTask {
                // The library enforces the size while reassembling frames (and closes with 1009 beyond it).
                for try await message in inbound.messages(maxSize: CoordinatorWire.maxMessageBytes) {
                    switch message {
                    case .text(let text): await coordinator.receive(Array(text.utf8), from: connection)
                    case .binary: await coordinator.violation(.binaryMessage, on: connection)
                    }
                }
            }
            defer { group.cancelAll() }
            do {
                try await group.next()
            } catch {
                await coordinator.release(connection)
                throw error
            }
        }
        await coordinator.release(connection)
    }

    /// Who the request proves to be; a refusal says why, as a 401 would.
    private func resolveIdentity(_ request: Request, session: AuthenticatedSession?, sessionProblem: String?) async throws -> Result<NodeIdentity, APIError> {
        if let token = request.headers[SessionCredential.agentTokenHeaderName] {
            guard let agent = try await authenticator.agent(presenting: token), let workspace = try await store.workspace(id: agent.workspaceID) else {
                return .failure(APIError(.unauthorized, "Invalid agent token."))
            }
            return .success(.agent(agent.id, workspaceID: workspace.id, ownerID: workspace.ownerID))
        }
        guard let session else { return .failure(sessionProblem.map { APIError(.unauthorized, $0) } ?? APIError.notSignedIn) }
        let clientID = request.uri.queryParameters.get("client_id", as: UUID.self) ?? UUID()
        return .success(.client(userID: session.user.id, clientID: clientID))
    }

    private static func closeCode(_ reason: CoordinatorCloseReason) -> WebSocketErrorCode {
        switch reason {
        case .disconnected, .replaced: .normalClosure
        case .protocolViolation(.messageTooLarge): .messageTooLarge
        case .protocolViolation: .policyViolation
        case .fellBehind: .unknown(1013)  // RFC 6455 registry: Try Again Later
        }
    }
}
