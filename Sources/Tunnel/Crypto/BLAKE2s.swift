import CBlake2

/// BLAKE2s from libb2 (the BLAKE2 authors' library), and WireGuard's constructions on top of it.
///
/// Only HMAC and HKDF are written here: WireGuard (whitepaper §5.4) defines HASH as BLAKE2s-256,
/// MAC as keyed BLAKE2s-128 (not HMAC), HMAC as RFC 2104 over BLAKE2s with a 64-byte block, and KDFn
/// as HKDF with that HMAC.
public enum BLAKE2s {
    public static let hashLength = 32
    public static let macLength = 16
    static let blockLength = 64

    /// BLAKE2s-256 of the concatenation of `parts`.
    public static func hash(_ parts: [UInt8]...) -> [UInt8] { digest(length: hashLength, key: [], parts) }

    /// Keyed BLAKE2s-128 of the concatenation of `parts` (WireGuard's MAC: mac1, mac2, cookies).
    public static func mac(key: [UInt8], _ parts: [UInt8]...) -> [UInt8] { digest(length: macLength, key: key, parts) }

    /// Any output length 1...32 with an optional key (0...32 bytes); for known-answer tests.
    public static func digest(length: Int, key: [UInt8], _ parts: [[UInt8]]) -> [UInt8] {
        precondition((1...32).contains(length) && key.count <= 32)
        var state = blake2s_state()
        let initialised = key.isEmpty
            ? blake2s_init(&state, length)
            : key.withUnsafeBytes { blake2s_init_key(&state, length, $0.baseAddress, key.count) }
        precondition(initialised == 0, "blake2s_init failed")
        for part in parts { part.withUnsafeBytes { _ = blake2s_update(&state, $0.baseAddress, part.count) } }
        var out = [UInt8](repeating: 0, count: length)
        out.withUnsafeMutableBytes { _ = blake2s_final(&state, $0.baseAddress, length) }
        return out
    }

    /// HMAC-BLAKE2s-256 (RFC 2104): BLAKE2s has no built-in HMAC, and WireGuard's HKDF needs it.
    public static func hmac(key: [UInt8], _ parts: [UInt8]...) -> [UInt8] {
        var block = key.count > blockLength ? hash(key) : key
        block += [UInt8](repeating: 0, count: blockLength - block.count)
        let inner = digest(length: hashLength, key: [], [block.map { $0 ^ 0x36 }] + parts)
        return hash(block.map { $0 ^ 0x5c }, inner)
    }

    /// WireGuard's KDFn (HKDF, RFC 5869, with HMAC-BLAKE2s): `count` 32-byte outputs from `chainingKey` and `input`.
    public static func kdf(_ count: Int, chainingKey: [UInt8], input: [UInt8]) -> [[UInt8]] {
        precondition((1...3).contains(count))
        let pseudoRandomKey = hmac(key: chainingKey, input)
        var outputs: [[UInt8]] = []
        var previous: [UInt8] = []
        for index in 1...count {
            previous = hmac(key: pseudoRandomKey, previous, [UInt8(index)])
            outputs.append(previous)
        }
        return outputs
    }
}
