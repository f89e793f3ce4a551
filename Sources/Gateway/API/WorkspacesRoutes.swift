import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import Tunnel

/// Workspaces and their agents. A workspace is visible to its owner and to the deployment owner;
/// to anyone else it does not exist (404, not 403, so ids cannot be probed).
struct WorkspacesRoutes {
    let store: any Store
    let clock: any WallClock
    let pubsub: any PubSub
    let authenticator: Authenticator
    let agentViews: AgentViews

    func addSignedInRoutes(to group: RouterGroup<SignedInContext>) {
        group.get("workspaces") { _, context -> [WorkspaceResponse] in try await visibleWorkspaces(for: context.user) }
        group.post("workspaces", use: createWorkspace)
        group.get("workspaces/:workspace") { _, context in
            try await WorkspaceResponse.load(try await visibleWorkspace(context), store: store, agentViews: agentViews)
        }
        group.delete("workspaces/:workspace", use: deleteWorkspace)
        // Reached only when the request was not a WebSocket upgrade (the WebSocket router takes those).
        group.get("workspaces/:workspace/watch-ws") { _, context -> Response in
            _ = try await visibleWorkspace(context)
            throw APIError.badRequest("This endpoint needs a WebSocket upgrade.", detail: "connect with a WebSocket client")
        }
        group.post("workspaces/:workspace/agents", use: createAgent)
        group.get("workspaceagents/:agent") { _, context in
            await agentViews.response(for: try await visibleAgent(context))
        }
        group.delete("workspaceagents/:agent") { _, context -> Response in
            let agent = try await visibleAgent(context)
            try await store.deleteAgent(id: agent.id)
            pubsub.publish(PubSubTopic.workspace(agent.workspaceID))
            return Response(status: .noContent)
        }
    }

    /// Routes authenticated by an agent token rather than a user session.
    func addAgentRoutes(to group: RouterGroup<GatewayContext>) {
        group.get("workspaceagents/me") { request, _ -> AgentResponse in
            await agentViews.response(for: try await presentedAgent(request))
        }
        group.post("workspaceagents/me/report") { request, context -> Response in
            let agent = try await presentedAgent(request)
            var request = request
            // AgentReport spells its snake_case keys out, so the API decoder's key conversion must stay out.
            let report = try await request.decodeJSON(AgentReport.self, context: context, upTo: AgentReport.maxBodyBytes, decoder: JSONDecoder())
            try report.validate()
            if try await store.setAgentReport(report, agentID: agent.id) { pubsub.publish(PubSubTopic.workspace(agent.workspaceID)) }
            return Response(status: .noContent)
        }
    }

    /// The agent whose token the request presents (401 without one); a user session does not count.
    private func presentedAgent(_ request: Request) async throws -> Agent {
        guard let agent = try await authenticator.agent(in: request) else { throw APIError(.unauthorized, "Invalid agent token.") }
        return agent
    }

    /// `GET /api/v2/workspaces/{id}/watch-ws`: the workspace as JSON text messages, once on connect and again
    /// after each change; closed with 1000 "workspace deleted" when it goes away.
    func addWebSocketRoutes(to router: Router<GatewayWebSocketContext>) {
        router.ws("/api/v2/workspaces/:workspace/watch-ws") { _, context in
            guard let user = context.session?.user, let id = context.parameters.get("workspace", as: UUID.self),
                let workspace = try await store.workspace(id: id), Self.canSee(workspace, user)
            else { return .dontUpgrade }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            guard let id = context.requestContext.parameters.get("workspace", as: UUID.self) else { return }
            let changes = pubsub.subscribe(PubSubTopic.workspace(id))
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Drain the client's frames so its close ends the watch.
                group.addTask { for try await _ in inbound {} }
                group.addTask {
                    var changes = changes.makeAsyncIterator()
                    repeat {
                        guard let workspace = try await store.workspace(id: id) else {
                            try await outbound.close(.normalClosure, reason: "workspace deleted")
                            return
                        }
                        let view = try await WorkspaceResponse.load(workspace, store: store, agentViews: agentViews)
                        try await outbound.write(.text(String(decoding: try APIJSON.encoder.encode(view), as: UTF8.self)))
                    } while await changes.next() != nil
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    private func createWorkspace(_ request: Request, context: SignedInContext) async throws -> EditedResponse<WorkspaceResponse> {
        var request = request
        let body = try await request.decodeJSON(NameRequest.self, context: context)
        try NameRules.validate(body.name, field: "name")
        let workspace = Workspace(ownerID: context.user.id, name: body.name, createdAt: clock.now)
        do {
            try await store.insertWorkspace(workspace)
        } catch StoreError.conflict {
            throw APIError.conflict("You already have a workspace named \"\(body.name)\".")
        }
        return EditedResponse(status: .created, response: try await WorkspaceResponse.load(workspace, store: store, agentViews: agentViews))
    }

    private func deleteWorkspace(_ request: Request, context: SignedInContext) async throws -> Response {
        let workspace = try await visibleWorkspace(context)
        try await store.deleteWorkspace(id: workspace.id)
        pubsub.publish(PubSubTopic.workspace(workspace.id))
        context.logger.info("Deleted workspace", metadata: ["workspace.id": "\(workspace.id)"])
        return Response(status: .noContent)
    }

    private func createAgent(_ request: Request, context: SignedInContext) async throws -> EditedResponse<CreatedAgentResponse> {
        let workspace = try await visibleWorkspace(context)
        var request = request
        let body = try await request.decodeJSON(NameRequest.self, context: context)
        try NameRules.validate(body.name, field: "name")
        let token = SecretToken.generate()
        let agent = Agent(workspaceID: workspace.id, name: body.name, tokenID: token.id, hashedTokenSecret: token.hashedSecret, createdAt: clock.now)
        do {
            try await store.insertAgent(agent)
        } catch StoreError.conflict {
            throw APIError.conflict("This workspace already has an agent named \"\(body.name)\".")
        }
        pubsub.publish(PubSubTopic.workspace(workspace.id))
        return EditedResponse(status: .created, response: CreatedAgentResponse(id: agent.id, token: token.value))
    }

    private func visibleWorkspace(_ context: SignedInContext) async throws -> Workspace {
        guard let id = context.parameters.get("workspace", as: UUID.self), let workspace = try await store.workspace(id: id),
            Self.canSee(workspace, context.user)
        else { throw APIError.notFound("Workspace not found.") }
        return workspace
    }

    func visibleAgent(_ context: SignedInContext) async throws -> Agent {
        guard let id = context.parameters.get("agent", as: UUID.self), let found = try await visibleAgent(id: id, for: context.user)
        else { throw APIError.notFound("Agent not found.") }
        return found.agent
    }

    /// The agent and its workspace when `user` may see them; nil otherwise (as if it did not exist).
    func visibleAgent(id: UUID, for user: User) async throws -> (agent: Agent, workspace: Workspace)? {
        guard let agent = try await store.agent(id: id), let workspace = try await store.workspace(id: agent.workspaceID), Self.canSee(workspace, user)
        else { return nil }
        return (agent, workspace)
    }

    /// The user's own workspaces, or every workspace for the deployment owner, with their agents' state.
    func visibleWorkspaces(for user: User) async throws -> [WorkspaceResponse] {
        var result: [WorkspaceResponse] = []
        for workspace in try await store.workspaces(ownerID: user.role == .owner ? nil : user.id) {
            result.append(try await WorkspaceResponse.load(workspace, store: store, agentViews: agentViews))
        }
        return result
    }

    static func canSee(_ workspace: Workspace, _ user: User) -> Bool {
        user.role == .owner || workspace.ownerID == user.id
    }
}

extension AgentReport {
    /// 64 apps of a few hundred bytes each fit many times over; more is not a report.
    static let maxBodyBytes = 256 << 10

    func validate() throws {
        guard version.count <= Self.maxVersionLength else {
            throw APIError.badRequest("Invalid agent report.", detail: "version must be at most \(Self.maxVersionLength) characters")
        }
        guard apps.count <= Self.maxApps else {
            throw APIError.badRequest("Invalid agent report.", detail: "at most \(Self.maxApps) apps, got \(apps.count)")
        }
        var slugs = Set<String>()
        for app in apps where !slugs.insert(app.slug).inserted {
            throw APIError.badRequest("Invalid agent report.", detail: "app slug \"\(app.slug)\" appears more than once")
        }
    }
}
