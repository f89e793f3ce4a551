import Foundation
import GRDB
import Tunnel

/// The embedded default `Store`: one SQLite file (WAL mode) in the data directory, through GRDB.
/// All SQL of this implementation lives in this file and `SQLiteStore+Migrations.swift`.
public final class SQLiteStore: Store {
    let pool: DatabasePool

    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(5)
        pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(pool)
    }

    /// Identifiers of the migrations applied so far, oldest first.
    public func appliedMigrations() async throws -> [String] {
        try await pool.read { db in try Self.migrator.appliedIdentifiers(db).sorted() }
    }

    // MARK: Users

    public func insertFirstUser(_ user: User) async throws {
        try await write { db in
            // Count and insert in one write transaction: two racing first-user requests cannot both win.
            guard try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users") == 0 else {
                throw StoreError.conflict("first user already exists")
            }
            try Self.insert(user, db)
        }
    }

    public func insertUser(_ user: User) async throws {
        try await write { db in try Self.insert(user, db) }
    }

    public func user(id: UUID) async throws -> User? {
        try await pool.read { db in try Row.fetchOne(db, sql: "SELECT * FROM users WHERE id = ?", arguments: [id]).map(Self.user) }
    }

    public func user(email: String) async throws -> User? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM users WHERE email = ? COLLATE NOCASE", arguments: [email]).map(Self.user)
        }
    }

    public func user(username: String) async throws -> User? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM users WHERE username = ? COLLATE NOCASE", arguments: [username]).map(Self.user)
        }
    }

    public func users() async throws -> [User] {
        try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM users ORDER BY created_at, username").map(Self.user) }
    }

    public func userCount() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users") ?? 0 }
    }

    public func deleteUser(id: UUID) async throws {
        try await delete(from: "users", where: "id", equals: id)
    }

    // MARK: API keys

    public func insertAPIKey(_ key: APIKey) async throws {
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO api_keys (id, hashed_secret, user_id, login_type, name, created_at, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [key.id, key.hashedSecret, key.userID, key.loginType.rawValue, key.name, key.createdAt, key.expiresAt]
            )
        }
    }

    public func apiKey(id: String) async throws -> APIKey? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM api_keys WHERE id = ?", arguments: [id]).map { row in
                APIKey(
                    id: row["id"], hashedSecret: row["hashed_secret"], userID: row["user_id"],
                    loginType: APIKey.LoginType(rawValue: row["login_type"]) ?? .token, name: row["name"],
                    createdAt: row["created_at"], expiresAt: row["expires_at"]
                )
            }
        }
    }

    public func deleteAPIKey(id: String) async throws {
        try await delete(from: "api_keys", where: "id", equals: id)
    }

    @discardableResult
    public func deleteAPIKeys(expiredBefore date: Date) async throws -> Int {
        try await write { db in
            try db.execute(sql: "DELETE FROM api_keys WHERE expires_at < ?", arguments: [date])
            return db.changesCount
        }
    }

    @discardableResult
    public func deleteAPIKeys(userID: UUID, loginType: APIKey.LoginType) async throws -> Int {
        try await write { db in
            try db.execute(sql: "DELETE FROM api_keys WHERE user_id = ? AND login_type = ?", arguments: [userID, loginType.rawValue])
            return db.changesCount
        }
    }

    // MARK: Workspaces

    public func insertWorkspace(_ workspace: Workspace) async throws {
        try await write { db in
            try db.execute(
                sql: "INSERT INTO workspaces (id, owner_id, name, created_at) VALUES (?, ?, ?, ?)",
                arguments: [workspace.id, workspace.ownerID, workspace.name, workspace.createdAt]
            )
        }
    }

    public func workspace(id: UUID) async throws -> Workspace? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM workspaces WHERE id = ?", arguments: [id]).map(Self.workspace)
        }
    }

    public func workspaces(ownerID: UUID?) async throws -> [Workspace] {
        try await pool.read { db in
            if let ownerID {
                return try Row.fetchAll(
                    db, sql: "SELECT * FROM workspaces WHERE owner_id = ? ORDER BY created_at, name", arguments: [ownerID]
                ).map(Self.workspace)
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM workspaces ORDER BY created_at, name").map(Self.workspace)
        }
    }

    public func deleteWorkspace(id: UUID) async throws {
        try await delete(from: "workspaces", where: "id", equals: id)
    }

    // MARK: Agents

    public func insertAgent(_ agent: Agent) async throws {
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO agents (id, workspace_id, name, token_id, hashed_token_secret, created_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [agent.id, agent.workspaceID, agent.name, agent.tokenID, agent.hashedTokenSecret, agent.createdAt]
            )
        }
    }

    public func agent(id: UUID) async throws -> Agent? {
        try await pool.read { db in try Row.fetchOne(db, sql: "SELECT * FROM agents WHERE id = ?", arguments: [id]).map(Self.agent) }
    }

    public func agent(tokenID: String) async throws -> Agent? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM agents WHERE token_id = ?", arguments: [tokenID]).map(Self.agent)
        }
    }

    public func agents(workspaceID: UUID) async throws -> [Agent] {
        try await pool.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM agents WHERE workspace_id = ? ORDER BY created_at, name", arguments: [workspaceID]
            ).map(Self.agent)
        }
    }

    public func deleteAgent(id: UUID) async throws {
        try await delete(from: "agents", where: "id", equals: id)
    }

    public func setAgentReport(_ report: AgentReport, agentID: UUID) async throws -> Bool {
        let json = String(decoding: try Self.reportEncoder.encode(report), as: UTF8.self)
        return try await write { db in
            try db.execute(sql: "UPDATE agents SET report = ? WHERE id = ? AND report IS NOT ?", arguments: [json, agentID, json])
            if db.changesCount > 0 { return true }
            guard try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM agents WHERE id = ?)", arguments: [agentID]) == true else {
                throw StoreError.notFound
            }
            return false
        }
    }

    // Dates are stored as "YYYY-MM-DD HH:MM:SS.SSS" text, so MIN and MAX order them in time.
    public func recordAgentConnected(id: UUID, at date: Date) async throws {
        try await write { db in
            try db.execute(
                sql: """
                    UPDATE agents SET first_connected_at = MIN(COALESCE(first_connected_at, ?1), ?1),
                                      last_connected_at = MAX(COALESCE(last_connected_at, ?1), ?1)
                    WHERE id = ?2
                    """,
                arguments: [date, id]
            )
        }
    }

    public func recordAgentDisconnected(id: UUID, at date: Date) async throws {
        try await write { db in
            try db.execute(
                sql: "UPDATE agents SET disconnected_at = MAX(COALESCE(disconnected_at, ?1), ?1) WHERE id = ?2", arguments: [date, id]
            )
        }
    }

    // MARK: Plumbing

    /// Runs a write transaction, turning SQLite uniqueness failures into `StoreError.conflict`.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.write(body)
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE
            || error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY
        {
            // SQLite's message names the column: "UNIQUE constraint failed: users.email".
            let column = error.message?.components(separatedBy: ": ").last ?? "unique"
            throw StoreError.conflict(column)
        }
    }

    private func delete(from table: String, where column: String, equals value: some DatabaseValueConvertible & Sendable) async throws {
        let changes = try await write { db in
            try db.execute(sql: "DELETE FROM \(table) WHERE \(column) = ?", arguments: [value])
            return db.changesCount
        }
        if changes == 0 { throw StoreError.notFound }
    }

    private static func insert(_ user: User, _ db: Database) throws {
        try db.execute(
            sql: "INSERT INTO users (id, email, username, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [user.id, user.email, user.username, user.role.rawValue, user.passwordHash, user.createdAt]
        )
    }

    private static func user(_ row: Row) -> User {
        User(
            id: row["id"], email: row["email"], username: row["username"], role: User.Role(rawValue: row["role"]) ?? .member,
            passwordHash: row["password_hash"], createdAt: row["created_at"]
        )
    }

    private static func workspace(_ row: Row) -> Workspace {
        Workspace(id: row["id"], ownerID: row["owner_id"], name: row["name"], createdAt: row["created_at"])
    }

    private static func agent(_ row: Row) -> Agent {
        let report = (row["report"] as String?).flatMap { try? JSONDecoder().decode(AgentReport.self, from: Data($0.utf8)) }
        return Agent(
            id: row["id"], workspaceID: row["workspace_id"], name: row["name"], tokenID: row["token_id"],
            hashedTokenSecret: row["hashed_token_secret"], createdAt: row["created_at"],
            connection: AgentConnectionTimes(
                firstConnectedAt: row["first_connected_at"], lastConnectedAt: row["last_connected_at"], disconnectedAt: row["disconnected_at"]
            ),
            report: report
        )
    }

    /// Sorted keys: the same report is the same text, so an unchanged report is recognised in SQL.
    private static let reportEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()
}
