import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import Tunnel

/// `GET /api/v2/workspaceagents/{id}/pty?reconnect=&width=&height=&command=`: the web terminal's socket.
///
/// Authorized like an owner-only app (the workspace's owner, or a site owner) with a full session, never an
/// app-scoped key, and only from the dashboard's own origin: a terminal is a shell, so a page elsewhere must not
/// be able to open one with the user's cookie. The gateway relays between the browser and a `pty` mesh stream
/// to the agent (`PTYWire`): JSON `{"data","width","height"}` from the browser, raw bytes back, and the
/// session's end as a normal close whose reason says why.
struct PTYRoutes {
    let store: any Store
    let dialer: (any AgentStreamDialer)?
    let accessURL: URL
    let logger: Logger

    /// A request that was not an upgrade, or whose upgrade was refused: says why.
    func addHTTPRoutes(to group: RouterGroup<GatewayContext>) {
        group.get("workspaceagents/:agent/pty") { request, context -> Response in
            _ = try await authorize(request, agentID: context.parameters.get("agent", as: UUID.self), session: context.session, sessionProblem: context.sessionProblem).get()
            throw APIError.badRequest("This endpoint needs a WebSocket upgrade.", detail: "connect with a WebSocket client")
        }
    }

    func addWebSocketRoute(to router: Router<GatewayWebSocketContext>) {
        router.ws("/api/v2/workspaceagents/:agent/pty") { request, context in
            let decision = try await authorize(
                request, agentID: context.parameters.get("agent", as: UUID.self), session: context.session, sessionProblem: context.sessionProblem
            )
            guard case .success = decision else { return .dontUpgrade }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            // Decided again: the handler cannot carry a value from the upgrade decision.
            let requestContext = context.requestContext
            guard case .success(let terminal) = try await authorize(
                context.request, agentID: requestContext.parameters.get("agent", as: UUID.self), session: requestContext.session, sessionProblem: nil
            ) else {
                try await outbound.close(.policyViolation, reason: "credential no longer valid")
                return
            }
            await relay(terminal, inbound: inbound, outbound: outbound)
        }
    }

    /// What a valid request asks for.
    struct Terminal: Sendable {
        let agentID: UUID
        let attach: PTYAttach
    }

    private func authorize(_ request: Request, agentID: UUID?, session: AuthenticatedSession?, sessionProblem: String?) async throws -> Result<Terminal, APIError> {
        guard let session else { return .failure(sessionProblem.map { APIError(.unauthorized, $0) } ?? APIError.notSignedIn) }
        if let origin = request.headers[.origin], !Self.isSameOrigin(origin, as: accessURL) {
            return .failure(.forbidden("The terminal can only be opened from \(Self.origin(of: accessURL))."))
        }
        guard let agentID, let agent = try await store.agent(id: agentID), let workspace = try await store.workspace(id: agent.workspaceID),
            WorkspacesRoutes.canSee(workspace, session.user)
        else { return .failure(.notFound("Agent not found.")) }
        guard dialer != nil else { return .failure(APIError(.serviceUnavailable, "This server has no mesh node to reach agents through.")) }
        let query = request.uri.queryParameters
        guard let reconnect = query.get("reconnect", as: UUID.self) else {
            return .failure(.badRequest("Query parameter reconnect must be a UUID.", detail: "the terminal session's id; reuse it to reattach"))
        }
        var size = (width: 80, height: 24)
        for (name, keyPath) in [("width", \(width: Int, height: Int).width), ("height", \.height)] {
            guard let text = query.get(name) else { continue }
            guard let value = Int(text) else { return .failure(.badRequest("Query parameter \(name) must be a number of cells.")) }
            size[keyPath: keyPath] = value
        }
        let attach = PTYAttach(id: reconnect, width: size.width, height: size.height, command: Self.formValue("command", in: request.uri.query) ?? "")
        if let problem = attach.problem { return .failure(.badRequest("Invalid terminal request.", detail: problem)) }
        return .success(Terminal(agentID: agent.id, attach: attach))
    }

    /// Runs one socket until the browser leaves, the session ends or the agent cannot be reached.
    private func relay(_ terminal: Terminal, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async {
        guard let dialer else { return }
        do {
            let stream = try await dialer.openStream(toAgent: terminal.agentID, service: .pty) { channel in
                channel.eventLoop.makeCompletedFuture { try PTYStream.opener(channel) }
            }
            try await stream.executeThenClose { fromAgent, toAgent in
                try await toAgent.write(.attach(terminal.attach))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await frame in fromAgent {
                            switch frame {
                            case .output(let bytes): try await outbound.write(.binary(bytes))
                            case .exit(let exit):
                                try await outbound.close(.normalClosure, reason: Self.closeReason(exit.reason))
                                return
                            }
                        }
                        try await outbound.close(.unexpectedServerError, reason: "the agent closed the terminal stream")
                    }
                    group.addTask {
                        for try await message in inbound.messages(maxSize: PTYWire.maxPayloadBytes) {
                            let bytes: ByteBuffer
                            switch message {
                            case .text(let text): bytes = ByteBuffer(string: text)
                            case .binary(let binary): bytes = binary
                            }
                            for frame in try PTYBrowserMessage.frames(from: bytes) { try await toAgent.write(frame) }
                        }
                    }
                    defer { group.cancelAll() }
                    try await group.next()
                }
            }
        } catch let error as PTYBrowserMessage.Invalid {
            try? await outbound.close(.dataInconsistentWithMessage, reason: Self.closeReason(error.description))
        } catch {
            logger.info("web terminal closed", metadata: ["agent.id": "\(terminal.agentID)", "error": "\(error)"])
            // 1011: the page retries with the same id, which rejoins the session once the agent is back.
            try? await outbound.close(.unexpectedServerError, reason: Self.closeReason("agent unreachable: \(error)"))
        }
    }

    /// A query value as a form encodes it: browsers' `URLSearchParams` sends a space as `+`, which plain URL
    /// decoding keeps, and a command is full of spaces.
    static func formValue(_ name: String, in query: String?) -> String? {
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.first?.replacingOccurrences(of: "+", with: " ").removingPercentEncoding == name else { continue }
            return parts.count > 1 ? parts[1].replacingOccurrences(of: "+", with: " ").removingPercentEncoding : ""
        }
        return nil
    }

    /// Close reasons are at most 123 bytes (RFC 6455 §5.5); cut on a character boundary.
    static func closeReason(_ text: String) -> String {
        var reason = ""
        for character in text where reason.utf8.count + character.utf8.count <= 123 { reason.append(character) }
        return reason
    }

    static func origin(of url: URL) -> String {
        let scheme = url.scheme ?? "https"
        let port = url.port.map { ":\($0)" } ?? ""
        return "\(scheme)://\(url.host ?? "")\(port)"
    }

    static func isSameOrigin(_ origin: String, as accessURL: URL) -> Bool {
        guard let url = URL(string: origin), let host = url.host, let scheme = url.scheme?.lowercased() else { return false }
        let defaultPort = scheme == "https" ? 443 : 80
        let accessScheme = accessURL.scheme?.lowercased() ?? "https"
        let accessDefault = accessScheme == "https" ? 443 : 80
        return scheme == accessScheme && host.lowercased() == accessURL.host?.lowercased()
            && (url.port ?? defaultPort) == (accessURL.port ?? accessDefault)
    }
}

/// A browser's message: JSON `{"data": "…", "width": N, "height": N}`, each field optional; a resize needs both.
enum PTYBrowserMessage {
    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    private struct Message: Decodable {
        var data: String?
        var width: Int?
        var height: Int?
    }

    static func frames(from bytes: ByteBuffer) throws -> [PTYClientFrame] {
        let message: Message
        do {
            message = try JSONDecoder().decode(Message.self, from: Data(bytes.readableBytesView))
        } catch {
            throw Invalid(description: "not a terminal message: \((error as? DecodingError)?.summary ?? "invalid JSON")")
        }
        var frames: [PTYClientFrame] = []
        if let data = message.data, !data.isEmpty { frames.append(.input(ByteBuffer(string: data))) }
        if let width = message.width, let height = message.height { frames.append(.resize(width: width, height: height)) }
        return frames
    }
}
