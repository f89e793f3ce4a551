import Foundation

/// An IPv6 address on the mesh, inside `fd7a:115c:a1e0::/48` (the ULA prefix Tailscale and Coder use).
public struct MeshAddress: Hashable, Sendable, CustomStringConvertible {
    /// fd7a:115c:a1e0::/48.
    public static let prefix: [UInt8] = [0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0]
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    public init?(_ text: String) {
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        self.init(bytes: withUnsafeBytes(of: &address) { Array($0) })
    }

    /// An agent's address: its UUID with the first 6 bytes replaced by the mesh prefix, so the address
    /// follows from the agent id alone.
    public static func agent(_ id: UUID) -> MeshAddress {
        let uuid = withUnsafeBytes(of: id.uuid) { Array($0) }
        return MeshAddress(bytes: prefix + uuid[6...])!
    }

    /// A random address in the mesh prefix (gateway, proxies, clients).
    public static func random() -> MeshAddress { MeshAddress(bytes: prefix + AEAD.randomBytes(10))! }

    public var isInMeshPrefix: Bool { Array(bytes.prefix(6)) == Self.prefix }

    public var description: String {
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes) }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An IPv6 prefix, for WireGuard's allowed IPs.
public struct MeshPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: MeshAddress
    public let length: Int

    public init?(_ address: MeshAddress, length: Int) {
        guard (0...128).contains(length) else { return nil }
        (self.address, self.length) = (address, length)
    }

    /// "fd7a:115c:a1e0::1/128"
    public init?(_ text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let address = MeshAddress(String(parts[0])), let length = Int(parts[1]) else { return nil }
        self.init(address, length: length)
    }

    public func contains(_ candidate: [UInt8]) -> Bool {
        candidate.withUnsafeBytes { contains($0) }
    }

    /// The same for address bytes read in place.
    func contains(_ candidate: UnsafeRawBufferPointer) -> Bool {
        guard candidate.count == 16 else { return false }
        var remaining = length
        for index in 0..<16 where remaining > 0 {
            let bits = min(8, remaining)
            let mask: UInt8 = bits == 8 ? 0xff : ~(0xff >> UInt8(bits))
            if candidate[index] & mask != address.bytes[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String { "\(address)/\(length)" }
}
