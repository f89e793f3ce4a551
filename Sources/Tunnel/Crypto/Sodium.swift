import CSodium

/// libsodium's one-time set-up. Until `sodium_init` runs, libsodium uses its portable reference code: ChaCha20
/// and Poly1305 without SIMD cost several times more per packet, and nothing fails to show it.
public enum Sodium {
    private static let started: Bool = sodium_init() >= 0

    /// Picks the CPU's fastest implementations; idempotent and thread-safe. Every user of libsodium calls it once.
    public static func start() {
        precondition(started, "libsodium failed to initialise")
    }
}
