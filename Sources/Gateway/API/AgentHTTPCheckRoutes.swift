import Foundation
import Hummingbird
import NIOCore
import Tunnel

/// `GET /api/v2/workspaceagents/{id}/http-check?port=N&path=/p`: one GET to 127.0.0.1:N inside the workspace,
/// through the agent and the stream pool, reported as JSON. For whoever may see the workspace (its owner, the
/// deployment owner); to anyone else the agent does not exist.
struct AgentHTTPCheckRoutes {
    let workspaces: WorkspacesRoutes
    /// Nil when the gateway has no mesh node (its DERP relay is disabled).
    let streams: (any AgentStreamSource)?

    static let maxPathLength = 2048

    func addRoutes(to group: RouterGroup<SignedInContext>) {
        group.get("workspaceagents/:agent/http-check") { request, context -> HTTPCheckResponse in
            let agent = try await workspaces.visibleAgent(context)
            let (port, path) = try Self.target(of: request)
            guard let streams else {
                throw APIError(.badGateway, "This gateway cannot reach agents.", detail: "it has no mesh node: its DERP relay is disabled")
            }
            do {
                let result = try await AgentHTTPCheck.run(agent: agent.id, port: port, path: path, through: streams)
                return HTTPCheckResponse(port: Int(port), path: path, result: result)
            } catch {
                throw Self.apiError(for: error, agent: agent, port: port)
            }
        }
    }

    /// The port (1...65535) and path (visible ASCII, starting with "/", at most 2048 bytes) asked for.
    static func target(of request: Request) throws -> (UInt16, String) {
        let query = request.uri.queryParameters
        guard let port = query.get("port", as: Int.self), (1...65535).contains(port) else {
            throw APIError.badRequest("Invalid port.", detail: "port must be a number from 1 to 65535")
        }
        let path = query.get("path").map { String($0) } ?? "/"
        guard path.hasPrefix("/"), path.utf8.count <= maxPathLength, path.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw APIError.badRequest(
                "Invalid path.",
                detail: "path must start with \"/\", be at most \(maxPathLength) bytes and have no spaces, control or non-ASCII "
                    + "characters (percent-encode them)"
            )
        }
        return (UInt16(port), path)
    }

    /// Every failure is the gateway failing to get an answer from the workspace: 502, or 504 for the timeout.
    static func apiError(for error: any Error, agent: Agent, port: UInt16) -> APIError {
        switch error {
        case AgentHTTPCheckError.timedOut(let limit):
            return APIError(.gatewayTimeout, "No response from port \(port) of agent \(agent.name).", detail: "nothing complete within \(limit)")
        case GatewayMeshError.agentNotConnected:
            return APIError(.badGateway, "Agent \(agent.name) is not connected.", detail: "\(error)")
        case MeshStreamError.refused(_, let reason):
            return APIError(.badGateway, "Agent \(agent.name) refused port \(port).", detail: reason)
        default:
            return APIError(.badGateway, "No HTTP response from port \(port) of agent \(agent.name).", detail: "\(error)")
        }
    }
}

struct HTTPCheckResponse: ResponseEncodable {
    let port: Int
    let path: String
    let status: Int
    /// Repeated fields joined with ", ", as HTTP allows for all but Set-Cookie (which this is only a view of).
    let headers: [String: String]
    let body: String
    let bodyBytes: Int
    let reusedStream: Bool
    let elapsedMs: Double

    init(port: Int, path: String, result: AgentHTTPCheck.Result) {
        (self.port, self.path, status) = (port, path, result.status)
        headers = Dictionary(result.headers.map { ($0.name, $0.value) }, uniquingKeysWith: { "\($0), \($1)" })
        body = String(decoding: result.body.readableBytesView, as: UTF8.self)
        (bodyBytes, reusedStream) = (result.bodyBytes, result.reusedStream)
        elapsedMs = (result.elapsed.inSeconds * 1_000_000).rounded() / 1000
    }
}
