/// The direct-path probe: a small ping/pong sent beside WireGuard on the node's UDP socket, sealed with the two
/// nodes' static keys, that tells a node which of a peer's UDP endpoints answer and how fast.
///
/// Why not probe with WireGuard itself (a handshake or keepalive to each candidate)? WireGuard has one endpoint
/// per peer and one session; sending a handshake to a candidate disturbs the session that works over DERP, and a
/// transport keepalive carries no transaction id, so a reply cannot be tied to the candidate or timed. A probe
/// is independent of the session: it works before any handshake, costs one AEAD per message, and its pong names
/// the address it came from (the peer-reflexive address, which is how a node behind NAT is found).
///
/// Wire: magic `mgdp` (4) | sender's node key (32) | nonce (24) | XChaCha20-Poly1305(key, nonce, body, ad: the 36
/// bytes before the nonce). key = BLAKE2s(label, X25519(ours, theirs)). Body: kind u8 (1 ping, 2 pong) | txid (12)
/// and for a pong the source it saw the ping from: address (16, IPv4 as ::ffff:a.b.c.d) | port u16 BE.
/// The magic's first byte is never a WireGuard message type (1-4), so the socket tells them apart by it.
enum DirectProbe {
    static let magic: [UInt8] = Array("mgdp".utf8)
    static let label: [UInt8] = Array("meshgate direct probe v1".utf8)
    static let txidLength = 12
    static let headerLength = magic.count + 32 + AEAD.xNonceLength

    enum Message: Equatable {
        case ping(txid: [UInt8])
        case pong(txid: [UInt8], observed: Endpoint)
    }

    static func isProbe(_ datagram: some Collection<UInt8>) -> Bool { datagram.count > headerLength && datagram.starts(with: magic) }

    /// The probe key shared by `privateKey` and `peer`; nil for a hostile (low-order) peer key.
    static func key(_ privateKey: NodePrivateKey, _ peer: NodePublicKey) -> [UInt8]? {
        Curve25519.sharedSecret(privateKey: privateKey.bytes, publicKey: peer.bytes).map { BLAKE2s.hash(label, $0) }
    }

    /// The sender's key, read before anything is verified (to pick the probe key).
    static func sender(of datagram: [UInt8]) -> NodePublicKey? {
        guard isProbe(datagram) else { return nil }
        return NodePublicKey(bytes: Array(datagram[magic.count..<magic.count + 32]))
    }

    static func seal(_ message: Message, from sender: NodePublicKey, key: [UInt8]) -> [UInt8] {
        var body: [UInt8]
        switch message {
        case .ping(let txid): body = [1] + txid
        case .pong(let txid, let observed):
            body = [2] + txid
            if case .udp(let address, let port) = observed {
                body += (address.count == 4 ? [UInt8](repeating: 0, count: 10) + [0xff, 0xff] + address : address)
                body += [UInt8(port >> 8), UInt8(port & 0xff)]
            }
        }
        let header = magic + sender.bytes
        let nonce = AEAD.randomBytes(AEAD.xNonceLength)
        return header + nonce + AEAD.xSeal(body, nonce: nonce, key: key, associatedData: header)
    }

    /// The message in `datagram`, if it is authentic under `key`.
    static func open(_ datagram: [UInt8], key: [UInt8]) -> Message? {
        guard isProbe(datagram) else { return nil }
        let header = Array(datagram[0..<magic.count + 32])
        let nonce = Array(datagram[header.count..<headerLength])
        guard let body = AEAD.xOpen(Array(datagram[headerLength...]), nonce: nonce, key: key, associatedData: header),
            body.count >= 1 + txidLength
        else { return nil }
        let txid = Array(body[1...txidLength])
        switch body[0] {
        case 1: return .ping(txid: txid)
        case 2:
            guard body.count == 1 + txidLength + 18 else { return nil }
            var address = Array(body[(1 + txidLength)..<(1 + txidLength + 16)])
            if address.starts(with: [UInt8](repeating: 0, count: 10) + [0xff, 0xff]) { address = Array(address.suffix(4)) }
            let port = UInt16(body[body.count - 2]) << 8 | UInt16(body[body.count - 1])
            return .pong(txid: txid, observed: .udp(address: address, port: port))
        default: return nil
        }
    }
}
