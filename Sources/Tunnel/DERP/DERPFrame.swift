import NIOCore

/// DERP, Tailscale's Designated Encrypted Relay for Packets (`derp/derp.go`, protocol version 2): a relay
/// that forwards opaque packets between Curve25519 keys over one TCP (or WebSocket) connection per client.
/// It is the path of last resort: it always works, even when both ends sit behind NAT.
///
/// Frame = type u8 | length u32 big-endian | payload. Layouts are written here and nowhere else.
///
///     Login:   server → ServerKey; client → ClientInfo; server → ServerInfo
///     Steady:  client → SendPacket; server → RecvPacket to the destination; KeepAlive every 60 s;
///              Ping is answered with Pong; PeerGone when a sender disconnects.
///     Mesh:    a server dials its siblings as a client with the mesh key, sends WatchConns, learns
///              PeerPresent/PeerGone, and relays one hop with ForwardPacket.
public enum DERPFrameType: UInt8, Sendable, CaseIterable {
    case serverKey = 0x01      // 8B magic "DERP🔑" + 32B server key (+ ignored future bytes)
    case clientInfo = 0x02     // 32B client key + 24B nonce + box(JSON ClientInfo)
    case serverInfo = 0x03     // 24B nonce + box(JSON ServerInfo)
    case sendPacket = 0x04     // 32B destination key + packet
    case recvPacket = 0x05     // 32B source key + packet
    case keepAlive = 0x06      // empty
    case notePreferred = 0x07  // 1B: 0x01 when this server is the client's home region
    case peerGone = 0x08       // 32B key + 1B reason (absent from old servers: disconnected)
    case peerPresent = 0x09    // 32B key + 16B IP + 2B port BE + 1B flags (old servers stop after the key or port)
    case forwardPacket = 0x0a  // 32B source key + 32B destination key + packet (mesh only)
    case watchConns = 0x10     // empty (mesh only)
    case closePeer = 0x11      // exactly 32B key (mesh only)
    case ping = 0x12           // 8B payload, echoed in Pong (longer: extra bytes reserved, ignored)
    case pong = 0x13           // 8B payload (as Ping)
    case health = 0x14         // UTF-8 problem text; empty clears it
    case restarting = 0x15     // u32 reconnect-in ms + u32 try-for ms
}

/// Limits, each bounding memory before it is allocated.
public enum DERPLimits {
    public static let frameHeaderLength = 1 + 4
    public static let keyLength = 32
    public static let nonceLength = 24
    /// Largest packet relayed (payload of SendPacket/RecvPacket after the key).
    public static let maxPacketSize = 64 << 10
    /// Largest ClientInfo a server reads from a client it does not trust yet.
    public static let maxClientInfoLength = 256 << 10
    /// Largest frame a client accepts from a server; and the server's own bound on any frame.
    public static let maxFrameLength = 1 << 20
    /// "DERP🔑"
    public static let magic: [UInt8] = [0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91]
    public static let protocolVersion = 2
}

/// Why the server says a peer is gone (the optional reason byte of PeerGone).
public enum PeerGoneReason: UInt8, Sendable {
    case disconnected = 0x00
    /// The destination of a SendPacket is not connected to this server.
    case notHere = 0x01
    case meshConnectionBroke = 0xf0
}

/// One DERP frame, decoded.
public enum DERPFrame: Equatable, Sendable {
    case serverKey(NodePublicKey)
    case clientInfo(key: NodePublicKey, nonce: [UInt8], sealed: [UInt8])
    case serverInfo(nonce: [UInt8], sealed: [UInt8])
    case sendPacket(destination: NodePublicKey, packet: ByteBuffer)
    case recvPacket(source: NodePublicKey, packet: ByteBuffer)
    case keepAlive
    case notePreferred(Bool)
    case peerGone(NodePublicKey, reason: PeerGoneReason)
    case peerPresent(NodePublicKey, endpoint: (address: [UInt8], port: UInt16)?, flags: UInt8)
    case forwardPacket(source: NodePublicKey, destination: NodePublicKey, packet: ByteBuffer)
    case watchConns
    case closePeer(NodePublicKey)
    case ping([UInt8])
    case pong([UInt8])
    case health(String)
    case restarting(reconnectIn: UInt32, tryFor: UInt32)
    /// A type this version does not know: skipped, as the protocol requires.
    case unknown(type: UInt8, payload: ByteBuffer)

    public static func == (lhs: DERPFrame, rhs: DERPFrame) -> Bool {
        var left = ByteBufferAllocator().buffer(capacity: 64)
        var right = ByteBufferAllocator().buffer(capacity: 64)
        lhs.encode(into: &left)
        rhs.encode(into: &right)
        return left == right
    }

    public var type: UInt8 {
        switch self {
        case .serverKey: DERPFrameType.serverKey.rawValue
        case .clientInfo: DERPFrameType.clientInfo.rawValue
        case .serverInfo: DERPFrameType.serverInfo.rawValue
        case .sendPacket: DERPFrameType.sendPacket.rawValue
        case .recvPacket: DERPFrameType.recvPacket.rawValue
        case .keepAlive: DERPFrameType.keepAlive.rawValue
        case .notePreferred: DERPFrameType.notePreferred.rawValue
        case .peerGone: DERPFrameType.peerGone.rawValue
        case .peerPresent: DERPFrameType.peerPresent.rawValue
        case .forwardPacket: DERPFrameType.forwardPacket.rawValue
        case .watchConns: DERPFrameType.watchConns.rawValue
        case .closePeer: DERPFrameType.closePeer.rawValue
        case .ping: DERPFrameType.ping.rawValue
        case .pong: DERPFrameType.pong.rawValue
        case .health: DERPFrameType.health.rawValue
        case .restarting: DERPFrameType.restarting.rawValue
        case .unknown(let type, _): type
        }
    }

    /// Appends header and payload to `buffer`.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeInteger(type)
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        let start = buffer.writerIndex
        switch self {
        case .serverKey(let key):
            buffer.writeBytes(DERPLimits.magic)
            buffer.writeBytes(key.bytes)
        case .clientInfo(let key, let nonce, let sealed):
            buffer.writeBytes(key.bytes)
            buffer.writeBytes(nonce)
            buffer.writeBytes(sealed)
        case .serverInfo(let nonce, let sealed):
            buffer.writeBytes(nonce)
            buffer.writeBytes(sealed)
        case .sendPacket(let key, let packet), .recvPacket(let key, let packet):
            buffer.writeBytes(key.bytes)
            buffer.writeImmutableBuffer(packet)
        case .keepAlive, .watchConns:
            break
        case .notePreferred(let preferred):
            buffer.writeInteger(UInt8(preferred ? 1 : 0))
        case .peerGone(let key, let reason):
            // Tailscale's sendPeerGone always writes the reason byte, 0x00 included.
            buffer.writeBytes(key.bytes)
            buffer.writeInteger(reason.rawValue)
        case .peerPresent(let key, let endpoint, let flags):
            // Always the full 51 bytes, as Tailscale's sendPeerPresent: no endpoint is Go's zero AddrPort
            // (16 zero bytes, port 0), so the flags byte still reaches the watcher.
            buffer.writeBytes(key.bytes)
            switch endpoint?.address.count {
            case 4?: buffer.writeBytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] + endpoint!.address)  // IPv4-mapped, as As16
            case 16?: buffer.writeBytes(endpoint!.address)
            default:
                assert(endpoint == nil, "peerPresent address must be 4 or 16 bytes")
                buffer.writeRepeatingByte(0, count: 16)
            }
            buffer.writeInteger(endpoint?.port ?? 0)
            buffer.writeInteger(flags)
        case .forwardPacket(let source, let destination, let packet):
            buffer.writeBytes(source.bytes)
            buffer.writeBytes(destination.bytes)
            buffer.writeImmutableBuffer(packet)
        case .closePeer(let key):
            buffer.writeBytes(key.bytes)
        case .ping(let data), .pong(let data):
            buffer.writeBytes(data)
        case .health(let text):
            buffer.writeString(text)
        case .restarting(let reconnectIn, let tryFor):
            buffer.writeInteger(reconnectIn)
            buffer.writeInteger(tryFor)
        case .unknown(_, let payload):
            buffer.writeImmutableBuffer(payload)
        }
        buffer.setInteger(UInt32(buffer.writerIndex - start), at: lengthIndex)
    }

    /// Decodes one frame's payload. Throws `DERPError.malformedFrame` when the payload does not fit its type.
    public static func decode(type: UInt8, payload: ByteBuffer) throws -> DERPFrame {
        var payload = payload
        guard let known = DERPFrameType(rawValue: type) else { return .unknown(type: type, payload: payload) }
        func key() throws -> NodePublicKey {
            guard let bytes = payload.readBytes(length: DERPLimits.keyLength), let key = NodePublicKey(bytes: bytes) else {
                throw DERPError.malformedFrame(type: type, reason: "short key")
            }
            return key
        }
        func exactly(_ length: Int) throws {
            guard payload.readableBytes == length else { throw DERPError.malformedFrame(type: type, reason: "payload of \(payload.readableBytes) bytes, want \(length)") }
        }
        switch known {
        case .serverKey:
            guard payload.readBytes(length: 8) == DERPLimits.magic else { throw DERPError.malformedFrame(type: type, reason: "bad magic") }
            return .serverKey(try key())  // trailing bytes are reserved for future use
        case .clientInfo:
            let client = try key()
            guard let nonce = payload.readBytes(length: DERPLimits.nonceLength) else { throw DERPError.malformedFrame(type: type, reason: "short nonce") }
            return .clientInfo(key: client, nonce: nonce, sealed: payload.readBytes(length: payload.readableBytes) ?? [])
        case .serverInfo:
            guard let nonce = payload.readBytes(length: DERPLimits.nonceLength) else { throw DERPError.malformedFrame(type: type, reason: "short nonce") }
            return .serverInfo(nonce: nonce, sealed: payload.readBytes(length: payload.readableBytes) ?? [])
        case .sendPacket:
            let destination = try key()
            guard payload.readableBytes <= DERPLimits.maxPacketSize else { throw DERPError.packetTooLarge(payload.readableBytes) }
            return .sendPacket(destination: destination, packet: payload)
        case .recvPacket:
            let source = try key()
            guard payload.readableBytes <= DERPLimits.maxPacketSize else { throw DERPError.packetTooLarge(payload.readableBytes) }
            return .recvPacket(source: source, packet: payload)
        case .keepAlive: return .keepAlive
        case .watchConns:
            try exactly(0)  // Tailscale: "handleFrameWatchConns wrong size"
            return .watchConns
        case .notePreferred:
            try exactly(1)
            return .notePreferred(payload.readInteger(as: UInt8.self) != 0)
        case .peerGone:
            let gone = try key()
            // No byte (old servers) and reasons this version does not know both read as "disconnected".
            let reason = payload.readInteger(as: UInt8.self).flatMap(PeerGoneReason.init) ?? .disconnected
            return .peerGone(gone, reason: reason)
        case .peerPresent:
            // Tailscale's client: the key, then IP + port if 18 bytes remain, then flags if one more does.
            let present = try key()
            guard let address = payload.readBytes(length: 16), let port = payload.readInteger(as: UInt16.self) else {
                return .peerPresent(present, endpoint: nil, flags: 0)
            }
            let flags = payload.readInteger(as: UInt8.self) ?? 0
            if port == 0 && address.allSatisfy({ $0 == 0 }) { return .peerPresent(present, endpoint: nil, flags: flags) }
            let mapped = address.prefix(12).elementsEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])
            return .peerPresent(present, endpoint: (mapped ? Array(address.suffix(4)) : address, port), flags: flags)
        case .forwardPacket:
            let source = try key()
            let destination = try key()
            guard payload.readableBytes <= DERPLimits.maxPacketSize else { throw DERPError.packetTooLarge(payload.readableBytes) }
            return .forwardPacket(source: source, destination: destination, packet: payload)
        case .closePeer:
            try exactly(DERPLimits.keyLength)  // Tailscale: "handleFrameClosePeer wrong size"
            return .closePeer(try key())
        case .ping, .pong:
            // Tailscale reads the first 8 bytes and discards the rest (kept for future use).
            guard let data = payload.readBytes(length: 8) else {
                throw DERPError.malformedFrame(type: type, reason: "payload of \(payload.readableBytes) bytes, want at least 8")
            }
            return known == .ping ? .ping(data) : .pong(data)
        case .health:
            return .health(payload.readString(length: payload.readableBytes) ?? "")
        case .restarting:
            guard let reconnectIn = payload.readInteger(as: UInt32.self), let tryFor = payload.readInteger(as: UInt32.self) else {
                throw DERPError.malformedFrame(type: type, reason: "short restarting payload")
            }
            return .restarting(reconnectIn: reconnectIn, tryFor: tryFor)
        }
    }
}

/// A DERP protocol violation; each closes only the connection it happened on.
public enum DERPError: Error, Equatable, CustomStringConvertible {
    case frameTooLarge(type: UInt8, length: Int, limit: Int)
    case packetTooLarge(Int)
    case malformedFrame(type: UInt8, reason: String)
    case unexpectedFrame(type: UInt8, during: String)
    case handshakeTimeout
    case badClientInfo(String)
    case badServerInfo(String)
    case meshKeyRequired
    case pingTimeout

    public var description: String {
        switch self {
        case .frameTooLarge(let type, let length, let limit): "frame type 0x\(String(type, radix: 16)) of \(length) bytes exceeds \(limit)"
        case .packetTooLarge(let length): "packet of \(length) bytes exceeds \(DERPLimits.maxPacketSize)"
        case .malformedFrame(let type, let reason): "malformed frame type 0x\(String(type, radix: 16)): \(reason)"
        case .unexpectedFrame(let type, let during): "unexpected frame type 0x\(String(type, radix: 16)) during \(during)"
        case .handshakeTimeout: "no ClientInfo within the handshake deadline"
        case .badClientInfo(let reason): "bad ClientInfo: \(reason)"
        case .badServerInfo(let reason): "bad ServerInfo: \(reason)"
        case .meshKeyRequired: "this frame needs the mesh key"
        case .pingTimeout: "no Pong before the deadline"
        }
    }
}
