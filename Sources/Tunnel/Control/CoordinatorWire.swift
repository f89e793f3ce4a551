import Foundation

/// The coordinator's wire protocol, version 1: JSON text messages over the WebSocket `GET /api/v2/coordinate`.
/// Written here and nowhere else.
///
/// Every message is one JSON object with `"v": 1` and a `"type"`. A message is at most `maxMessageBytes`,
/// checked before decoding. A binary, oversized, malformed or unknown message, or another `v`, closes that
/// socket (and only that one) with a reason; a refused request that is well-formed is answered with `error`
/// and the socket stays open.
///
///     node     {"key": "nodekey:<64 hex>", "addresses": ["fd7a:115c:a1e0::…/128"], "home_region": 900,
///               "endpoints": ["203.0.113.7:41641", "[2001:db8::1]:41641"], "version": "0.1.0"}
///              addresses: ≤ 8 mesh /128s (an agent's is exactly `MeshAddress.agent(id)`); endpoints: ≤ 32
///              "ip:port" (IPv6 in brackets), may be empty (DERP only); home_region 0 = none yet;
///              version: the node software's version, ≤ 64 characters, for diagnostics.
///
/// Node → coordinator:
///
///     update_self    {"v":1, "type":"update_self", "node": node}       replaces this connection's node
///     add_tunnel     {"v":1, "type":"add_tunnel", "peer": P}           P = agent id (UUID) or "nodekey:…"
///     remove_tunnel  {"v":1, "type":"remove_tunnel", "peer": P}
///     disconnect     {"v":1, "type":"disconnect"}                      leaving for good: peers hear "gone" now
///
/// Coordinator → node:
///
///     peer_updates   {"v":1, "type":"peer_updates", "updates": [{"kind":"node", "node": node}
///                                                               | {"kind":"lost", "key":"nodekey:…"}
///                                                               | {"kind":"gone", "key":"nodekey:…"}]}
///     error          {"v":1, "type":"error", "message": "…"}
///
/// `node` is a peer's latest node (add or replace the WireGuard peer). `lost`: its connection vanished; keep
/// the session, it may return within the grace period. `gone`: it disconnected, expired, or its tunnel was
/// removed; drop the peer. Updates are sent only between the two ends of a tunnel, on both sides.
public enum CoordinatorWire {
    public static let version = 1
    /// A node with every field at its limit is about 2.5 KiB; the rest is headroom.
    public static let maxMessageBytes = 16 * 1024
    public static let maxAddresses = 8
    public static let maxEndpoints = 32
    public static let maxVersionLength = 64

    /// Decodes one message from a node. The size is checked before any parsing.
    public static func decodeRequest(_ bytes: some Collection<UInt8>) throws(CoordinatorProtocolError) -> CoordinatorRequest {
        guard bytes.count <= maxMessageBytes else { throw CoordinatorProtocolError.messageTooLarge(bytes: bytes.count, limit: maxMessageBytes) }
        return try decode(CoordinatorRequest.self, Data(bytes))
    }

    /// Decodes one message from the coordinator (for nodes and tests).
    public static func decodeResponse(_ bytes: some Collection<UInt8>) throws(CoordinatorProtocolError) -> CoordinatorResponse {
        guard bytes.count <= maxMessageBytes * 64 else { throw CoordinatorProtocolError.messageTooLarge(bytes: bytes.count, limit: maxMessageBytes * 64) }
        return try decode(CoordinatorResponse.self, Data(bytes))
    }

    public static func encode(_ message: some Encodable) -> String {
        // Encoding these types cannot fail: every value is a string, number or array of them.
        String(decoding: (try? encoder.encode(message)) ?? Data("{}".utf8), as: UTF8.self)
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws(CoordinatorProtocolError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as CoordinatorProtocolError {
            throw error
        } catch let error as DecodingError {
            // A type or field the decoder below threw about arrives wrapped; unwrap ours.
            if case .dataCorrupted(let context) = error, let ours = context.underlyingError as? CoordinatorProtocolError { throw ours }
            throw CoordinatorProtocolError.malformed(error.summary)
        } catch {
            throw CoordinatorProtocolError.malformed("undecodable message")
        }
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}

/// Why a node's message was refused; each closes that node's socket. Descriptions fit a WebSocket close reason.
public enum CoordinatorProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    case messageTooLarge(bytes: Int, limit: Int)
    case binaryMessage
    case unsupportedVersion(Int)
    case unknownType(String)
    /// Not JSON, or not the shape of its type; the payload says where.
    case malformed(String)

    public var description: String {
        switch self {
        case .messageTooLarge(let bytes, let limit): "message of \(bytes) bytes exceeds \(limit)"
        case .binaryMessage: "binary messages are not part of the protocol"
        case .unsupportedVersion(let version): "unsupported protocol version \(version)"
        case .unknownType(let type): "unknown message type \(String(type.prefix(40)))"
        case .malformed(let why): "malformed message: \(String(why.prefix(80)))"
        }
    }
}

/// A node as nodes see each other: enough to configure a WireGuard peer and reach it directly or over DERP.
public struct CoordinatorNode: Codable, Equatable, Sendable {
    public var key: NodePublicKey
    public var addresses: [MeshPrefix]
    public var homeRegion: Int
    public var endpoints: [String]
    public var version: String

    public init(key: NodePublicKey, addresses: [MeshPrefix], homeRegion: Int, endpoints: [String], version: String) {
        (self.key, self.addresses, self.homeRegion, self.endpoints, self.version) = (key, addresses, homeRegion, endpoints, version)
    }

    enum CodingKeys: String, CodingKey { case key, addresses, homeRegion = "home_region", endpoints, version }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        key = try container.decode(NodeKeyText.self, forKey: .key).key
        let addresses = try container.decode([String].self, forKey: .addresses)
        guard addresses.count <= CoordinatorWire.maxAddresses else { throw Self.invalid("more than \(CoordinatorWire.maxAddresses) addresses") }
        self.addresses = try addresses.map { text in
            guard let prefix = MeshPrefix(text), prefix.length == 128, prefix.address.isInMeshPrefix else {
                throw Self.invalid("address \(text.prefix(48)) is not a mesh /128")
            }
            return prefix
        }
        homeRegion = try container.decode(Int.self, forKey: .homeRegion)
        guard homeRegion >= 0 else { throw Self.invalid("negative home_region") }
        endpoints = try container.decode([String].self, forKey: .endpoints)
        guard endpoints.count <= CoordinatorWire.maxEndpoints else { throw Self.invalid("more than \(CoordinatorWire.maxEndpoints) endpoints") }
        for endpoint in endpoints where !Self.isEndpoint(endpoint) { throw Self.invalid("endpoint \(endpoint.prefix(48)) is not ip:port") }
        version = try container.decode(String.self, forKey: .version)
        guard version.count <= CoordinatorWire.maxVersionLength else { throw Self.invalid("version longer than \(CoordinatorWire.maxVersionLength)") }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(key.text, forKey: .key)
        try container.encode(addresses.map(\.description), forKey: .addresses)
        try container.encode(homeRegion, forKey: .homeRegion)
        try container.encode(endpoints, forKey: .endpoints)
        try container.encode(version, forKey: .version)
    }

    /// "192.0.2.1:41641" or "[2001:db8::1]:41641", with a literal address and a port in 1...65535.
    static func isEndpoint(_ text: String) -> Bool {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0 else { return false }
        let host = text[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { return MeshAddress(String(host.dropFirst().dropLast())) != nil }
        var ipv4 = in_addr()
        return inet_pton(AF_INET, String(host), &ipv4) == 1
    }

    private static func invalid(_ why: String) -> CoordinatorProtocolError { .malformed("invalid node: \(why)") }
}

/// The `peer` of a tunnel request: an agent by id, or the node key an agent currently uses.
public enum TunnelPeer: Hashable, Sendable, Codable {
    case agent(UUID)
    case key(NodePublicKey)

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        if let id = UUID(uuidString: text) {
            self = .agent(id)
        } else if let key = NodePublicKey(text: text) {
            self = .key(key)
        } else {
            throw CoordinatorProtocolError.malformed("peer is neither an agent id nor a node key")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .agent(let id): try container.encode(id.uuidString.lowercased())
        case .key(let key): try container.encode(key.text)
        }
    }
}

/// A message from a node to the coordinator.
public enum CoordinatorRequest: Equatable, Sendable, Codable {
    case updateSelf(CoordinatorNode)
    case addTunnel(TunnelPeer)
    case removeTunnel(TunnelPeer)
    case disconnect

    enum CodingKeys: String, CodingKey { case v, type, node, peer }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        switch try messageType(container, version: .v, type: .type) {
        case "update_self": self = .updateSelf(try container.decode(CoordinatorNode.self, forKey: .node))
        case "add_tunnel": self = .addTunnel(try container.decode(TunnelPeer.self, forKey: .peer))
        case "remove_tunnel": self = .removeTunnel(try container.decode(TunnelPeer.self, forKey: .peer))
        case "disconnect": self = .disconnect
        case let other: throw CoordinatorProtocolError.unknownType(other)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(CoordinatorWire.version, forKey: .v)
        switch self {
        case .updateSelf(let node): try container.encode("update_self", forKey: .type); try container.encode(node, forKey: .node)
        case .addTunnel(let peer): try container.encode("add_tunnel", forKey: .type); try container.encode(peer, forKey: .peer)
        case .removeTunnel(let peer): try container.encode("remove_tunnel", forKey: .type); try container.encode(peer, forKey: .peer)
        case .disconnect: try container.encode("disconnect", forKey: .type)
        }
    }
}

/// One change to a peer, as `peer_updates` carries it.
public enum PeerUpdate: Equatable, Sendable, Codable {
    case node(CoordinatorNode)
    case lost(NodePublicKey)
    case gone(NodePublicKey)

    enum CodingKeys: String, CodingKey { case kind, node, key }

    public var key: NodePublicKey {
        switch self {
        case .node(let node): node.key
        case .lost(let key), .gone(let key): key
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        switch try container.decode(String.self, forKey: .kind) {
        case "node": self = .node(try container.decode(CoordinatorNode.self, forKey: .node))
        case "lost": self = .lost(try container.decode(NodeKeyText.self, forKey: .key).key)
        case "gone": self = .gone(try container.decode(NodeKeyText.self, forKey: .key).key)
        case let other: throw CoordinatorProtocolError.unknownType(other)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .node(let node): try container.encode("node", forKey: .kind); try container.encode(node, forKey: .node)
        case .lost(let key): try container.encode("lost", forKey: .kind); try container.encode(key.text, forKey: .key)
        case .gone(let key): try container.encode("gone", forKey: .kind); try container.encode(key.text, forKey: .key)
        }
    }
}

/// A message from the coordinator to a node.
public enum CoordinatorResponse: Equatable, Sendable, Codable {
    case peerUpdates([PeerUpdate])
    case error(message: String)

    enum CodingKeys: String, CodingKey { case v, type, updates, message }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        switch try messageType(container, version: .v, type: .type) {
        case "peer_updates": self = .peerUpdates(try container.decode([PeerUpdate].self, forKey: .updates))
        case "error": self = .error(message: try container.decode(String.self, forKey: .message))
        case let other: throw CoordinatorProtocolError.unknownType(other)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(CoordinatorWire.version, forKey: .v)
        switch self {
        case .peerUpdates(let updates): try container.encode("peer_updates", forKey: .type); try container.encode(updates, forKey: .updates)
        case .error(let message): try container.encode("error", forKey: .type); try container.encode(message, forKey: .message)
        }
    }
}

/// Checks the `"v"` every message carries and returns its `"type"`.
private func messageType<Key: CodingKey>(_ container: KeyedDecodingContainer<Key>, version: Key, type: Key) throws -> String {
    let number = try container.decode(Int.self, forKey: version)
    guard number == CoordinatorWire.version else { throw CoordinatorProtocolError.unsupportedVersion(number) }
    return try container.decode(String.self, forKey: type)
}

/// A `nodekey:<hex>` string field.
private struct NodeKeyText: Decodable {
    let key: NodePublicKey
    init(from decoder: any Decoder) throws {
        guard let key = NodePublicKey(text: try decoder.singleValueContainer().decode(String.self)) else {
            throw CoordinatorProtocolError.malformed("key is not nodekey:<64 hex>")
        }
        self.key = key
    }
}
