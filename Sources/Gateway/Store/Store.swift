import AppProxy
import Foundation
import Tunnel

/// Everything meshgate persists, behind one protocol so SQLite (embedded default) and PostgreSQL (HA) are
/// interchangeable. Callers never see SQL. Methods are async and never block an event loop.
public protocol Store: Sendable {
    // Users
    /// Creates `user` as the owner only if no user exists yet, atomically; otherwise throws `StoreError.conflict`.
    func insertFirstUser(_ user: User) async throws
    func insertUser(_ user: User) async throws
    func user(id: UUID) async throws -> User?
    func user(email: String) async throws -> User?
    func user(username: String) async throws -> User?
    func users() async throws -> [User]
    func userCount() async throws -> Int
    /// Deletes the user with their keys, workspaces and agents.
    func deleteUser(id: UUID) async throws

    // API keys (sessions and CLI tokens)
    func insertAPIKey(_ key: APIKey) async throws
    func apiKey(id: String) async throws -> APIKey?
    func deleteAPIKey(id: String) async throws
    /// Removes keys that expired before `date`; returns how many.
    @discardableResult func deleteAPIKeys(expiredBefore date: Date) async throws -> Int
    /// Removes every key of `userID` with `loginType`; returns how many.
    @discardableResult func deleteAPIKeys(userID: UUID, loginType: APIKey.LoginType) async throws -> Int

    // Workspaces
    func insertWorkspace(_ workspace: Workspace) async throws
    func workspace(id: UUID) async throws -> Workspace?
    /// All workspaces, or those of one owner.
    func workspaces(ownerID: UUID?) async throws -> [Workspace]
    /// Deletes the workspace with its agents.
    func deleteWorkspace(id: UUID) async throws

    // Agents
    func insertAgent(_ agent: Agent) async throws
    func agent(id: UUID) async throws -> Agent?
    func agent(tokenID: String) async throws -> Agent?
    func agents(workspaceID: UUID) async throws -> [Agent]
    func deleteAgent(id: UUID) async throws
    /// Keeps `report` as the agent's latest; false when it equals the one stored (nothing to announce).
    /// Throws `StoreError.notFound` when the agent is gone.
    func setAgentReport(_ report: AgentReport, agentID: UUID) async throws -> Bool
    /// A socket of the agent opened at `date`. Times only move forward (first connection: only back), so writes
    /// racing each other land the same in any order. An unknown agent is ignored: it was deleted meanwhile.
    func recordAgentConnected(id: UUID, at date: Date) async throws
    /// The agent's last socket ended at `date`; ordered like `recordAgentConnected`.
    func recordAgentDisconnected(id: UUID, at date: Date) async throws

    // App keys: the rotating secrets of signed app tokens and app-connect keys, by feature (`AppKeyFeature.name`)
    /// Every stored key of `feature`, expired or not, by sequence.
    func appKeys(feature: String) async throws -> [AppCryptoKey]
    /// Throws `StoreError.conflict` when `feature` has a key with that sequence already (another replica rotated first).
    func insertAppKey(_ key: AppCryptoKey, feature: String) async throws
    /// Removes keys of `feature` that expired before `date`, except the newest, so sequences never repeat; returns how many.
    @discardableResult func deleteAppKeys(feature: String, expiredBefore date: Date) async throws -> Int
}

public enum StoreError: Error, Equatable, CustomStringConvertible {
    /// A uniqueness rule was broken; the payload names it (e.g. "users.email").
    case conflict(String)
    /// The row to change does not exist.
    case notFound

    public var description: String {
        switch self {
        case .conflict(let what): "conflict on \(what)"
        case .notFound: "not found"
        }
    }
}
