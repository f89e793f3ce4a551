/// mac1/mac2 and cookie replies (whitepaper §5.4.4, §5.4.7): the DoS defence of the handshake.
///
/// mac1 proves the sender knows our public key, so anything without it is dropped unanswered. Under load a
/// responder also demands mac2, keyed by a cookie bound to the sender's address; a sender without a valid
/// mac2 gets a cookie reply instead of a handshake, which costs us no DH and them a round trip.
enum Macs {
    static func mac1Key(_ publicKey: NodePublicKey) -> [UInt8] { BLAKE2s.hash(Noise.labelMAC1, publicKey.bytes) }
    static func cookieKey(_ publicKey: NodePublicKey) -> [UInt8] { BLAKE2s.hash(Noise.labelCookie, publicKey.bytes) }

    /// Writes mac1 (for `receiver`) and mac2 (with `cookie`, else zeros) into `message`.
    static func stamp(_ message: inout [UInt8], type: WireGuardMessageType, receiver: NodePublicKey, cookie: [UInt8]?) {
        let (mac1Offset, mac2Offset) = WireGuardMessage.macOffsets(type)
        message.replaceSubrange(mac1Offset..<mac2Offset, with: BLAKE2s.mac(key: mac1Key(receiver), Array(message[..<mac1Offset])))
        let mac2 = cookie.map { BLAKE2s.mac(key: $0, Array(message[..<mac2Offset])) } ?? [UInt8](repeating: 0, count: 16)
        message.replaceSubrange(mac2Offset..<(mac2Offset + 16), with: mac2)
    }

    static func mac1(of message: [UInt8], type: WireGuardMessageType) -> [UInt8] {
        let (mac1Offset, mac2Offset) = WireGuardMessage.macOffsets(type)
        return Array(message[mac1Offset..<mac2Offset])
    }

    /// Constant-time check of mac1 against our own public key.
    static func verifyMAC1(_ message: [UInt8], type: WireGuardMessageType, localKey: NodePublicKey) -> Bool {
        let (mac1Offset, mac2Offset) = WireGuardMessage.macOffsets(type)
        return ConstantTime.equal(BLAKE2s.mac(key: mac1Key(localKey), Array(message[..<mac1Offset])), Array(message[mac1Offset..<mac2Offset]))
    }

    static func verifyMAC2(_ message: [UInt8], type: WireGuardMessageType, cookie: [UInt8]) -> Bool {
        let (_, mac2Offset) = WireGuardMessage.macOffsets(type)
        return ConstantTime.equal(BLAKE2s.mac(key: cookie, Array(message[..<mac2Offset])), Array(message[mac2Offset..<(mac2Offset + 16)]))
    }
}

/// The responder's cookie secret, rotated every two minutes (whitepaper: Rm changes every 120 s).
struct CookieChecker {
    static let secretLifetime: Duration = .seconds(120)
    private var secret: [UInt8] = AEAD.randomBytes(32)
    private var secretCreated: ContinuousClock.Instant?

    /// The cookie for a source address: MAC(Rm, address bytes).
    mutating func cookie(for source: [UInt8], now: ContinuousClock.Instant) -> [UInt8] {
        if let created = secretCreated, now - created < Self.secretLifetime {
        } else {
            secret = AEAD.randomBytes(32)
            secretCreated = now
        }
        return BLAKE2s.mac(key: secret, source)
    }

    /// A 64-byte cookie reply to `message` (which had a valid mac1) from `source`.
    mutating func reply(to message: [UInt8], type: WireGuardMessageType, source: [UInt8], localKey: NodePublicKey, now: ContinuousClock.Instant) -> [UInt8] {
        let nonce = AEAD.randomBytes(AEAD.xNonceLength)
        let sealed = AEAD.xSeal(
            cookie(for: source, now: now), nonce: nonce, key: Macs.cookieKey(localKey), associatedData: Macs.mac1(of: message, type: type)
        )
        var reply = [UInt8](repeating: 0, count: WireGuardMessage.cookieReplyLength)
        reply[0] = WireGuardMessageType.cookieReply.rawValue
        reply.replaceSubrange(4..<8, with: Array(message[4..<8]))  // receiver = the sender index of the message
        reply.replaceSubrange(8..<32, with: nonce)
        reply.replaceSubrange(32..<64, with: sealed)
        return reply
    }

    /// Initiator side: the cookie inside `reply`, if it decrypts for the mac1 we last sent.
    static func openReply(_ reply: [UInt8], peerKey: NodePublicKey, lastMAC1: [UInt8]) -> [UInt8]? {
        guard reply.count == WireGuardMessage.cookieReplyLength else { return nil }
        return AEAD.xOpen(Array(reply[32..<64]), nonce: Array(reply[8..<32]), key: Macs.cookieKey(peerKey), associatedData: lastMAC1)
    }
}
