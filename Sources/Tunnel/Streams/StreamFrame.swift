import NIOCore

/// Frames of the mesh's stream transport: RFC 9000 §19's frames and encodings, minus what the WireGuard session
/// already provides (no crypto, tokens, connection IDs or path validation). Layouts are written here only.
///
/// Every value below is a varint (`VarInt`) unless said otherwise.
public enum StreamFrame: Equatable, Sendable {
    /// 0x00: one byte of padding.
    case padding
    /// 0x01: ask for an acknowledgement (keepalive, probes).
    case ping
    /// 0x02: largest acknowledged, ACK delay (µs >> exponent), range count, first range, then gap/length pairs.
    case ack(AckFrame)
    /// 0x04: stream id, application error code, final size.
    case resetStream(id: UInt64, errorCode: UInt64, finalSize: UInt64)
    /// 0x05: stream id, application error code.
    case stopSending(id: UInt64, errorCode: UInt64)
    /// 0x08-0x0f: type bits OFF (0x04), LEN (0x02), FIN (0x01); stream id, [offset], [length], data. This
    /// encoder always writes OFF when the offset is non-zero and always LEN, so frames can be packed together.
    case stream(id: UInt64, offset: UInt64, data: ByteBuffer, fin: Bool)
    /// 0x10: connection-level flow control limit (bytes).
    case maxData(UInt64)
    /// 0x11: stream id, stream-level flow control limit (bytes).
    case maxStreamData(id: UInt64, limit: UInt64)
    /// 0x12: how many bidirectional streams the peer may open in total.
    case maxStreams(UInt64)
    /// 0x14: the sender is blocked at this connection limit.
    case dataBlocked(UInt64)
    /// 0x15: stream id, the limit it is blocked at.
    case streamDataBlocked(id: UInt64, limit: UInt64)
    /// 0x1c: error code, the frame type that caused it, reason length + UTF-8 reason.
    case connectionClose(errorCode: UInt64, frameType: UInt64, reason: String)

    enum TypeCode {
        static let padding: UInt64 = 0x00, ping: UInt64 = 0x01, ack: UInt64 = 0x02
        static let resetStream: UInt64 = 0x04, stopSending: UInt64 = 0x05
        static let streamBase: UInt64 = 0x08, streamOffBit: UInt64 = 0x04, streamLenBit: UInt64 = 0x02, streamFinBit: UInt64 = 0x01
        static let maxData: UInt64 = 0x10, maxStreamData: UInt64 = 0x11, maxStreams: UInt64 = 0x12
        static let dataBlocked: UInt64 = 0x14, streamDataBlocked: UInt64 = 0x15, connectionClose: UInt64 = 0x1c
    }

    /// Appends the frame.
    public func encode(into buffer: inout ByteBuffer) {
        func v(_ value: UInt64) { VarInt.write(value, to: &buffer) }
        switch self {
        case .padding: v(TypeCode.padding)
        case .ping: v(TypeCode.ping)
        case .ack(let ack):
            v(TypeCode.ack)
            ack.encode(into: &buffer)
        case .resetStream(let id, let errorCode, let finalSize):
            v(TypeCode.resetStream); v(id); v(errorCode); v(finalSize)
        case .stopSending(let id, let errorCode):
            v(TypeCode.stopSending); v(id); v(errorCode)
        case .stream(let id, let offset, let data, let fin):
            v(TypeCode.streamBase | (offset > 0 ? TypeCode.streamOffBit : 0) | TypeCode.streamLenBit | (fin ? TypeCode.streamFinBit : 0))
            v(id)
            if offset > 0 { v(offset) }
            v(UInt64(data.readableBytes))
            buffer.writeImmutableBuffer(data)
        case .maxData(let limit): v(TypeCode.maxData); v(limit)
        case .maxStreamData(let id, let limit): v(TypeCode.maxStreamData); v(id); v(limit)
        case .maxStreams(let count): v(TypeCode.maxStreams); v(count)
        case .dataBlocked(let limit): v(TypeCode.dataBlocked); v(limit)
        case .streamDataBlocked(let id, let limit): v(TypeCode.streamDataBlocked); v(id); v(limit)
        case .connectionClose(let errorCode, let frameType, let reason):
            v(TypeCode.connectionClose); v(errorCode); v(frameType); v(UInt64(reason.utf8.count))
            buffer.writeString(reason)
        }
    }

    /// Decodes every frame of a packet payload. A truncated or unknown frame makes the whole packet invalid
    /// (RFC 9000 §12.4: FRAME_ENCODING_ERROR), so nothing from it is used.
    public static func decodeAll(_ payload: ByteBuffer) throws -> [StreamFrame] {
        var buffer = payload
        var frames: [StreamFrame] = []
        while buffer.readableBytes > 0 { frames.append(try decode(from: &buffer)) }
        return frames
    }

    static func decode(from buffer: inout ByteBuffer) throws -> StreamFrame {
        func v() throws -> UInt64 {
            guard let value = VarInt.read(from: &buffer) else { throw StreamFrameError.truncated }
            return value
        }
        let type = try v()
        switch type {
        case TypeCode.padding: return .padding
        case TypeCode.ping: return .ping
        case TypeCode.ack: return .ack(try AckFrame.decode(from: &buffer))
        case TypeCode.resetStream: return .resetStream(id: try v(), errorCode: try v(), finalSize: try v())
        case TypeCode.stopSending: return .stopSending(id: try v(), errorCode: try v())
        case TypeCode.streamBase...(TypeCode.streamBase | 0x07):
            let id = try v()
            let offset = type & TypeCode.streamOffBit != 0 ? try v() : 0
            let length = type & TypeCode.streamLenBit != 0 ? try v() : UInt64(buffer.readableBytes)
            guard length <= UInt64(buffer.readableBytes), let data = buffer.readSlice(length: Int(length)) else { throw StreamFrameError.truncated }
            guard offset + length <= VarInt.maximum else { throw StreamFrameError.malformed("stream data beyond 2^62") }
            return .stream(id: id, offset: offset, data: data, fin: type & TypeCode.streamFinBit != 0)
        case TypeCode.maxData: return .maxData(try v())
        case TypeCode.maxStreamData: return .maxStreamData(id: try v(), limit: try v())
        case TypeCode.maxStreams: return .maxStreams(try v())
        case TypeCode.dataBlocked: return .dataBlocked(try v())
        case TypeCode.streamDataBlocked: return .streamDataBlocked(id: try v(), limit: try v())
        case TypeCode.connectionClose:
            let (errorCode, frameType, length) = (try v(), try v(), try v())
            guard length <= UInt64(buffer.readableBytes), let reason = buffer.readString(length: Int(length)) else { throw StreamFrameError.truncated }
            return .connectionClose(errorCode: errorCode, frameType: frameType, reason: reason)
        default:
            throw StreamFrameError.unknownType(type)
        }
    }
}

/// An ACK frame's content (RFC 9000 §19.3): ranges of acknowledged packet numbers, newest first.
public struct AckFrame: Equatable, Sendable {
    /// Descending and disjoint: the first holds the largest acknowledged number.
    public var ranges: [ClosedRange<UInt64>]
    /// The receiver's delay before sending, in microseconds, already shifted by the ACK delay exponent.
    public var delay: UInt64

    public init(ranges: [ClosedRange<UInt64>], delay: UInt64) {
        precondition(!ranges.isEmpty, "an ACK frame acknowledges at least one packet")
        (self.ranges, self.delay) = (ranges, delay)
    }

    /// The ranges of `received`, newest first, at most `maxRanges` of them.
    public init?(_ received: PacketNumberSet, delay: UInt64, maxRanges: Int = .max) {
        guard !received.ranges.isEmpty else { return nil }
        self.init(ranges: received.ranges.suffix(maxRanges).reversed(), delay: delay)
    }

    public var largest: UInt64 { ranges[0].upperBound }

    func encode(into buffer: inout ByteBuffer) {
        VarInt.write(largest, to: &buffer)
        VarInt.write(delay, to: &buffer)
        VarInt.write(UInt64(ranges.count - 1), to: &buffer)
        VarInt.write(ranges[0].upperBound - ranges[0].lowerBound, to: &buffer)
        var smallest = ranges[0].lowerBound
        for range in ranges.dropFirst() {
            // Gap: unacknowledged packets between this range and the previous one, minus one (§19.3.1).
            VarInt.write(smallest - range.upperBound - 2, to: &buffer)
            VarInt.write(range.upperBound - range.lowerBound, to: &buffer)
            smallest = range.lowerBound
        }
    }

    static func decode(from buffer: inout ByteBuffer) throws -> AckFrame {
        func v() throws -> UInt64 {
            guard let value = VarInt.read(from: &buffer) else { throw StreamFrameError.truncated }
            return value
        }
        let (largest, delay, count, firstLength) = (try v(), try v(), try v(), try v())
        guard firstLength <= largest else { throw StreamFrameError.malformed("ACK range below packet number 0") }
        // Each further range takes at least two bytes: bound the count by what is left before allocating.
        guard count <= UInt64(buffer.readableBytes / 2) else { throw StreamFrameError.truncated }
        var ranges = [(largest - firstLength)...largest]
        var smallest = largest - firstLength
        for _ in 0..<count {
            let (gap, length) = (try v(), try v())
            guard smallest >= gap + 2, smallest - gap - 2 >= length else { throw StreamFrameError.malformed("ACK range below packet number 0") }
            let upper = smallest - gap - 2
            ranges.append((upper - length)...upper)
            smallest = upper - length
        }
        return AckFrame(ranges: ranges, delay: delay)
    }
}

public enum StreamFrameError: Error, Equatable, CustomStringConvertible {
    case truncated
    case unknownType(UInt64)
    case malformed(String)

    public var description: String {
        switch self {
        case .truncated: "frame truncated"
        case .unknownType(let type): "unknown frame type 0x\(String(type, radix: 16))"
        case .malformed(let reason): "malformed frame: \(reason)"
        }
    }
}
