import NIOCore

/// The mesh's stream transport: one connection per pair of nodes, carried in UDP datagrams to `port` inside
/// the WireGuard mesh, with RFC 9000's streams and RFC 9002's recovery. No handshake and no second layer of
/// crypto: WireGuard already authenticates the peer and encrypts, so both sides start from the fixed
/// parameters below and the first packet carries data.
///
/// Packet layout (all inside one UDP datagram):
///
///     version        u8      = 1
///     source epoch   u64 BE  the sender's connection epoch
///     dest epoch     u64 BE  the receiver's epoch as the sender knows it; 0 before it has heard from it
///     packet number  varint  per connection and direction, strictly increasing, never reused
///     frames         StreamFrame…
///
/// An epoch is a wall-clock nanosecond count taken when a connection starts, so a restarted peer's new
/// connection has a larger epoch than its old one: a larger source epoch means "I restarted" and replaces
/// the connection; a smaller one is a stale packet and is dropped.
public enum MeshStreamTransport {
    /// The UDP port of the stream transport on every mesh address.
    public static let port: UInt16 = 7447
    public static let version: UInt8 = 1
    /// version + two epochs; the packet number follows.
    static let fixedHeaderLength = 1 + 8 + 8
    /// The tunnel MTU (DESIGN: 1280) less the IPv6 (40) and UDP (8) headers: the largest datagram we send.
    public static let maxDatagramSize = 1280 - 40 - 8
    /// ACK delay is sent in units of 2^3 µs (RFC 9000 ack_delay_exponent default).
    static let ackDelayExponent: UInt64 = 3
    /// Room left for frames once the header (packet number ≤ 8 bytes) is written.
    static let maxFramesLength = maxDatagramSize - fixedHeaderLength - 8

    /// Our fixed transport parameters; both sides use the same ones (there is no handshake to exchange them).
    public struct Parameters: Sendable, Equatable {
        /// How far past what the application has read the peer may send on one stream.
        public var streamWindow: UInt64 = 4 << 20
        /// The same for all streams of a connection together (bounds a peer's memory use).
        public var connectionWindow: UInt64 = 16 << 20
        /// Peer-opened streams that may be open at once; MAX_STREAMS raises the limit as they finish.
        public var maxConcurrentStreams: UInt64 = 512
        /// The most an ACK is held back (RFC 9000 max_ack_delay).
        public var maxAckDelay: Duration = .milliseconds(25)
        /// Acknowledge at once after this many ack-eliciting packets (RFC 9000 §13.2.2 recommends 2).
        public var ackElicitingThreshold = 2
        /// A connection that hears nothing for this long is closed and its streams fail.
        public var idleTimeout: Duration = .seconds(30)
        /// While streams are open, a PING is sent after this long without sending, so a live peer keeps
        /// answering and an idle terminal is not mistaken for a dead peer.
        public var keepAliveInterval: Duration = .seconds(10)
        public var congestion: CongestionAlgorithm = .bbr

        public init() {}
    }
}

/// A stream-transport packet's header.
struct MeshStreamPacketHeader: Equatable {
    var sourceEpoch: UInt64
    var destinationEpoch: UInt64
    var packetNumber: UInt64

    func encode(into buffer: inout ByteBuffer) {
        buffer.writeInteger(MeshStreamTransport.version)
        buffer.writeInteger(sourceEpoch)
        buffer.writeInteger(destinationEpoch)
        VarInt.write(packetNumber, to: &buffer)
    }

    /// Reads the header, leaving `buffer` at the first frame; nil for another version or a short packet.
    static func decode(from buffer: inout ByteBuffer) -> MeshStreamPacketHeader? {
        guard buffer.readInteger(as: UInt8.self) == MeshStreamTransport.version,
            let source = buffer.readInteger(as: UInt64.self), let destination = buffer.readInteger(as: UInt64.self),
            let number = VarInt.read(from: &buffer)
        else { return nil }
        return MeshStreamPacketHeader(sourceEpoch: source, destinationEpoch: destination, packetNumber: number)
    }
}

/// Transport error codes carried in CONNECTION_CLOSE (RFC 9000 §20.1 numbering where one exists).
enum MeshTransportErrorCode: UInt64 {
    case noError = 0x0
    case flowControl = 0x3
    case streamLimit = 0x4
    case streamState = 0x5
    case finalSize = 0x6
    case frameEncoding = 0x7
    case protocolViolation = 0xa
    /// Ours: the receiver has no connection with that epoch (it restarted or timed the connection out).
    case unknownConnection = 0x100
}

/// Why a stream or connection ended, as its channel reports it (`errorCaught`) before closing.
public enum MeshStreamError: Error, Equatable, CustomStringConvertible {
    /// The peer reset the stream (RESET_STREAM) with this application error code.
    case reset(code: UInt64)
    /// The peer asked us to stop sending (STOP_SENDING).
    case stopSending(code: UInt64)
    /// The listening side refused the service.
    case refused(service: String, reason: String)
    /// Nothing heard from the peer for the idle timeout.
    case idleTimeout
    /// The peer restarted or dropped the connection; its state is gone.
    case peerRestarted
    /// The connection was closed (by us, by the peer, or because the peer broke the protocol).
    case connectionClosed(reason: String)
    /// The peer allows no more streams right now.
    case tooManyStreams
    /// The node has no route (allowed IPs) to that peer.
    case unknownPeer

    public var description: String {
        switch self {
        case .reset(let code): "stream reset by peer (code \(code))"
        case .stopSending(let code): "peer stopped reading (code \(code))"
        case .refused(let service, let reason): "service \(service) refused: \(reason)"
        case .idleTimeout: "mesh connection idle timeout"
        case .peerRestarted: "peer restarted"
        case .connectionClosed(let reason): "mesh connection closed: \(reason)"
        case .tooManyStreams: "too many open streams to this peer"
        case .unknownPeer: "no route to that peer"
        }
    }
}
