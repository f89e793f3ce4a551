import Foundation
import NIOCore
import Testing

@testable import Tunnel

/// The `pty` stream's frames: round trips byte for byte at any split, and the malformed cases that must close the
/// stream rather than be guessed at.
struct PTYWireTests {
    static let attach = PTYAttach(id: UUID(uuidString: "0B5D7E2C-7D3C-4B7E-9F3A-2D1C0B9A8E7F")!, width: 120, height: 40, command: "htop")

    @Test func openerFramesRoundTripAtEverySplit() throws {
        let frames: [PTYClientFrame] = [.attach(Self.attach), .input(ByteBuffer(string: "ls -la\r")), .resize(width: 200, height: 50), .input(ByteBuffer())]
        var wire = ByteBuffer()
        for frame in frames { frame.encode(into: &wire) }
        for split in 0...wire.readableBytes {
            var buffer = ByteBuffer()
            var decoded: [PTYClientFrame] = []
            for part in [wire.getSlice(at: 0, length: split)!, wire.getSlice(at: split, length: wire.readableBytes - split)!] {
                var part = part
                buffer.writeBuffer(&part)
                while let frame = try PTYClientFrame.decode(from: &buffer) { decoded.append(frame) }
            }
            #expect(decoded == frames, "split at \(split)")
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test func agentFramesRoundTrip() throws {
        let frames: [PTYAgentFrame] = [.output(ByteBuffer(bytes: [0x1B, 0x63, 0xE2, 0x94, 0x80])), .exit(PTYExit(reason: "process exited with code 3", code: 3))]
        var wire = ByteBuffer()
        for frame in frames { frame.encode(into: &wire) }
        var decoded: [PTYAgentFrame] = []
        while let frame = try PTYAgentFrame.decode(from: &wire) { decoded.append(frame) }
        #expect(decoded == frames)
    }

    @Test func attachIsJSONWithTheDocumentedKeys() throws {
        var wire = ByteBuffer()
        PTYClientFrame.attach(Self.attach).encode(into: &wire)
        #expect(wire.readInteger(as: UInt8.self) == 0x01)
        let length = wire.readInteger(as: UInt32.self) ?? 0
        let object = try JSONSerialization.jsonObject(with: Data(wire.readBytes(length: Int(length))!)) as? [String: Any]
        #expect(Set(object?.keys ?? [:].keys) == ["id", "width", "height", "command"])
    }

    @Test(arguments: [
        ([UInt8]([0x7F, 0, 0, 0, 0]), "opener frame type 127"),
        ([0x03, 0, 0, 0, 3, 0, 80, 0], "resize of 3 bytes"),
        ([0x01, 0, 0, 0, 2, 0x7B, 0x7D], "attach"),
        ([0x02, 0x00, 0x10, 0x00, 0x01], "payload of 1048577 bytes"),
    ])
    func malformedOpenerFramesAreErrors(bytes: [UInt8], mentions: String) {
        var buffer = ByteBuffer(bytes: bytes)
        #expect {
            _ = try PTYClientFrame.decode(from: &buffer)
        } throws: { error in
            "\(error)".contains(mentions)
        }
    }

    @Test func attachProblems() {
        #expect(Self.attach.problem == nil)
        #expect(PTYAttach(id: UUID(), width: 0, height: 24).problem?.contains("0x24") == true)
        #expect(PTYAttach(id: UUID(), width: 80, height: 1001).problem?.contains("80x1001") == true)
        #expect(PTYAttach(id: UUID(), width: 80, height: 24, command: String(repeating: "x", count: 4097)).problem != nil)
        #expect(PTYAttach(id: UUID(), width: 80, height: 24, command: "a\u{0}b").problem?.contains("NUL") == true)
    }
}
