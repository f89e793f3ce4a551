import NIOCore

/// What a stream asks of the node it opens to. The opener writes the service header first; the listener
/// answers with a one-byte verdict before any of its own data:
///
///     service header   varint length (1...255) + UTF-8 name   "tcp:8080", "pty", "ssh"
///     verdict          0x00 accepted
///                      0x01 refused, varint length (≤ 1024) + UTF-8 reason, then FIN
public enum MeshService: Hashable, Sendable, CustomStringConvertible {
    /// Connect to 127.0.0.1:port on the listening node and splice.
    case tcp(port: UInt16)
    /// The reconnecting terminal.
    case pty
    case ssh
    /// Anything else, by name (so a newer peer's services are refused with a reason, not a parse error).
    case other(String)

    static let maxNameLength = 255
    static let maxReasonLength = 1024

    public init(name: String) {
        if name == "pty" {
            self = .pty
        } else if name == "ssh" {
            self = .ssh
        } else if name.hasPrefix("tcp:"), let port = UInt16(name.dropFirst(4)), port > 0 {
            self = .tcp(port: port)
        } else {
            self = .other(name)
        }
    }

    public var name: String {
        switch self {
        case .tcp(let port): "tcp:\(port)"
        case .pty: "pty"
        case .ssh: "ssh"
        case .other(let name): name
        }
    }

    public var description: String { name }

    func encodeHeader(into buffer: inout ByteBuffer) {
        let bytes = Array(name.utf8.prefix(Self.maxNameLength))
        VarInt.write(UInt64(bytes.count), to: &buffer)
        buffer.writeBytes(bytes)
    }

    /// Parses a service header from the front of `buffer`: nil when more bytes are needed.
    static func decodeHeader(from buffer: inout ByteBuffer) throws -> MeshService? {
        var peek = buffer
        guard let length = VarInt.read(from: &peek) else { return nil }
        guard (1...UInt64(maxNameLength)).contains(length) else { throw StreamFrameError.malformed("service name of \(length) bytes") }
        guard let name = peek.readString(length: Int(length)) else { return nil }
        buffer = peek
        return MeshService(name: name)
    }
}

/// The listener's answer to a service header.
enum MeshServiceVerdict: Equatable {
    case accepted
    case refused(reason: String)

    func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .accepted:
            buffer.writeInteger(UInt8(0))
        case .refused(let reason):
            buffer.writeInteger(UInt8(1))
            let bytes = Array(reason.utf8.prefix(MeshService.maxReasonLength))
            VarInt.write(UInt64(bytes.count), to: &buffer)
            buffer.writeBytes(bytes)
        }
    }

    /// Parses a verdict from the front of `buffer`: nil when more bytes are needed.
    static func decode(from buffer: inout ByteBuffer) throws -> MeshServiceVerdict? {
        var peek = buffer
        guard let status = peek.readInteger(as: UInt8.self) else { return nil }
        switch status {
        case 0:
            buffer = peek
            return .accepted
        case 1:
            guard let length = VarInt.read(from: &peek) else { return nil }
            guard length <= UInt64(MeshService.maxReasonLength) else { throw StreamFrameError.malformed("refusal reason of \(length) bytes") }
            guard let reason = peek.readString(length: Int(length)) else { return nil }
            buffer = peek
            return .refused(reason: reason)
        default:
            throw StreamFrameError.malformed("service verdict \(status)")
        }
    }
}

/// What a listener decides for an incoming stream.
public enum MeshStreamDecision: Sendable {
    /// Accept; the initializer configures the stream's pipeline on its event loop before any data is read.
    case accept(@Sendable (any Channel) -> EventLoopFuture<Void>)
    case refuse(reason: String)
}

/// An incoming stream's request, for the listener to decide on.
public struct MeshStreamRequest: Sendable {
    public let peer: NodePublicKey
    public let service: MeshService
}
