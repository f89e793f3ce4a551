import Foundation
import Gateway
import Testing
import Tunnel

@Suite struct SQLiteStoreTests {
    func makeStore() throws -> SQLiteStore {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("meshgate-store-\(UUID().uuidString).db").path
        return try SQLiteStore(path: path)
    }

    /// Migrations are versioned and applied once; reopening the file applies nothing new and keeps data.
    @Test func migrationsAreVersionedAndIdempotent() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("meshgate-store-\(UUID().uuidString).db").path
        let store = try SQLiteStore(path: path)
        #expect(try await store.appliedMigrations() == ["0001_accounts", "0002_agent_state", "0003_app_crypto_keys"])
        try await store.insertFirstUser(User(email: "a@example.com", username: "a", role: .owner, passwordHash: "x", createdAt: Date()))
        let reopened = try SQLiteStore(path: path)
        #expect(try await reopened.appliedMigrations() == ["0001_accounts", "0002_agent_state", "0003_app_crypto_keys"])
        #expect(try await reopened.userCount() == 1)
    }

    /// Only one first user, ever; emails and usernames are unique regardless of case.
    @Test func uniquenessRules() async throws {
        let store = try makeStore()
        let first = User(email: "a@example.com", username: "a", role: .owner, passwordHash: "x", createdAt: Date())
        try await store.insertFirstUser(first)
        await #expect(throws: StoreError.self) {
            try await store.insertFirstUser(User(email: "b@example.com", username: "b", role: .owner, passwordHash: "x", createdAt: Date()))
        }
        await #expect(throws: StoreError.conflict("users.email")) {
            try await store.insertUser(User(email: "A@EXAMPLE.com", username: "c", role: .member, passwordHash: "x", createdAt: Date()))
        }
        await #expect(throws: StoreError.conflict("users.username")) {
            try await store.insertUser(User(email: "c@example.com", username: "A", role: .member, passwordHash: "x", createdAt: Date()))
        }
        #expect(try await store.user(email: "A@example.COM")?.id == first.id)
    }

    /// Deleting a user removes their keys, workspaces and agents (foreign keys cascade).
    @Test func deletesCascade() async throws {
        let store = try makeStore()
        let user = User(email: "a@example.com", username: "a", role: .owner, passwordHash: "x", createdAt: Date())
        try await store.insertFirstUser(user)
        let token = SecretToken.generate()
        try await store.insertAPIKey(APIKey(id: token.id, hashedSecret: token.hashedSecret, userID: user.id, loginType: .password, name: nil, createdAt: Date(), expiresAt: Date() + 60))
        let workspace = Workspace(ownerID: user.id, name: "w", createdAt: Date())
        try await store.insertWorkspace(workspace)
        let agentToken = SecretToken.generate()
        let agent = Agent(workspaceID: workspace.id, name: "main", tokenID: agentToken.id, hashedTokenSecret: agentToken.hashedSecret, createdAt: Date())
        try await store.insertAgent(agent)

        try await store.deleteUser(id: user.id)
        #expect(try await store.apiKey(id: token.id) == nil)
        #expect(try await store.workspace(id: workspace.id) == nil)
        #expect(try await store.agent(id: agent.id) == nil)
        await #expect(throws: StoreError.notFound) { try await store.deleteUser(id: user.id) }
    }

    @Test func expiredKeysAreSwept() async throws {
        let store = try makeStore()
        let user = User(email: "a@example.com", username: "a", role: .owner, passwordHash: "x", createdAt: Date())
        try await store.insertFirstUser(user)
        let now = Date()
        for offset in [-10.0, -1, 5] {
            let token = SecretToken.generate()
            try await store.insertAPIKey(APIKey(id: token.id, hashedSecret: token.hashedSecret, userID: user.id, loginType: .token, name: nil, createdAt: now, expiresAt: now + offset))
        }
        #expect(try await store.deleteAPIKeys(expiredBefore: now) == 2)
    }

    /// Connection times land the same whatever order their writes arrive in; an unchanged report is no change.
    @Test func agentStateWrites() async throws {
        let store = try makeStore()
        let user = User(email: "a@example.com", username: "a", role: .owner, passwordHash: "x", createdAt: Date())
        try await store.insertFirstUser(user)
        let workspace = Workspace(ownerID: user.id, name: "w", createdAt: Date())
        try await store.insertWorkspace(workspace)
        let token = SecretToken.generate()
        let agent = Agent(workspaceID: workspace.id, name: "main", tokenID: token.id, hashedTokenSecret: token.hashedSecret, createdAt: Date())
        try await store.insertAgent(agent)

        let start = Date(timeIntervalSince1970: 1_800_000_000)
        try await store.recordAgentConnected(id: agent.id, at: start + 20)
        try await store.recordAgentDisconnected(id: agent.id, at: start + 30)
        try await store.recordAgentConnected(id: agent.id, at: start)  // late
        try await store.recordAgentDisconnected(id: agent.id, at: start + 10)  // late
        try await store.recordAgentConnected(id: UUID(), at: start)  // deleted meanwhile: ignored
        #expect(try await store.agent(id: agent.id)?.connection == AgentConnectionTimes(firstConnectedAt: start, lastConnectedAt: start + 20, disconnectedAt: start + 30))

        let report = AgentReport(version: "1", apps: [])
        #expect(try await store.setAgentReport(report, agentID: agent.id))
        #expect(try await !store.setAgentReport(report, agentID: agent.id))
        #expect(try await store.setAgentReport(AgentReport(version: "2", apps: []), agentID: agent.id))
        await #expect(throws: StoreError.notFound) { try await store.setAgentReport(report, agentID: UUID()) }
    }
}

@Suite struct SecretTokenTests {
    @Test func roundTripAndConstantTimeMatch() throws {
        let token = SecretToken.generate()
        let parsed = try #require(SecretToken(token.value))
        #expect(parsed.id == token.id)
        #expect(parsed.matches(hashedSecret: token.hashedSecret))
        #expect(!SecretToken.generate().matches(hashedSecret: token.hashedSecret))
        #expect(!parsed.matches(hashedSecret: Data([1, 2, 3])))
        // Logs see only the id.
        #expect(!"\(token)".contains(token.secret))
    }

    @Test(arguments: ["", "abc", "abcdefghij", "abcdefghij-short", "abcdefghi!-aaaaaaaaaaaaaaaaaaaaaa", "abcdefghij-aaaaaaaaaaaaaaaaaaaaa%"])
    func rejectsMalformed(_ text: String) {
        #expect(SecretToken(text) == nil)
    }
}
