import NIOCore

/// QUIC's variable-length integers (RFC 9000 §16): the two high bits of the first byte give the length
/// (1, 2, 4 or 8 bytes), the rest is the value in network byte order; values up to 2^62 − 1.
public enum VarInt {
    public static let maximum: UInt64 = (1 << 62) - 1

    /// Bytes needed for `value` (which must be ≤ `maximum`).
    public static func length(of value: UInt64) -> Int {
        switch value {
        case ..<(1 << 6): 1
        case ..<(1 << 14): 2
        case ..<(1 << 30): 4
        default: 8
        }
    }

    /// Appends `value` in its shortest form.
    public static func write(_ value: UInt64, to buffer: inout ByteBuffer) {
        precondition(value <= maximum, "QUIC varints hold at most 62 bits")  // callers bound their values
        switch length(of: value) {
        case 1: buffer.writeInteger(UInt8(value))
        case 2: buffer.writeInteger(UInt16(value) | 0x4000)
        case 4: buffer.writeInteger(UInt32(value) | 0x8000_0000)
        default: buffer.writeInteger(value | 0xc000_0000_0000_0000)
        }
    }

    /// Reads one varint; nil (nothing consumed) when the buffer ends inside it.
    public static func read(from buffer: inout ByteBuffer) -> UInt64? {
        guard let first: UInt8 = buffer.getInteger(at: buffer.readerIndex) else { return nil }
        switch first >> 6 {
        case 0: return buffer.readInteger(as: UInt8.self).map { UInt64($0) }
        case 1: return buffer.readInteger(as: UInt16.self).map { UInt64($0 & 0x3fff) }
        case 2: return buffer.readInteger(as: UInt32.self).map { UInt64($0 & 0x3fff_ffff) }
        default: return buffer.readInteger(as: UInt64.self).map { $0 & 0x3fff_ffff_ffff_ffff }
        }
    }
}
