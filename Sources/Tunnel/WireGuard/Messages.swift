/// WireGuard's four messages (whitepaper §5.4). Layouts are written here and nowhere else.
/// All integers are little-endian; every message starts with a 1-byte type and 3 reserved zero bytes.
///
///     initiation  (148)  type=1 | sender u32 | ephemeral 32 | static 32+16 | timestamp 12+16 | mac1 16 | mac2 16
///     response     (92)  type=2 | sender u32 | receiver u32 | ephemeral 32 | empty 0+16     | mac1 16 | mac2 16
///     cookie reply (64)  type=3 | receiver u32 | nonce 24 | cookie 16+16
///     transport  (32+)   type=4 | receiver u32 | counter u64 | packet (padded to 16) + 16
public enum WireGuardMessageType: UInt8, Sendable {
    case initiation = 1
    case response = 2
    case cookieReply = 3
    case transport = 4
}

public enum WireGuardMessage {
    public static let initiationLength = 148
    public static let responseLength = 92
    public static let cookieReplyLength = 64
    public static let transportHeaderLength = 16
    public static let transportMinimumLength = transportHeaderLength + AEAD.tagLength

    /// Offsets of mac1/mac2 (each MAC covers everything before it).
    static func macOffsets(_ type: WireGuardMessageType) -> (mac1: Int, mac2: Int) {
        type == .initiation ? (116, 132) : (60, 76)
    }

    /// The message type of a datagram, if it has a known type, zero reserved bytes and the right length.
    public static func type(of datagram: some RandomAccessCollection<UInt8>) -> WireGuardMessageType? {
        guard datagram.count >= 4 else { return nil }
        let bytes = Array(datagram.prefix(4))
        guard bytes[1] == 0, bytes[2] == 0, bytes[3] == 0, let type = WireGuardMessageType(rawValue: bytes[0]) else { return nil }
        switch type {
        case .initiation: return datagram.count == initiationLength ? type : nil
        case .response: return datagram.count == responseLength ? type : nil
        case .cookieReply: return datagram.count == cookieReplyLength ? type : nil
        case .transport: return datagram.count >= transportMinimumLength ? type : nil
        }
    }
}

/// Little-endian field access shared by the message codecs.
enum LittleEndian {
    static func put32(_ value: UInt32, into bytes: inout [UInt8], at offset: Int) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }

    static func put64(_ value: UInt64, into bytes: inout [UInt8], at offset: Int) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    static func get32(_ bytes: some RandomAccessCollection<UInt8>, at offset: Int) -> UInt32 {
        var value: UInt32 = 0
        var index = bytes.index(bytes.startIndex, offsetBy: offset)
        for i in 0..<4 {
            value |= UInt32(bytes[index]) << (8 * UInt32(i))
            index = bytes.index(after: index)
        }
        return value
    }

    static func get64(_ bytes: some RandomAccessCollection<UInt8>, at offset: Int) -> UInt64 {
        UInt64(get32(bytes, at: offset)) | UInt64(get32(bytes, at: offset + 4)) << 32
    }
}
