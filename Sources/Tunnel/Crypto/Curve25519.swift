import CSodium

/// X25519 from libsodium.
public enum Curve25519 {
    public static let keyLength = 32

    /// A fresh private key, clamped as RFC 7748 describes (as wireguard-go stores them).
    public static func generatePrivateKey() -> [UInt8] { clamp(AEAD.randomBytes(keyLength)) }

    public static func clamp(_ key: [UInt8]) -> [UInt8] {
        var key = key
        key[0] &= 248
        key[31] = (key[31] & 127) | 64
        return key
    }

    public static func publicKey(for privateKey: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: keyLength)
        _ = crypto_scalarmult_curve25519_base(&out, privateKey)
        return out
    }

    /// DH(private, public); nil when the result is all zeros (a low-order point: the peer is hostile).
    public static func sharedSecret(privateKey: [UInt8], publicKey: [UInt8]) -> [UInt8]? {
        guard privateKey.count == keyLength, publicKey.count == keyLength else { return nil }
        var out = [UInt8](repeating: 0, count: keyLength)
        return crypto_scalarmult_curve25519(&out, privateKey, publicKey) == 0 ? out : nil
    }
}
