import Foundation
import NIOCore

/// The `pty` mesh service: a reconnecting terminal session on the agent. After the service header and the
/// accepted verdict (`MeshService`) both sides exchange frames:
///
///     frame    type (u8) + payload length (u32, big-endian) + payload
///
///     opener → agent   0x01 attach   JSON {"id": UUID, "width": N, "height": N, "command": "…"}; first, once
///                      0x02 input    bytes for the terminal
///                      0x03 resize   width (u16) + height (u16)
///     agent → opener   0x81 output   bytes from the terminal; the first output after attach repaints the screen
///                      0x82 exit     JSON {"reason": "…", "code": N?, "signal": N?}; then the agent closes
///
/// Sessions are keyed by the attach id: attaching with the id of a live session joins it. A malformed frame
/// closes only that stream; the session lives on. docs/pty-protocol.md is the reader's version of this.
public enum PTYWire {
    /// Above this a frame is malformed: no keystroke, paste or read of the terminal comes near it.
    public static let maxPayloadBytes = 1 << 20
    /// Terminal sizes outside 1...maxDimension are refused (xterm itself caps at 9999; nobody needs more than this).
    public static let maxDimension = 1000
    /// An attach's command is at most this long.
    public static let maxCommandBytes = 4096
    static let headerBytes = 5
}

/// The first frame: which session, at what size, running what.
public struct PTYAttach: Codable, Sendable, Equatable {
    public var id: UUID
    public var width: Int
    public var height: Int
    /// Empty: the user's login shell.
    public var command: String

    public init(id: UUID, width: Int, height: Int, command: String = "") {
        (self.id, self.width, self.height, self.command) = (id, width, height, command)
    }

    /// Why this attach cannot be served, for the refusal; nil when it is fine.
    public var problem: String? {
        if !(1...PTYWire.maxDimension).contains(width) || !(1...PTYWire.maxDimension).contains(height) {
            return "terminal size \(width)x\(height) is outside 1...\(PTYWire.maxDimension)"
        }
        if command.utf8.count > PTYWire.maxCommandBytes { return "command longer than \(PTYWire.maxCommandBytes) bytes" }
        if command.utf8.contains(0) { return "command contains a NUL byte" }
        return nil
    }
}

/// How a session ended, as the agent tells every attached opener.
public struct PTYExit: Codable, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public var code: Int?
    public var signal: Int?

    public init(reason: String, code: Int? = nil, signal: Int? = nil) {
        (self.reason, self.code, self.signal) = (reason, code, signal)
    }

    public var description: String { reason }
}

/// Frames the opener sends.
public enum PTYClientFrame: Sendable, Equatable {
    case attach(PTYAttach)
    case input(ByteBuffer)
    case resize(width: Int, height: Int)
}

/// Frames the agent sends.
public enum PTYAgentFrame: Sendable, Equatable {
    case output(ByteBuffer)
    case exit(PTYExit)
}

public enum PTYWireError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    public var description: String {
        switch self {
        case .malformed(let what): "malformed pty frame: \(what)"
        }
    }
}

extension PTYWire {
    static func writeFrame(type: UInt8, payload: (inout ByteBuffer) -> Void, into buffer: inout ByteBuffer) {
        buffer.writeInteger(type)
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        let start = buffer.writerIndex
        payload(&buffer)
        buffer.setInteger(UInt32(buffer.writerIndex - start), at: lengthIndex)
    }

    /// The next frame's type and payload from the front of `buffer`; nil when more bytes are needed.
    static func readFrame(from buffer: inout ByteBuffer) throws -> (type: UInt8, payload: ByteBuffer)? {
        guard let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self)
        else { return nil }
        guard length <= UInt32(maxPayloadBytes) else { throw PTYWireError.malformed("payload of \(length) bytes") }
        guard buffer.readableBytes >= headerBytes + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: headerBytes)
        return (type, buffer.readSlice(length: Int(length))!)
    }

    static func decodeJSON<T: Decodable>(_ type: T.Type, from payload: ByteBuffer, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(payload.readableBytesView))
        } catch {
            throw PTYWireError.malformed("\(what): \((error as? DecodingError)?.summary ?? "\(error)")")
        }
    }

    static func encodeJSON<T: Encodable>(_ value: T, into buffer: inout ByteBuffer) {
        // Encoding these plain structs cannot fail.
        buffer.writeBytes(try! JSONEncoder().encode(value))
    }
}

extension PTYClientFrame {
    public func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .attach(let attach): PTYWire.writeFrame(type: 0x01, payload: { PTYWire.encodeJSON(attach, into: &$0) }, into: &buffer)
        case .input(var bytes): PTYWire.writeFrame(type: 0x02, payload: { $0.writeBuffer(&bytes) }, into: &buffer)
        case .resize(let width, let height):
            PTYWire.writeFrame(type: 0x03, payload: { $0.writeMultipleIntegers(UInt16(clamping: width), UInt16(clamping: height)) }, into: &buffer)
        }
    }

    /// The next frame from the front of `buffer`; nil when more bytes are needed.
    public static func decode(from buffer: inout ByteBuffer) throws -> PTYClientFrame? {
        guard let (type, payload) = try PTYWire.readFrame(from: &buffer) else { return nil }
        switch type {
        case 0x01: return .attach(try PTYWire.decodeJSON(PTYAttach.self, from: payload, what: "attach"))
        case 0x02: return .input(payload)
        case 0x03:
            guard payload.readableBytes == 4, let (width, height) = payload.getMultipleIntegers(at: payload.readerIndex, as: (UInt16, UInt16).self) else {
                throw PTYWireError.malformed("resize of \(payload.readableBytes) bytes")
            }
            return .resize(width: Int(width), height: Int(height))
        default: throw PTYWireError.malformed("opener frame type \(type)")
        }
    }
}

extension PTYAgentFrame {
    public func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .output(var bytes): PTYWire.writeFrame(type: 0x81, payload: { $0.writeBuffer(&bytes) }, into: &buffer)
        case .exit(let exit): PTYWire.writeFrame(type: 0x82, payload: { PTYWire.encodeJSON(exit, into: &$0) }, into: &buffer)
        }
    }

    /// The next frame from the front of `buffer`; nil when more bytes are needed.
    public static func decode(from buffer: inout ByteBuffer) throws -> PTYAgentFrame? {
        guard let (type, payload) = try PTYWire.readFrame(from: &buffer) else { return nil }
        switch type {
        case 0x81: return .output(payload)
        case 0x82: return .exit(try PTYWire.decodeJSON(PTYExit.self, from: payload, what: "exit"))
        default: throw PTYWireError.malformed("agent frame type \(type)")
        }
    }
}
