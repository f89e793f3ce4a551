import CSodium

/// ChaCha20-Poly1305 (IETF, 96-bit nonce) and XChaCha20-Poly1305 from libsodium.
///
/// The transport path seals and opens in place with a detached tag: no allocation per packet.
public enum AEAD {
    public static let keyLength = 32
    public static let tagLength = 16
    public static let xNonceLength = 24

    /// WireGuard's 96-bit nonce: 4 zero bytes then the 64-bit counter, little-endian.
    @inline(__always)
    static func nonce(_ counter: UInt64) -> (UInt32, UInt32, UInt32) {
        // Three UInt32s are laid out contiguously (12 bytes, no padding), unlike (UInt32, UInt64).
        (0, UInt32(truncatingIfNeeded: counter).littleEndian, UInt32(truncatingIfNeeded: counter >> 32).littleEndian)
    }

    /// libsodium wants non-null pointers even for empty inputs (keepalives have no payload).
    @inline(__always)
    private static func bytes(_ buffer: UnsafeRawBufferPointer) -> UnsafePointer<UInt8> {
        buffer.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? emptyInput
    }

    // One immutable zero byte, allocated once and never written or freed: safe to share.
    nonisolated(unsafe) private static let emptyInput: UnsafePointer<UInt8> = {
        let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        pointer.initialize(to: 0)
        return UnsafePointer(pointer)
    }()

    /// Encrypts `message` in place and writes the 16-byte tag to `tag`.
    public static func sealInPlace(
        _ message: UnsafeMutableRawBufferPointer, tag: UnsafeMutableRawBufferPointer, counter: UInt64,
        key: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer = .init(start: nil, count: 0)
    ) {
        precondition(key.count == keyLength && tag.count == tagLength)
        var nonce = Self.nonce(counter)
        let output = UnsafeMutablePointer(mutating: bytes(UnsafeRawBufferPointer(message)))
        withUnsafeBytes(of: &nonce) { noncePointer in
            _ = crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                output, tag.baseAddress!.assumingMemoryBound(to: UInt8.self), nil,
                output, UInt64(message.count), bytes(associatedData), UInt64(associatedData.count), nil,
                bytes(noncePointer), bytes(key)
            )
        }
    }

    /// Decrypts `ciphertext` in place if `tag` authenticates it; false otherwise.
    public static func openInPlace(
        _ ciphertext: UnsafeMutableRawBufferPointer, tag: UnsafeRawBufferPointer, counter: UInt64,
        key: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer = .init(start: nil, count: 0)
    ) -> Bool {
        open(UnsafeRawBufferPointer(ciphertext), into: ciphertext, tag: tag, counter: counter, key: key, associatedData: associatedData)
    }

    /// Decrypts `ciphertext` into `plaintext` (the same length; it may be the same memory) if `tag` authenticates
    /// it. A received datagram is decrypted straight into a buffer of its own this way, with no copy first.
    public static func open(
        _ ciphertext: UnsafeRawBufferPointer, into plaintext: UnsafeMutableRawBufferPointer, tag: UnsafeRawBufferPointer, counter: UInt64,
        key: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer = .init(start: nil, count: 0)
    ) -> Bool {
        precondition(key.count == keyLength && tag.count == tagLength && plaintext.count == ciphertext.count)
        var nonce = Self.nonce(counter)
        let output = UnsafeMutablePointer(mutating: bytes(UnsafeRawBufferPointer(plaintext)))
        return withUnsafeBytes(of: &nonce) { noncePointer in
            crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                output, nil, bytes(ciphertext), UInt64(ciphertext.count), bytes(tag),
                bytes(associatedData), UInt64(associatedData.count), bytes(noncePointer), bytes(key)
            ) == 0
        }
    }

    /// Array convenience for the handshake (not per packet): ciphertext || tag.
    public static func seal(_ plaintext: [UInt8], counter: UInt64, key: [UInt8], associatedData: [UInt8]) -> [UInt8] {
        var buffer = plaintext + [UInt8](repeating: 0, count: tagLength)
        buffer.withUnsafeMutableBytes { all in
            key.withUnsafeBytes { key in
                associatedData.withUnsafeBytes { ad in
                    sealInPlace(
                        UnsafeMutableRawBufferPointer(rebasing: all[0..<plaintext.count]),
                        tag: UnsafeMutableRawBufferPointer(rebasing: all[plaintext.count...]), counter: counter, key: key, associatedData: ad
                    )
                }
            }
        }
        return buffer
    }

    /// Array convenience: nil when `sealed` (ciphertext || tag) does not authenticate.
    public static func open(_ sealed: [UInt8], counter: UInt64, key: [UInt8], associatedData: [UInt8]) -> [UInt8]? {
        guard sealed.count >= tagLength else { return nil }
        var buffer = sealed
        let length = sealed.count - tagLength
        let ok = buffer.withUnsafeMutableBytes { all in
            key.withUnsafeBytes { key in
                associatedData.withUnsafeBytes { ad in
                    openInPlace(
                        UnsafeMutableRawBufferPointer(rebasing: all[0..<length]),
                        tag: UnsafeRawBufferPointer(rebasing: all[length...]), counter: counter, key: key, associatedData: ad
                    )
                }
            }
        }
        return ok ? Array(buffer[0..<length]) : nil
    }

    /// XChaCha20-Poly1305 (cookie replies): ciphertext || tag.
    public static func xSeal(_ plaintext: [UInt8], nonce: [UInt8], key: [UInt8], associatedData: [UInt8]) -> [UInt8] {
        precondition(nonce.count == xNonceLength && key.count == keyLength)
        var out = [UInt8](repeating: 0, count: plaintext.count + tagLength)
        var length: UInt64 = 0
        _ = crypto_aead_xchacha20poly1305_ietf_encrypt(
            &out, &length, plaintext, UInt64(plaintext.count), associatedData, UInt64(associatedData.count), nil, nonce, key
        )
        return out
    }

    public static func xOpen(_ sealed: [UInt8], nonce: [UInt8], key: [UInt8], associatedData: [UInt8]) -> [UInt8]? {
        guard sealed.count >= tagLength, nonce.count == xNonceLength, key.count == keyLength else { return nil }
        var out = [UInt8](repeating: 0, count: sealed.count - tagLength)
        var length: UInt64 = 0
        let result = crypto_aead_xchacha20poly1305_ietf_decrypt(
            &out, &length, nil, sealed, UInt64(sealed.count), associatedData, UInt64(associatedData.count), nonce, key
        )
        return result == 0 ? out : nil
    }

    /// Cryptographically random bytes (libsodium's CSPRNG).
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        randombytes_buf(&out, count)
        return out
    }
}
