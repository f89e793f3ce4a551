import AppProxy
import Foundation
import Gateway
import Testing

@Suite struct AppKeyStoreTests {
    static let day: TimeInterval = 86_400

    func makeStore() throws -> SQLiteStore {
        try SQLiteStore(path: FileManager.default.temporaryDirectory.appendingPathComponent("meshgate-appkeys-\(UUID().uuidString).db").path)
    }

    static let request = AppRequest(accessMethod: .subdomain, user: "alice", workspace: "dev", agent: "main", target: .app(slug: "code"), basePath: "/")

    static func token(expiry: Date) -> SignedAppToken {
        SignedAppToken(request: request, userID: UUID(), workspaceID: UUID(), agentID: UUID(), upstream: .init(port: 3000, https: false, pathPrefix: ""), expiry: expiry)
    }

    /// The schedule as a pure function: first key at once, a successor written from `leadTime` before the 30-day mark,
    /// a late one still announced a refresh ahead, and a fresh key at once when everything expired.
    @Test func rotationSchedule() {
        let rotation = AppKeyRotation()
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let first = rotation.nextKey(after: [], now: t0)
        #expect(first?.sequence == 1 && first?.startsAt == t0 && first?.expiresAt == t0 + 30 * Self.day + 3600)
        let key1 = AppCryptoKey(sequence: 1, secret: [], startsAt: t0, expiresAt: t0 + 30 * Self.day + 3600)
        #expect(rotation.nextKey(after: [key1], now: t0 + 30 * Self.day - 1801) == nil)
        let due = rotation.nextKey(after: [key1], now: t0 + 30 * Self.day - 1800)
        #expect(due?.sequence == 2 && due?.startsAt == t0 + 30 * Self.day)
        let late = rotation.nextKey(after: [key1], now: t0 + 30 * Self.day + 600)
        #expect(late?.startsAt == t0 + 30 * Self.day + 600 + 600)
        let afterAll = rotation.nextKey(after: [key1], now: t0 + 40 * Self.day)
        #expect(afterAll?.sequence == 2 && afterAll?.startsAt == t0 + 40 * Self.day)
    }

    /// Created at first use, cached, rotated after 30 days; a token signed with the previous key verifies after the
    /// rotation until that key expires, then it does not, and the expired key is deleted.
    @Test func rotationKeepsThePreviousKeyUntilItExpires() async throws {
        let store = try makeStore()
        let clock = ManualWallClock()
        let keys = AppKeyStore<AppTokenSigning>(store: store, clock: clock)
        #expect(try await store.appKeys(feature: AppTokenSigning.name).isEmpty)
        let first = try await keys.keyring()
        #expect(first.current.sequence == 1 && first.current.secret.count == 64)
        #expect(try await store.appKeys(feature: AppTokenSigning.name).map(\.sequence) == [1])

        // A token made to outlive a rotation (real ones live a minute), signed with key 1.
        let old = try first.sign(Self.token(expiry: clock.now + 31 * Self.day))
        clock.advance(by: 30 * Self.day - 20 * 60)
        let announced = try await keys.keyring()
        #expect(announced.current.sequence == 1 && announced.keys.map(\.sequence) == [1, 2])
        clock.advance(by: 20 * 60)
        let rotated = try await keys.keyring()
        #expect(rotated.current.sequence == 2)
        #expect(try AppTokenJWS.keySequence(of: rotated.sign(Self.token(expiry: clock.now + 60))) == 2)
        #expect(try await keys.verify(old, now: clock.now, for: Self.request) != nil)

        // Key 1 verifies for the overlap (one hour past its successor's start), then neither it nor its tokens do.
        clock.advance(by: 3600 - 1)
        #expect(try await keys.verify(old, now: clock.now, for: Self.request) != nil)
        clock.advance(by: 1)
        #expect(try await keys.verify(old, now: clock.now, for: Self.request) == nil)
        clock.advance(by: 600)
        _ = try await keys.keyring()
        #expect(try await store.appKeys(feature: AppTokenSigning.name).map(\.sequence) == [2])
    }

    /// Replicas racing at first use end up with one key; a replica that never saw a new key picks it up when a token
    /// names it, without waiting for its refresh.
    @Test func replicasShareKeys() async throws {
        let store = try makeStore()
        let clock = ManualWallClock()
        let replicas = (0..<4).map { _ in AppKeyStore<AppTokenSigning>(store: store, clock: clock) }
        let sequences = try await withThrowingTaskGroup(of: Int.self) { group in
            for replica in replicas { group.addTask { try await replica.keyring().current.sequence } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(sequences == [1, 1, 1, 1])
        #expect(try await store.appKeys(feature: AppTokenSigning.name).count == 1)

        // A key written behind the replicas' backs (as another region's rotation would).
        let secret = [UInt8](repeating: 9, count: 64)
        try await store.insertAppKey(AppCryptoKey(sequence: 2, secret: secret, startsAt: clock.now, expiresAt: clock.now + Self.day), feature: AppTokenSigning.name)
        let foreign = AppTokenKeyring(keys: [AppCryptoKey(sequence: 2, secret: secret, startsAt: clock.now, expiresAt: clock.now + Self.day)], now: clock.now)!
        let text = try foreign.sign(Self.token(expiry: clock.now + 60))
        #expect(try await replicas[0].verify(text, now: clock.now, for: Self.request) != nil)
    }

    /// Signing and encryption keys are separate sets, each of its own length.
    @Test func featuresAreSeparate() async throws {
        let store = try makeStore()
        let clock = ManualWallClock()
        let signing = try await AppKeyStore<AppTokenSigning>(store: store, clock: clock).keyring()
        let sealing = try await AppKeyStore<AppConnectEncryption>(store: store, clock: clock).keyring()
        #expect(signing.current.sequence == 1 && sealing.current.sequence == 1)
        #expect(signing.current.secret.count == 64 && sealing.current.secret.count == 32)
        #expect(try await store.appKeys(feature: AppConnectEncryption.name).map(\.secret) == [sealing.current.secret])
        await #expect(throws: StoreError.conflict("app_crypto_keys.feature, app_crypto_keys.sequence")) {
            try await store.insertAppKey(sealing.current, feature: AppConnectEncryption.name)
        }
    }
}
