import AppProxy
import Crypto
import Foundation
import Logging

/// When app keys are made, take over and go. Each key signs for `interval`, then its successor takes over and it
/// keeps verifying for `overlap` (tokens it signed just before live on); it is deleted once expired. A successor is
/// written from `leadTime` before it starts, and never starts sooner than one `refreshInterval` after it was written,
/// so every replica and proxy has reloaded and knows a key before anything signed with it reaches them.
public struct AppKeyRotation: Sendable, Equatable {
    public var interval: TimeInterval = 30 * 86_400
    public var overlap: TimeInterval = 3600
    public var leadTime: TimeInterval = 30 * 60
    /// How long a cached keyring is used before it is read again (and rotation checked).
    public var refreshInterval: TimeInterval = 10 * 60
    /// Reloads for a token naming an unknown key happen at most this often, so made-up `kid`s cannot load the store.
    public var unknownKeyReloadInterval: TimeInterval = 10

    public init() {}

    /// What to add to `keys` at `now`: the first key, a successor once the newest live key's term is within
    /// `leadTime` of its end, or a key starting at once when every key has expired; nil when nothing is due.
    public func nextKey(after keys: [AppCryptoKey], now: Date) -> (sequence: Int, startsAt: Date, expiresAt: Date)? {
        let next = (keys.map(\.sequence).max() ?? 0) + 1
        guard let newestLive = keys.filter({ $0.expiresAt > now }).max(by: { $0.sequence < $1.sequence }) else {
            return (next, now, now + interval + overlap)
        }
        let plannedStart = newestLive.startsAt + interval
        guard now >= plannedStart - leadTime else { return nil }
        // Written late (nothing ran for a while): still announced a refresh ahead; the old key signs meanwhile, or,
        // if it expires first, the new one does early (`AppKeyring` falls back to it).
        let startsAt = max(plannedStart, now + refreshInterval)
        return (next, startsAt, startsAt + interval + overlap)
    }
}

public enum AppKeyStoreError: Error, Equatable {
    /// The store has no usable key even after rotation ran: it failed to write one.
    case noUsableKey(feature: String)
}

/// The primary's app keys of one feature: read from the store, created at first use, rotated and swept on refresh,
/// and cached (`AppKeyRotation.refreshInterval`), so a request with an app token costs no database work. Several
/// replicas may race to rotate; the store's uniqueness on (feature, sequence) lets one win and the others reload.
public actor AppKeyStore<Feature: AppKeyFeature>: AppKeys {
    private let store: any Store
    private let clock: any WallClock
    private let rotation: AppKeyRotation
    private let logger: Logger
    private var cached: [AppCryptoKey] = []
    private var loadedAt: Date?
    private var unknownKeyReloadAt: Date?
    private var loading: Task<[AppCryptoKey], any Error>?

    public init(store: any Store, clock: any WallClock, rotation: AppKeyRotation = AppKeyRotation(), logger: Logger = Logger(label: "meshgate.app-keys")) {
        (self.store, self.clock, self.rotation, self.logger) = (store, clock, rotation, logger)
    }

    public func keyring() async throws -> AppKeyring<Feature> {
        let now = clock.now
        if let loadedAt, (0..<rotation.refreshInterval).contains(now.timeIntervalSince(loadedAt)), let keyring = AppKeyring<Feature>(keys: cached, now: now) {
            return keyring
        }
        return try await reload()
    }

    public func keyring(including sequence: Int) async throws -> AppKeyring<Feature> {
        let keyring = try await keyring()
        let now = clock.now
        guard keyring.key(sequence: sequence, now: now) == nil else { return keyring }
        if let unknownKeyReloadAt, (0..<rotation.unknownKeyReloadInterval).contains(now.timeIntervalSince(unknownKeyReloadAt)) { return keyring }
        unknownKeyReloadAt = now
        return try await reload()
    }

    /// Refreshes from the store; concurrent callers share one refresh. A failed refresh keeps serving the cached
    /// keys while they are valid and tries again after `unknownKeyReloadInterval`, not on every request.
    private func reload() async throws -> AppKeyring<Feature> {
        let task: Task<[AppCryptoKey], any Error>
        if let loading {
            task = loading
        } else {
            let (store, clock, rotation, logger) = (store, clock, rotation, logger)
            task = Task { try await Self.refresh(store: store, clock: clock, rotation: rotation, logger: logger) }
            loading = task
        }
        let now: Date
        do {
            let keys = try await task.value
            if loading == task { loading = nil }
            now = clock.now
            (cached, loadedAt) = (keys, now)
        } catch {
            if loading == task { loading = nil }
            now = clock.now
            guard let keyring = AppKeyring<Feature>(keys: cached, now: now) else { throw error }
            logger.warning("Could not refresh app keys; using the cached ones", metadata: ["feature": "\(Feature.name)", "error": "\(error)"])
            loadedAt = now.addingTimeInterval(rotation.unknownKeyReloadInterval - rotation.refreshInterval)
            return keyring
        }
        guard let keyring = AppKeyring<Feature>(keys: cached, now: now) else { throw AppKeyStoreError.noUsableKey(feature: Feature.name) }
        return keyring
    }

    /// One rotation pass: add the key that is due (losing a race to another replica is fine), sweep expired ones,
    /// and return what the store holds then.
    private static func refresh(store: any Store, clock: any WallClock, rotation: AppKeyRotation, logger: Logger) async throws -> [AppCryptoKey] {
        let now = clock.now
        let keys = try await store.appKeys(feature: Feature.name)
        if let next = rotation.nextKey(after: keys, now: now) {
            let secret = SymmetricKey(size: SymmetricKeySize(bitCount: Feature.secretLength * 8)).withUnsafeBytes { [UInt8]($0) }
            do {
                try await store.insertAppKey(AppCryptoKey(sequence: next.sequence, secret: secret, startsAt: next.startsAt, expiresAt: next.expiresAt), feature: Feature.name)
                logger.info(
                    "Created app key",
                    metadata: ["feature": "\(Feature.name)", "sequence": "\(next.sequence)", "starts_at": "\(next.startsAt)", "expires_at": "\(next.expiresAt)"]
                )
            } catch StoreError.conflict {
                // Another replica wrote this sequence first; its key is as good as ours.
            }
        }
        if try await store.deleteAppKeys(feature: Feature.name, expiredBefore: now) > 0 {
            logger.info("Deleted expired app keys", metadata: ["feature": "\(Feature.name)"])
        }
        return try await store.appKeys(feature: Feature.name)
    }
}
