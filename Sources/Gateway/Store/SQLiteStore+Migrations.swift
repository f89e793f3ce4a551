import GRDB

extension SQLiteStore {
    /// Versioned schema. Migrations are append-only: never edit one that has shipped, add the next.
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("0001_accounts") { db in
            try db.execute(
                sql: """
                    CREATE TABLE users (
                        id BLOB PRIMARY KEY NOT NULL,
                        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
                        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
                        role TEXT NOT NULL,
                        password_hash TEXT NOT NULL,
                        created_at DATETIME NOT NULL
                    );
                    CREATE TABLE api_keys (
                        id TEXT PRIMARY KEY NOT NULL,
                        hashed_secret BLOB NOT NULL,
                        user_id BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                        login_type TEXT NOT NULL,
                        name TEXT,
                        created_at DATETIME NOT NULL,
                        expires_at DATETIME NOT NULL
                    );
                    CREATE INDEX api_keys_user ON api_keys(user_id);
                    CREATE INDEX api_keys_expiry ON api_keys(expires_at);
                    CREATE TABLE workspaces (
                        id BLOB PRIMARY KEY NOT NULL,
                        owner_id BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                        name TEXT NOT NULL COLLATE NOCASE,
                        created_at DATETIME NOT NULL,
                        UNIQUE (owner_id, name)
                    );
                    CREATE TABLE agents (
                        id BLOB PRIMARY KEY NOT NULL,
                        workspace_id BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
                        name TEXT NOT NULL COLLATE NOCASE,
                        token_id TEXT NOT NULL UNIQUE,
                        hashed_token_secret BLOB NOT NULL,
                        created_at DATETIME NOT NULL,
                        UNIQUE (workspace_id, name)
                    );
                    """
            )
        }
        migrator.registerMigration("0002_agent_state") { db in
            // Connection times as `AgentPresence` records them, and the latest `AgentReport` as its JSON.
            try db.execute(
                sql: """
                    ALTER TABLE agents ADD COLUMN first_connected_at DATETIME;
                    ALTER TABLE agents ADD COLUMN last_connected_at DATETIME;
                    ALTER TABLE agents ADD COLUMN disconnected_at DATETIME;
                    ALTER TABLE agents ADD COLUMN report TEXT;
                    """
            )
        }
        migrator.registerMigration("0003_app_crypto_keys") { db in
            // Secrets of signed app tokens (HMAC) and app-connect keys (AES-GCM), one rotating set per feature.
            // Stored raw, as Coder does without its optional database encryption: reading this table is enough to forge
            // app tokens and open app-connect keys, so database access is key access (unlike api_keys, which are hashed).
            try db.execute(
                sql: """
                    CREATE TABLE app_crypto_keys (
                        feature TEXT NOT NULL,
                        sequence INTEGER NOT NULL,
                        secret BLOB NOT NULL,
                        starts_at DATETIME NOT NULL,
                        expires_at DATETIME NOT NULL,
                        PRIMARY KEY (feature, sequence)
                    );
                    """
            )
        }
        return migrator
    }()
}
