import Foundation
import Testing
import Tunnel

@Suite struct CoordinatorMessagesTests {
    static let key = "nodekey:" + String(repeating: "ab", count: 32)
    static let node = #"{"key":"\#(key)","addresses":["fd7a:115c:a1e0::1/128"],"home_region":900,"endpoints":["192.0.2.1:41641","[2001:db8::1]:41641"],"version":"0.1.0"}"#

    struct BadInput: CustomTestStringConvertible, Sendable {
        let name: String
        let text: String
        let expected: CoordinatorProtocolError
        var testDescription: String { name }
    }

    static let badInputs: [BadInput] = [
        .init(name: "not JSON", text: "hello", expected: .malformed("malformed JSON")),
        .init(name: "JSON but not an object", text: "[1]", expected: .malformed("wrong type at body")),
        .init(name: "no version", text: #"{"type":"disconnect"}"#, expected: .malformed("missing field v")),
        .init(name: "another version", text: #"{"v":2,"type":"disconnect"}"#, expected: .unsupportedVersion(2)),
        .init(name: "unknown type", text: #"{"v":1,"type":"ready_for_handshake"}"#, expected: .unknownType("ready_for_handshake")),
        .init(name: "update without node", text: #"{"v":1,"type":"update_self"}"#, expected: .malformed("missing field node")),
        .init(
            name: "key without prefix", text: #"{"v":1,"type":"update_self","node":\#(node.replacingOccurrences(of: "nodekey:", with: ""))}"#,
            expected: .malformed("key is not nodekey:<64 hex>")),
        .init(
            name: "address outside the mesh", text: #"{"v":1,"type":"update_self","node":\#(node.replacingOccurrences(of: "fd7a:115c:a1e0::1", with: "2001:db8::1"))}"#,
            expected: .malformed("invalid node: address 2001:db8::1/128 is not a mesh /128")),
        .init(
            name: "endpoint without port", text: #"{"v":1,"type":"update_self","node":\#(node.replacingOccurrences(of: "192.0.2.1:41641", with: "192.0.2.1"))}"#,
            expected: .malformed("invalid node: endpoint 192.0.2.1 is not ip:port")),
        .init(name: "peer neither id nor key", text: #"{"v":1,"type":"add_tunnel","peer":"bob"}"#, expected: .malformed("peer is neither an agent id nor a node key")),
        .init(name: "peer of the wrong type", text: #"{"v":1,"type":"remove_tunnel","peer":7}"#, expected: .malformed("wrong type at peer")),
    ]

    /// Each malformed or unknown message is refused with a reason that names the fault.
    @Test(arguments: badInputs)
    func badInputIsRefused(_ test: BadInput) {
        #expect(throws: test.expected) { try CoordinatorWire.decodeRequest(Array(test.text.utf8)) }
    }

    /// The size limit is checked before any parsing: an oversized message is refused by length alone.
    @Test func oversizedIsRefusedBeforeDecoding() {
        let limit = CoordinatorWire.maxMessageBytes
        let tooLarge = [UInt8](repeating: UInt8(ascii: "{"), count: limit + 1)
        #expect(throws: CoordinatorProtocolError.messageTooLarge(bytes: limit + 1, limit: limit)) { try CoordinatorWire.decodeRequest(tooLarge) }
        #expect(throws: CoordinatorProtocolError.malformed("invalid node: more than 32 endpoints")) {
            let many = Array(repeating: "\"192.0.2.1:1\"", count: 33).joined(separator: ",")
            let text = #"{"v":1,"type":"update_self","node":\#(Self.node.replacingOccurrences(of: #"["192.0.2.1:41641","[2001:db8::1]:41641"]"#, with: "[\(many)]"))}"#
            _ = try CoordinatorWire.decodeRequest(Array(text.utf8))
        }
    }

    /// Every request survives encoding and decoding; a node in full is the documented shape.
    @Test func requestsRoundTrip() throws {
        let update = try CoordinatorWire.decodeRequest(Array(#"{"v":1,"type":"update_self","node":\#(Self.node)}"#.utf8))
        guard case .updateSelf(let node) = update else { Issue.record("not update_self: \(update)"); return }
        #expect(node.homeRegion == 900 && node.endpoints.count == 2 && node.key.text == Self.key)
        let agent = UUID()
        for request in [update, .addTunnel(.agent(agent)), .addTunnel(.key(node.key)), .removeTunnel(.agent(agent)), .disconnect] {
            #expect(try CoordinatorWire.decodeRequest(Array(CoordinatorWire.encode(request).utf8)) == request)
        }
    }

    /// The coordinator's messages on the wire, byte for byte.
    @Test func responsesOnTheWire() throws {
        let key = try #require(NodePublicKey(text: Self.key))
        let updates = CoordinatorResponse.peerUpdates([.lost(key), .gone(key)])
        #expect(CoordinatorWire.encode(updates) == #"{"type":"peer_updates","updates":[{"key":"\#(Self.key)","kind":"lost"},{"key":"\#(Self.key)","kind":"gone"}],"v":1}"#)
        #expect(CoordinatorWire.encode(CoordinatorResponse.error(message: "no")) == #"{"message":"no","type":"error","v":1}"#)
        #expect(try CoordinatorWire.decodeResponse(Array(CoordinatorWire.encode(updates).utf8)) == updates)
    }
}
