import AppProxy
import Foundation
import GRDB

// App keys in SQLite: table `app_crypto_keys` (migration 0003), one rotating set per feature.
extension SQLiteStore {
    public func appKeys(feature: String) async throws -> [AppCryptoKey] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM app_crypto_keys WHERE feature = ? ORDER BY sequence", arguments: [feature]).map { row in
                AppCryptoKey(
                    sequence: row["sequence"], secret: [UInt8](row["secret"] as Data), startsAt: row["starts_at"], expiresAt: row["expires_at"]
                )
            }
        }
    }

    public func insertAppKey(_ key: AppCryptoKey, feature: String) async throws {
        try await write { db in
            try db.execute(
                sql: "INSERT INTO app_crypto_keys (feature, sequence, secret, starts_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [feature, key.sequence, Data(key.secret), key.startsAt, key.expiresAt]
            )
        }
    }

    @discardableResult
    public func deleteAppKeys(feature: String, expiredBefore date: Date) async throws -> Int {
        try await write { db in
            try db.execute(
                sql: """
                    DELETE FROM app_crypto_keys WHERE feature = ?1 AND expires_at < ?2
                    AND sequence < (SELECT MAX(sequence) FROM app_crypto_keys WHERE feature = ?1)
                    """,
                arguments: [feature, date]
            )
            return db.changesCount
        }
    }
}
