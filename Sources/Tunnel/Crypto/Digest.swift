import CSodium

/// Small libsodium helpers the mesh shares: comparing secrets and hashing certificates.
enum ConstantTime {
    /// Equal without an early exit on the first differing byte (libsodium `sodium_memcmp`); lengths are public.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return sodium_memcmp(a, b, a.count) == 0
    }
}

enum SHA256 {
    static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        _ = crypto_hash_sha256(&out, bytes, UInt64(bytes.count))
        return out
    }
}
