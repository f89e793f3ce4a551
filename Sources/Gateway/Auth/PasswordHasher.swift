import CSodium
import Foundation
import NIOPosix
import Tunnel

/// argon2id password hashing through libsodium's `crypto_pwhash_str`.
///
/// Hashing is deliberately slow and memory-hard, so it runs on a thread pool, never on an event loop;
/// the pool's size also bounds how much memory concurrent logins can claim.
public struct PasswordHasher: Sendable {
    /// libsodium's cost presets. `.interactive` (2 passes, 64 MiB) is the production default.
    public enum Cost: Sendable {
        case interactive
        /// The smallest parameters libsodium accepts; for tests only.
        case minimal
        var opsLimit: UInt64 { self == .interactive ? UInt64(crypto_pwhash_OPSLIMIT_INTERACTIVE) : UInt64(crypto_pwhash_OPSLIMIT_MIN) }
        var memLimit: Int { self == .interactive ? Int(crypto_pwhash_MEMLIMIT_INTERACTIVE) : Int(crypto_pwhash_MEMLIMIT_MIN) }
    }

    public enum Error: Swift.Error { case hashingFailed }

    /// Passwords longer than this are refused before hashing: argon2 cost grows with input.
    public static let maximumLength = 256
    public static let minimumLength = 8

    private let cost: Cost
    private let threadPool: NIOThreadPool
    /// Verified against when an email is unknown, so a miss takes as long as a wrong password.
    private let decoyHash: String

    public init(cost: Cost = .interactive, threadPool: NIOThreadPool = .singleton) throws {
        Sodium.start()
        self.cost = cost
        self.threadPool = threadPool
        self.decoyHash = try Self.hashSync(SecretToken.generate().secret, cost: cost)
    }

    public func hash(_ password: String) async throws -> String {
        let cost = self.cost
        return try await threadPool.runIfActive { try Self.hashSync(password, cost: cost) }
    }

    /// True when `password` matches `encoded`. With `encoded == nil` it burns the same time and returns false.
    public func verify(_ password: String, against encoded: String?) async throws -> Bool {
        let target = encoded ?? decoyHash
        let matched = try await threadPool.runIfActive {
            crypto_pwhash_str_verify(target, password, UInt64(password.utf8.count)) == 0
        }
        return matched && encoded != nil
    }

    private static func hashSync(_ password: String, cost: Cost) throws -> String {
        var out = [CChar](repeating: 0, count: Int(crypto_pwhash_STRBYTES))
        let result = crypto_pwhash_str_alg(
            &out, password, UInt64(password.utf8.count), cost.opsLimit, cost.memLimit, crypto_pwhash_ALG_ARGON2ID13
        )
        guard result == 0 else { throw Error.hashingFailed }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
