import Foundation

/// A node's Curve25519 public key: its identity on the mesh (WireGuard static key, DERP client key).
/// Text form `nodekey:<64 hex>`; logs use the short form.
public struct NodePublicKey: Hashable, Sendable, CustomStringConvertible {
    public static let textPrefix = "nodekey:"
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == Curve25519.keyLength else { return nil }
        self.bytes = bytes
    }

    /// The 32 bytes in one call: a key is looked up for every packet, and `[UInt8]`'s own hashing feeds the hasher
    /// a byte at a time.
    public func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }

    public init?(text: String) {
        guard text.hasPrefix(Self.textPrefix), let bytes = Hex.decode(text.dropFirst(Self.textPrefix.count)) else { return nil }
        self.init(bytes: bytes)
    }

    /// WireGuard's own text form (`wg` and wireguard-go configuration).
    public init?(base64: String) {
        guard let data = Data(base64Encoded: base64) else { return nil }
        self.init(bytes: [UInt8](data))
    }

    public var text: String { Self.textPrefix + hex }
    /// 64 lowercase hex digits (DERP's Derp-Public-Key header).
    public var hex: String { Hex.encode(bytes) }
    public var base64: String { Data(bytes).base64EncodedString() }
    /// First 5 hex digits in brackets, as Tailscale logs keys: enough to tell peers apart, not to identify.
    public var shortForm: String { "[" + String(Hex.encode(bytes).prefix(5)) + "]" }
    public var description: String { shortForm }
}

/// A node's private key. Its description never shows the key.
public struct NodePrivateKey: Sendable, CustomStringConvertible {
    public static let textPrefix = "privkey:"
    public let bytes: [UInt8]
    public let publicKey: NodePublicKey

    public init?(bytes: [UInt8]) {
        guard bytes.count == Curve25519.keyLength else { return nil }
        self.bytes = Curve25519.clamp(bytes)
        publicKey = NodePublicKey(bytes: Curve25519.publicKey(for: self.bytes))!
    }

    public init?(text: String) {
        guard text.hasPrefix(Self.textPrefix), let bytes = Hex.decode(text.dropFirst(Self.textPrefix.count)) else { return nil }
        self.init(bytes: bytes)
    }

    public static func generate() -> NodePrivateKey { NodePrivateKey(bytes: Curve25519.generatePrivateKey())! }

    public var text: String { Self.textPrefix + Hex.encode(bytes) }
    public var base64: String { Data(bytes).base64EncodedString() }
    public var description: String { "privkey:<redacted \(publicKey.shortForm)>" }

    /// The node key kept at `path` (mode 0600), created on first use: a node's identity survives restarts.
    public static func loadOrCreate(path: String) throws -> NodePrivateKey {
        if let data = FileManager.default.contents(atPath: path) {
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let key = NodePrivateKey(text: text) else { throw NodeKeyFileError(path: path, reason: "not a privkey:<hex> node key") }
            return key
        }
        let key = generate()
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        guard FileManager.default.createFile(atPath: path, contents: Data((key.text + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw NodeKeyFileError(path: path, reason: "cannot create file")
        }
        return key
    }
}

public struct NodeKeyFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "node key \(path): \(reason)" }
}

enum Hex {
    static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            case 65...70: c - 55
            default: nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }
}
