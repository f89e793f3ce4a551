import AppProxy
import Foundation
import Tunnel

/// Resolves app URLs on the primary: names from the store, apps from each agent's latest report, liveness
/// from the coordinator. One "not found" for every missing piece, so URLs cannot probe which names exist.
struct StoreAppResolver: AppResolver {
    let store: any Store
    let coordinator: Coordinator

    func resolve(_ request: AppRequest) async throws -> Result<ResolvedApp, AppResolutionFailure> {
        guard let owner = try await store.user(username: request.user),
            let workspace = try await store.workspaces(ownerID: owner.id).first(where: { $0.name.lowercased() == request.workspace.lowercased() })
        else { return .failure(.notFound) }
        let agents = try await store.agents(workspaceID: workspace.id)
        let agent: Agent
        if let name = request.agent {
            guard let named = agents.first(where: { $0.name.lowercased() == name.lowercased() }) else { return .failure(.notFound) }
            agent = named
        } else {
            guard let only = agents.first else { return .failure(.notFound) }
            guard agents.count == 1 else { return .failure(.ambiguousAgent(agents.map(\.name).sorted())) }
            agent = only
        }
        let connected = await coordinator.liveness(ofAgent: agent.id).live
        func resolved(
            port: UInt16, https: Bool, pathPrefix: String, sharing: SharingLevel, name: String, health: AppHealth?, cors: AppCORSBehavior = .simple
        ) -> ResolvedApp {
            ResolvedApp(
                request: request, ownerID: owner.id, workspaceID: workspace.id, agentID: agent.id, agentName: agent.name, agentConnected: connected,
                port: port, https: https, pathPrefix: pathPrefix, sharingLevel: sharing, displayName: name, health: health, cors: cors
            )
        }
        switch request.target {
        case .port(let port, let https):
            // Port URLs have no declaration to share them: the owner's alone.
            return .success(resolved(port: port, https: https, pathPrefix: "", sharing: .owner, name: "port \(port)", health: nil))
        case .app(let slug):
            guard let app = agent.report?.apps.first(where: { $0.slug == slug }), let upstream = Self.upstream(app.url),
                // An app declared for subdomains is not served on a path, and the other way round.
                app.subdomain == (request.accessMethod == .subdomain)
            else { return .failure(.notFound) }
            return .success(resolved(
                port: upstream.port, https: upstream.https, pathPrefix: upstream.pathPrefix, sharing: app.sharingLevel, name: app.displayName,
                health: app.health, cors: app.cors ?? .simple
            ))
        }
    }

    /// `http://127.0.0.1:8080/ui/` → (8080, false, "/ui"). The agent reaches apps on its own loopback only.
    static func upstream(_ url: String) -> (port: UInt16, https: Bool, pathPrefix: String)? {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(), ["http", "https"].contains(scheme) else { return nil }
        let https = scheme == "https"
        guard let port = UInt16(exactly: components.port ?? (https ? 443 : 80)), port > 0 else { return nil }
        var prefix = components.percentEncodedPath
        while prefix.hasSuffix("/") { prefix.removeLast() }
        return (port, https, prefix)
    }
}

/// The app proxy's view of a session: the same check as the API's (app-connect keys included, which open apps
/// only), reduced to who the user is.
extension Authenticator: AppSessionAuthenticator {
    public func requester(presenting credential: String) async throws -> AppRequester? {
        guard case .valid(let session) = try await authenticate(credential, scope: .apps) else { return nil }
        return AppRequester(userID: session.user.id, username: session.user.username, isSiteOwner: session.user.role == .owner)
    }
}
