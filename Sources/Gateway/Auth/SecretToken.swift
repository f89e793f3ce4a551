import CSodium
import Crypto
import Foundation

/// A bearer credential of the form `{id}-{secret}` (session tokens, CLI tokens, agent tokens).
///
/// The id is a lookup key and may appear in logs; the secret never does. The store keeps only
/// SHA-256(secret): a leaked database cannot be replayed, and a fast hash suffices because the secret
/// has ~130 bits of entropy (unlike a password). Comparison is constant time.
public struct SecretToken: Sendable, CustomStringConvertible {
    public static let idLength = 10
    public static let secretLength = 22
    private static let idAlphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
    private static let secretAlphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

    public let id: String
    public let secret: String

    /// A new random token (the system's CSPRNG).
    public static func generate() -> SecretToken {
        var rng = SystemRandomNumberGenerator()
        func random(_ count: Int, from characters: [Character]) -> String {
            String((0..<count).map { _ in characters.randomElement(using: &rng)! })
        }
        return SecretToken(id: random(idLength, from: idAlphabet), secret: random(secretLength, from: secretAlphabet))
    }

    private init(id: String, secret: String) { (self.id, self.secret) = (id, secret) }

    /// Parses a presented token; nil when it does not have the shape of one.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == Self.idLength, parts[1].count == Self.secretLength,
            parts.allSatisfy({ $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } })
        else { return nil }
        (id, secret) = (String(parts[0]), String(parts[1]))
    }

    /// The full token, as handed to its holder once.
    public var value: String { "\(id)-\(secret)" }

    /// What the store keeps.
    public var hashedSecret: Data { Data(SHA256.hash(data: Data(secret.utf8))) }

    /// Constant-time check of this token's secret against a stored hash.
    public func matches(hashedSecret stored: Data) -> Bool {
        let presented = hashedSecret
        guard presented.count == stored.count else { return false }
        return presented.withUnsafeBytes { a in
            stored.withUnsafeBytes { b in sodium_memcmp(a.baseAddress, b.baseAddress, a.count) == 0 }
        }
    }

    /// Only the id: a token must never reach a log line whole.
    public var description: String { "\(id)-…" }
}
