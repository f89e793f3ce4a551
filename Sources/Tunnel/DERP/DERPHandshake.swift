import CSodium
import Foundation

/// The sealed JSON of the login frames. Go field names, as Tailscale marshals them.
public struct DERPClientInfo: Codable, Sendable, Equatable {
    public var meshKey: String?
    public var version: Int
    public var canAckPings: Bool?
    public var isProber: Bool?

    enum CodingKeys: String, CodingKey {
        case meshKey, version
        case canAckPings = "CanAckPings"
        case isProber = "IsProber"
    }

    public init(meshKey: String? = nil, version: Int = DERPLimits.protocolVersion) {
        (self.meshKey, self.version) = (meshKey, version)
    }
}

public struct DERPServerInfo: Codable, Sendable, Equatable {
    public var version: Int
    public init(version: Int = DERPLimits.protocolVersion) { self.version = version }
}

/// NaCl box (libsodium `crypto_box_easy`: X25519, XSalsa20-Poly1305) between node keys, as DERP's login uses.
public enum NaClBox {
    public static func seal(_ message: [UInt8], to recipient: NodePublicKey, from sender: NodePrivateKey) -> (nonce: [UInt8], sealed: [UInt8]) {
        let nonce = AEAD.randomBytes(Int(crypto_box_NONCEBYTES))
        var sealed = [UInt8](repeating: 0, count: message.count + Int(crypto_box_MACBYTES))
        _ = crypto_box_easy(&sealed, message, UInt64(message.count), nonce, recipient.bytes, sender.bytes)
        return (nonce, sealed)
    }

    public static func open(_ sealed: [UInt8], nonce: [UInt8], from sender: NodePublicKey, to recipient: NodePrivateKey) -> [UInt8]? {
        guard sealed.count >= Int(crypto_box_MACBYTES), nonce.count == Int(crypto_box_NONCEBYTES) else { return nil }
        var message = [UInt8](repeating: 0, count: sealed.count - Int(crypto_box_MACBYTES))
        let result = crypto_box_open_easy(&message, sealed, UInt64(sealed.count), nonce, sender.bytes, recipient.bytes)
        return result == 0 ? message : nil
    }
}

extension DERPFrame {
    /// The client's login frame: its key and its sealed ClientInfo.
    public static func clientInfo(_ info: DERPClientInfo, from client: NodePrivateKey, to server: NodePublicKey) throws -> DERPFrame {
        let (nonce, sealed) = NaClBox.seal(Array(try JSONEncoder().encode(info)), to: server, from: client)
        return .clientInfo(key: client.publicKey, nonce: nonce, sealed: sealed)
    }

    public static func serverInfo(_ info: DERPServerInfo, from server: NodePrivateKey, to client: NodePublicKey) throws -> DERPFrame {
        let (nonce, sealed) = NaClBox.seal(Array(try JSONEncoder().encode(info)), to: client, from: server)
        return .serverInfo(nonce: nonce, sealed: sealed)
    }
}
