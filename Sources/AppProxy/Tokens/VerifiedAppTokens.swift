import Foundation
import Synchronization

/// Signed app tokens already verified, by their exact text, until they expire. A browser sends the same token
/// with every request for a minute; checking its MAC and decoding its JSON each time was a sixth of the gateway's
/// CPU under load, and the keyring's actor hop came with it.
///
/// Sound because the text is the whole token, signature included: a hit is a text this gateway proved it signed.
/// An entry lasts until the token's expiry or its key's, whichever is first, and the caller still checks that
/// the token was issued for the request at hand.
public final class VerifiedAppTokens: Sendable {
    private struct Entry {
        let token: SignedAppToken
        let validUntil: Date
    }

    /// About a minute of distinct tokens for a busy gateway; past this, expired entries are dropped, and if that is
    /// not enough the cache starts over (a miss only costs a verification).
    public static let defaultCapacity = 8192

    private let capacity: Int
    private let entries = Mutex<[String: Entry]>([:])

    public init(capacity: Int = defaultCapacity) { self.capacity = capacity }

    /// The token `text` was verified as, if that is still valid at `now`.
    public func token(for text: String, now: Date) -> SignedAppToken? {
        entries.withLock { entries in
            guard let entry = entries[text] else { return nil }
            guard now < entry.validUntil else {
                entries[text] = nil
                return nil
            }
            return entry.token
        }
    }

    /// Remembers that `text` verified as `token` with a key that verifies until `keyExpiry`.
    public func insert(_ text: String, token: SignedAppToken, keyExpiry: Date, now: Date) {
        let validUntil = min(token.expiry, keyExpiry)
        guard now < validUntil else { return }
        entries.withLock { entries in
            if entries.count >= capacity {
                entries = entries.filter { now < $0.value.validUntil }
                if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            }
            entries[text] = Entry(token: token, validUntil: validUntil)
        }
    }

    public var count: Int { entries.withLock { $0.count } }
}
