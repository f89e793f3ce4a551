import Foundation

/// What a set of rotating app keys is for. The type parameter of `AppKeyring` keeps a signing key from ever being
/// used as an encryption key, and the other way round.
public protocol AppKeyFeature: Sendable {
    /// The name stored with the keys and used when fetching them (`app_token_signing`, `app_connect_encryption`).
    static var name: String { get }
    /// Bytes of secret a key of this feature has.
    static var secretLength: Int { get }
}

/// Keys that sign `SignedAppToken`s (HMAC-SHA512: 64 bytes, the hash's block-size-sized key RFC 2104 suggests).
public enum AppTokenSigning: AppKeyFeature {
    public static let name = "app_token_signing"
    public static let secretLength = 64
}

/// Keys that seal `AppConnectKey`s for the cross-domain login (AES-256-GCM).
public enum AppConnectEncryption: AppKeyFeature {
    public static let name = "app_connect_encryption"
    public static let secretLength = 32
}

/// One secret of a rotating set. `sequence` names it in tokens (the JWS `kid`).
public struct AppCryptoKey: Sendable, Equatable, CustomStringConvertible, CustomReflectable {
    public var sequence: Int
    public var secret: [UInt8]
    /// From when it signs (or seals); it verifies (or opens) from the moment a verifier knows it.
    public var startsAt: Date
    /// Until when it verifies; after that it is deleted.
    public var expiresAt: Date

    public init(sequence: Int, secret: [UInt8], startsAt: Date, expiresAt: Date) {
        (self.sequence, self.secret, self.startsAt, self.expiresAt) = (sequence, secret, startsAt, expiresAt)
    }

    /// The secret stays out of logs, string interpolation and `dump`.
    public var description: String { "AppCryptoKey(sequence: \(sequence), startsAt: \(startsAt), expiresAt: \(expiresAt))" }
    public var customMirror: Mirror { Mirror(self, children: ["sequence": sequence, "startsAt": startsAt, "expiresAt": expiresAt]) }
}

/// The keys of one feature that are valid now: the one to sign (or seal) with, and every unexpired one to verify
/// (or open) with, so tokens made with the previous key keep working through a rotation.
public struct AppKeyring<Feature: AppKeyFeature>: Sendable, Equatable {
    /// The newest key that has started; when none has (every one is announced ahead), the oldest unexpired one.
    public let current: AppCryptoKey
    /// Every unexpired key with a secret of the right length, by sequence; `current` is one of them.
    public let keys: [AppCryptoKey]

    /// Nil when no key in `keys` is usable at `now`.
    public init?(keys: [AppCryptoKey], now: Date) {
        let usable = keys.filter { $0.expiresAt > now && $0.secret.count == Feature.secretLength }.sorted { $0.sequence < $1.sequence }
        guard let current = usable.last(where: { $0.startsAt <= now }) ?? usable.first else { return nil }
        (self.current, self.keys) = (current, usable)
    }

    /// The key named `sequence`, if it is known and unexpired at `now`. A key announced ahead of its start verifies
    /// already: another replica whose clock runs ahead may sign with it.
    public func key(sequence: Int, now: Date) -> AppCryptoKey? {
        keys.first { $0.sequence == sequence && $0.expiresAt > now }
    }
}

public typealias AppTokenKeyring = AppKeyring<AppTokenSigning>
public typealias AppConnectKeyring = AppKeyring<AppConnectEncryption>

/// Where a node gets the keys of one feature: the primary from its store (`AppKeyStore`), a workspace proxy from
/// the primary. Implementations cache; `keyring(including:)` is the hint that a token names a key the cache lacks.
public protocol AppKeys<Feature>: Sendable {
    associatedtype Feature: AppKeyFeature
    /// The keys as currently known (cached).
    func keyring() async throws -> AppKeyring<Feature>
    /// The keys, reloaded first if `sequence` is not among them (implementations limit how often that happens, so
    /// tokens naming made-up keys cannot turn every request into a reload).
    func keyring(including sequence: Int) async throws -> AppKeyring<Feature>
}

extension AppKeys where Feature == AppTokenSigning {
    /// Verifies a token for `request`, reloading the keys once if it names a key newer than the cached ones. A token
    /// found in `cache` skips the keys; one verified here goes into it.
    public func verify(_ text: String, now: Date, for request: AppRequest, cache: VerifiedAppTokens? = nil) async throws -> SignedAppToken? {
        if let cached = cache?.token(for: text, now: now) { return cached.request == request ? cached : nil }
        var keyring = try await keyring()
        guard let sequence = AppTokenJWS.keySequence(of: text) else { return nil }
        // Sequences only grow: an unknown one below the newest known key was deleted, not missed.
        if sequence > keyring.keys.map(\.sequence).max() ?? 0 { keyring = try await self.keyring(including: sequence) }
        guard let (token, key) = keyring.verifiedToken(text, now: now) else { return nil }
        cache?.insert(text, token: token, keyExpiry: key.expiresAt, now: now)
        return token.request == request ? token : nil
    }
}
