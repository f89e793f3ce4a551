import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// A node's end of the stream transport: one `MeshConnection` per peer, made by whichever side sends first,
/// matched to packets by the epochs in their headers (see `MeshStreamTransport`). Loop-confined.
///
/// `@unchecked Sendable`: every method runs on `eventLoop`; the public async API lives on `MeshNode`.
public final class MeshStreamMultiplexer: MeshConnectionOwner, @unchecked Sendable {
    let localKey: NodePublicKey
    let eventLoop: any EventLoop
    let parent: (any Channel)?
    let parameters: MeshStreamTransport.Parameters
    /// Sends UDP payloads of the stream transport to a peer.
    private let send: ([ByteBuffer], NodePublicKey) -> Void
    private(set) var connections: [NodePublicKey: MeshConnection] = [:]
    var acceptor: ((MeshStreamRequest) -> MeshStreamDecision)?
    /// When we last told each peer "no such connection", so a flood of stale packets gets few replies.
    private var lastUnknownReply: [NodePublicKey: NIODeadline] = [:]
    static let unknownReplyInterval: TimeAmount = .milliseconds(100)
    /// Packets that did not parse as the stream transport (wrong version, truncated header).
    private(set) var malformedPackets = 0

    init(localKey: NodePublicKey, eventLoop: any EventLoop, parent: (any Channel)?, parameters: MeshStreamTransport.Parameters,
         send: @escaping ([ByteBuffer], NodePublicKey) -> Void) {
        (self.localKey, self.eventLoop, self.parent, self.parameters, self.send) = (localKey, eventLoop, parent, parameters, send)
    }

    /// A datagram for the stream port from `peer` (authenticated by WireGuard).
    func receive(_ datagram: ByteBuffer, from peer: NodePublicKey) {
        var payload = datagram
        guard let header = MeshStreamPacketHeader.decode(from: &payload) else {
            malformedPackets += 1
            return
        }
        if header.sourceEpoch == 0 {
            // A stateless "no such connection" reply to one of ours: the peer lost our connection's state.
            if let connection = connections[peer], header.destinationEpoch == connection.localEpoch {
                connection.close(.peerRestarted, code: nil, notifyPeer: false)
            }
            return
        }
        if let connection = connections[peer] {
            let known = connection.remoteEpoch
            if known == 0 || header.sourceEpoch == known {
                guard header.destinationEpoch == 0 || header.destinationEpoch == connection.localEpoch else { return }  // for an older connection of ours
                connection.remoteEpoch = header.sourceEpoch
                return connection.receive(header, frames: payload)
            }
            guard header.sourceEpoch > known else { return }  // a late packet from the peer's previous life
            connection.close(.peerRestarted, code: nil, notifyPeer: false)
        }
        guard header.destinationEpoch == 0 else { return replyUnknown(to: peer, header: header) }
        let connection = makeConnection(to: peer)
        connection.remoteEpoch = header.sourceEpoch
        connection.receive(header, frames: payload)
    }

    private func replyUnknown(to peer: NodePublicKey, header: MeshStreamPacketHeader) {
        let now = eventLoop.now
        if let last = lastUnknownReply[peer], now - last < Self.unknownReplyInterval { return }
        lastUnknownReply[peer] = now
        var buffer = ByteBufferAllocator().buffer(capacity: 48)
        MeshStreamPacketHeader(sourceEpoch: 0, destinationEpoch: header.sourceEpoch, packetNumber: 0).encode(into: &buffer)
        StreamFrame.connectionClose(errorCode: MeshTransportErrorCode.unknownConnection.rawValue, frameType: 0, reason: "no such connection").encode(into: &buffer)
        send([buffer], peer)
    }

    private func makeConnection(to peer: NodePublicKey) -> MeshConnection {
        let connection = MeshConnection(peer: peer, localKey: localKey, eventLoop: eventLoop, parent: parent, parameters: parameters, epoch: Self.newEpoch(), owner: self)
        connections[peer] = connection
        return connection
    }

    /// Opens a stream to `peer`, making the connection if there is none; the first packet carries the service
    /// header and whatever the initializer's pipeline writes.
    func openStream<Output: Sendable>(to peer: NodePublicKey, service: MeshService, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>) -> EventLoopFuture<Output> {
        let connection = connections[peer] ?? makeConnection(to: peer)
        return connection.openStream(service: service, initializer: initializer)
    }

    func statistics(with peer: NodePublicKey) -> MeshConnectionStatistics? {
        guard let connection = connections[peer] else { return nil }
        var statistics = connection.statistics
        statistics.congestionWindow = connection.congestion.window
        statistics.smoothedRTT = connection.rtt.smoothed
        statistics.hasRTTSample = connection.rtt.hasSample
        return statistics
    }

    /// Closes every connection (the node is stopping); their streams fail with `connectionClosed`.
    func closeAll(reason: String) {
        for connection in connections.values {
            connection.close(.connectionClosed(reason: reason), code: .noError, notifyPeer: true)
        }
    }

    /// Closes the connection with `peer` (it left the mesh); its streams fail with `connectionClosed`.
    func close(peer: NodePublicKey, reason: String) {
        connections[peer]?.close(.connectionClosed(reason: reason), code: .noError, notifyPeer: false)
    }

    // MARK: MeshConnectionOwner

    func transmit(_ datagrams: [ByteBuffer], for connection: MeshConnection) { send(datagrams, connection.peer) }

    func decide(_ request: MeshStreamRequest) -> MeshStreamDecision {
        acceptor?(request) ?? .refuse(reason: "this node accepts no streams")
    }

    func connectionClosed(_ connection: MeshConnection) {
        if connections[connection.peer] === connection { connections[connection.peer] = nil }
    }

    // MARK: Epochs

    private static let lastEpoch = NIOLockedValueBox<UInt64>(0)

    /// Wall-clock nanoseconds, strictly increasing within the process, so a restarted node's epochs are larger
    /// than those of its previous life (as long as the clock does not step back further than the restart took).
    static func newEpoch() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let wall = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
        return lastEpoch.withLockedValue { last in
            last = max(wall, last + 1)
            return last
        }
    }
}
