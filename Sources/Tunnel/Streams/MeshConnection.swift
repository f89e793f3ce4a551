import NIOCore

/// Counters of one mesh connection, for tests, benchmarks and metrics.
public struct MeshConnectionStatistics: Sendable, Equatable {
    public var packetsSent = 0, packetsReceived = 0, packetsLost = 0, duplicatesReceived = 0
    public var bytesRetransmitted = 0
    public var congestionWindow = 0
    public var smoothedRTT: Duration = .zero
    /// Whether `smoothedRTT` was measured; before the first sample it is RFC 9002's initial guess.
    public var hasRTTSample = false
}

/// What a connection needs from the node that owns it. Called on the connection's event loop.
protocol MeshConnectionOwner: AnyObject {
    /// Sends stream-transport datagrams (UDP payloads) to the connection's peer.
    func transmit(_ datagrams: [ByteBuffer], for connection: MeshConnection)
    /// The listener's decision for a stream the peer opened.
    func decide(_ request: MeshStreamRequest) -> MeshStreamDecision
    /// The connection closed; forget it.
    func connectionClosed(_ connection: MeshConnection)
}

/// The mesh connection to one peer: routes frames to streams by id, creates the streams the peer opens, and
/// drives the pure state machines (flow control, loss detection, congestion) from packets and timers.
/// `@unchecked Sendable`: loop-confined, every method runs on `eventLoop` (timers and deferred sends too).
final class MeshConnection: @unchecked Sendable {
    let peer: NodePublicKey
    let eventLoop: any EventLoop
    let allocator = ByteBufferAllocator()
    /// The node's socket channel, the streams' `parent`.
    let parent: (any Channel)?
    let parameters: MeshStreamTransport.Parameters
    let localEpoch: UInt64
    /// 0 until the peer's first packet.
    var remoteEpoch: UInt64 = 0
    /// Weak: a connection outlives its multiplexer in the timer and send tasks already queued on the loop when the
    /// node goes away, and those must find nobody to call rather than a freed object.
    weak var owner: (any MeshConnectionOwner)?
    let clock: LoopClock
    let limits = CongestionLimits(maxDatagramSize: MeshStreamTransport.maxDatagramSize)

    // Packets and recovery.
    var nextPacketNumber: UInt64 = 0
    var received = PacketNumberSet()
    var largestReceivedAt: ContinuousClock.Instant?
    /// Ack-eliciting packets received since our last ACK.
    var unacknowledgedEliciting = 0
    var ackNow = false
    var ackDeadline: ContinuousClock.Instant?
    var loss = LossDetector<[SentFrame]>()
    var rtt = RTTEstimator()
    var congestion: any CongestionController
    var pacer: Pacer
    /// Set when the pacer held back an ack-eliciting packet: when to try again.
    var pacedUntil: ContinuousClock.Instant?
    /// The sender ran out of data (rather than window or pacing) in its last pass: acknowledgements then say
    /// nothing about spare capacity (RFC 9002 §7.8).
    var applicationLimited = true
    var probeCount = 0
    var probesPending = 0
    var pingPending = false
    var lastElicitingSentAt: ContinuousClock.Instant?
    var lastSentAt: ContinuousClock.Instant
    /// Idle timer start (RFC 9000 §10.1): the last receive, or the first ack-eliciting send after it.
    var idleStart: ContinuousClock.Instant
    var sentSinceReceive = false
    var sendScheduled = false
    /// Streams with new inbound data, delivered together at the end of the loop's turn (`streamHasInbound`).
    var inboundPending: [MeshStreamChannel] = []
    var timer: Scheduled<Void>?
    var timerDeadline: NIODeadline?
    private(set) var closedWith: MeshStreamError?

    // Streams. Bidirectional ids only: the node with the smaller key opens ids ≡ 0 mod 4, the other ≡ 1.
    var streams: [UInt64: MeshStreamChannel] = [:]
    let localParity: UInt64
    var openedLocal: UInt64 = 0
    var localStreamLimit: UInt64
    /// Opens past the peer's MAX_STREAMS, in order: each runs (nil) once the peer raises the limit, or fails with
    /// the connection's error. A burst of requests (640 HTTP/2 streams to one app) waits instead of failing.
    private var waitingOpens = CircularBuffer<(MeshStreamError?) -> Void>()
    /// Beyond this many waiting opens the next one fails at once: a peer that never raises its limit must not
    /// collect unbounded work.
    static let maxWaitingOpens = 4096
    var openedByPeer: UInt64 = 0
    var peerStreamLimit: UInt64
    var maxStreamsPending = false
    /// The stream limit the peer was last sent (MAX_STREAMS).
    var advertisedStreamLimit: UInt64
    var sendQueue = CircularBuffer<UInt64>(initialCapacity: 16)
    var inSendQueue = Set<UInt64>()
    var retransmissions = CircularBuffer<PendingStreamData>(initialCapacity: 16)
    var control: [StreamFrame] = []
    var maxDataPending = false
    var maxStreamDataPending = Set<UInt64>()
    var connectionSendCredit: SendCredit
    var connectionReceiveCredit: ReceiveCredit
    /// Sum over streams of the highest offset received: what connection-level flow control counts.
    var connectionReceived: UInt64 = 0

    var statistics = MeshConnectionStatistics()

    /// What a sent packet carried that must be repeated if it is lost.
    enum SentFrame: Sendable {
        case stream(PendingStreamData)
        case maxData, maxStreams
        case maxStreamData(id: UInt64)
        case control(StreamFrame)
    }

    struct PendingStreamData: Sendable {
        var id: UInt64, offset: UInt64, data: ByteBuffer, fin: Bool
    }

    init(peer: NodePublicKey, localKey: NodePublicKey, eventLoop: any EventLoop, parent: (any Channel)?, parameters: MeshStreamTransport.Parameters,
         epoch: UInt64, owner: any MeshConnectionOwner) {
        (self.peer, self.eventLoop, self.parent, self.parameters, self.localEpoch, self.owner) = (peer, eventLoop, parent, parameters, epoch, owner)
        self.clock = LoopClock(loop: eventLoop)
        self.congestion = parameters.congestion.makeController(limits: limits)
        self.pacer = Pacer(limits: limits)
        self.localParity = localKey.bytes.lexicographicallyPrecedes(peer.bytes) ? 0 : 1
        (self.localStreamLimit, self.peerStreamLimit) = (parameters.maxConcurrentStreams, parameters.maxConcurrentStreams)
        self.advertisedStreamLimit = parameters.maxConcurrentStreams
        self.connectionSendCredit = SendCredit(limit: parameters.connectionWindow)
        self.connectionReceiveCredit = ReceiveCredit(window: parameters.connectionWindow)
        let now = clock.now
        (self.lastSentAt, self.idleStart) = (now, now)
    }

    var isClosed: Bool { closedWith != nil }

    // MARK: Opening streams

    func openStream<Output: Sendable>(service: MeshService, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>) -> EventLoopFuture<Output> {
        if let closedWith { return eventLoop.makeFailedFuture(closedWith) }
        guard openedLocal < localStreamLimit else {
            guard waitingOpens.count < Self.maxWaitingOpens else { return eventLoop.makeFailedFuture(MeshStreamError.tooManyStreams) }
            let promise = eventLoop.makePromise(of: Output.self)
            waitingOpens.append { [unowned self] error in
                if let error {
                    promise.fail(error)
                } else {
                    openStream(service: service, initializer: initializer).cascade(to: promise)
                }
            }
            return promise.futureResult
        }
        let id = openedLocal << 2 | localParity
        openedLocal += 1
        let stream = MeshStreamChannel(id: id, role: .opener, service: service, connection: self, parameters: parameters)
        streams[id] = stream
        return stream.configure(initializer: initializer)
    }

    // MARK: Receiving

    /// One packet from the peer (its epochs already matched to this connection).
    func receive(_ header: MeshStreamPacketHeader, frames payload: ByteBuffer) {
        guard closedWith == nil else { return }
        let now = clock.now
        let frames: [StreamFrame]
        do {
            frames = try StreamFrame.decodeAll(payload)
        } catch {
            return close(.connectionClosed(reason: "peer sent a malformed packet: \(error)"), code: .frameEncoding, notifyPeer: true)
        }
        let number = header.packetNumber
        let largestBefore = received.largest
        statistics.packetsReceived += 1
        guard received.insert(number) else {
            // A duplicate: acknowledge again in case our ACK was lost, use nothing from it.
            statistics.duplicatesReceived += 1
            ackNow = true
            return needsSend()
        }
        (idleStart, sentSinceReceive) = (now, false)
        if largestBefore.map({ number > $0 }) ?? true { largestReceivedAt = now }
        var eliciting = false
        do {
            for frame in frames {
                switch frame {
                case .padding: continue
                case .ack(let ack): acknowledge(ack, now: now)
                case .connectionClose(let code, _, let reason):
                    let error: MeshStreamError =
                        code == MeshTransportErrorCode.unknownConnection.rawValue ? .peerRestarted : .connectionClosed(reason: "closed by peer: \(reason)")
                    return close(error, code: nil, notifyPeer: false)
                default:
                    eliciting = true
                    try handle(frame)
                }
                if closedWith != nil { return }
            }
        } catch let error as ProtocolViolation {
            return close(.connectionClosed(reason: "peer broke the protocol: \(error.reason)"), code: error.code, notifyPeer: true)
        } catch {
            return close(.connectionClosed(reason: "peer broke the protocol: \(error)"), code: .protocolViolation, notifyPeer: true)
        }
        if eliciting {
            unacknowledgedEliciting += 1
            // Out of order (a gap or a late packet) is acknowledged at once so the peer detects loss quickly.
            let inOrder = largestBefore.map { number == $0 + 1 } ?? (number == 0)
            if !inOrder || unacknowledgedEliciting >= parameters.ackElicitingThreshold {
                ackNow = true
            } else if ackDeadline == nil {
                ackDeadline = now + parameters.maxAckDelay
            }
        }
        needsSend()
    }

    struct ProtocolViolation: Error {
        let code: MeshTransportErrorCode
        let reason: String
    }

    private func handle(_ frame: StreamFrame) throws {
        switch frame {
        case .padding, .ping, .ack, .connectionClose, .dataBlocked, .streamDataBlocked:
            break
        case .stream(let id, let offset, let data, let fin):
            guard let stream = try stream(id), !stream.resetReceived else { return }
            let end = offset + UInt64(data.readableBytes)
            let before = stream.reassembly.highestReceived
            do {
                try stream.receiveCredit.received(upTo: end)
                if end > before {
                    connectionReceived += end - before
                    try connectionReceiveCredit.received(upTo: connectionReceived)
                }
            } catch {
                throw ProtocolViolation(code: .flowControl, reason: "stream \(id) sent past its flow-control limit")
            }
            do {
                try stream.reassembly.receive(data, at: offset, fin: fin)
            } catch {
                throw ProtocolViolation(code: .finalSize, reason: "stream \(id): \(error)")
            }
            stream.inboundChanged()
        case .resetStream(let id, let code, let finalSize):
            guard let stream = try stream(id), !stream.resetReceived else { return }
            let highest = stream.reassembly.highestReceived
            guard finalSize >= highest, stream.reassembly.finalSize.map({ $0 == finalSize }) ?? true else {
                throw ProtocolViolation(code: .finalSize, reason: "stream \(id) reset with a final size below its data")
            }
            do { try stream.receiveCredit.received(upTo: finalSize) } catch {
                throw ProtocolViolation(code: .flowControl, reason: "stream \(id) reset past its flow-control limit")
            }
            connectionReceived += finalSize - highest
            do { try connectionReceiveCredit.received(upTo: connectionReceived) } catch {
                throw ProtocolViolation(code: .flowControl, reason: "stream \(id) reset past the connection's limit")
            }
            // Bytes that will never be read still count as consumed, or the peer's connection credit leaks.
            streamConsumed(nil, bytes: Int(finalSize - stream.consumedBytes))
            stream.peerReset(code: code)
        case .stopSending(let id, let code):
            try stream(id)?.peerStoppedSending(code: code)
        case .maxData(let limit):
            connectionSendCredit.raise(to: limit)
            if !sendQueue.isEmpty { needsSend() }
        case .maxStreamData(let id, let limit):
            try stream(id)?.creditRaised(to: limit)
        case .maxStreams(let count):
            localStreamLimit = max(localStreamLimit, count)
            while openedLocal < localStreamLimit, let next = waitingOpens.popFirst() { next(nil) }
        }
    }

    /// The stream with `id`, creating the peer's new streams (and any lower ids it skipped: they are implicitly
    /// open, RFC 9000 §3.2); nil for a stream already finished, whose late frames are ignored.
    private func stream(_ id: UInt64) throws -> MeshStreamChannel? {
        if let stream = streams[id] { return stream }
        guard id & 0x2 == 0 else { throw ProtocolViolation(code: .streamState, reason: "unidirectional stream \(id)") }
        let index = id >> 2
        if id & 0x1 == localParity {
            guard index < openedLocal else { throw ProtocolViolation(code: .streamState, reason: "stream \(id) was never opened") }
            return nil
        }
        guard index >= openedByPeer else { return nil }
        guard index < peerStreamLimit else { throw ProtocolViolation(code: .streamLimit, reason: "stream \(id) beyond the limit of \(peerStreamLimit)") }
        while openedByPeer <= index {
            let newID = openedByPeer << 2 | (1 - localParity)
            streams[newID] = MeshStreamChannel(id: newID, role: .listener, service: nil, connection: self, parameters: parameters)
            openedByPeer += 1
        }
        return streams[id]
    }

    // MARK: Acknowledgements and loss

    private func acknowledge(_ ack: AckFrame, now: ContinuousClock.Instant) {
        guard ack.largest < nextPacketNumber else { return }  // acknowledges what we never sent: ignore
        var result = loss.acknowledge(ack, now: now, rtt: rtt, detectLoss: false)
        if let sample = result.rttSample {
            let delay = Duration.microseconds(Int64(clamping: ack.delay << MeshStreamTransport.ackDelayExponent))
            rtt.add(sample: sample, ackDelay: delay, maxAckDelay: parameters.maxAckDelay)
        }
        result.lost = loss.detectLost(now: now, lossDelay: rtt.lossDelay)
        for packet in result.acknowledged {
            congestion.acknowledged(bytes: packet.bytes, sentAt: packet.sentAt, now: now, rtt: rtt, appLimited: applicationLimited)
            for case .stream(let sent) in packet.payload {
                streams[sent.id]?.acknowledged(bytes: sent.data.readableBytes, fin: sent.fin)
            }
        }
        if !result.acknowledged.isEmpty { probeCount = 0 }
        lost(result.lost, now: now)
    }

    func lost(_ packets: [LossDetector<[SentFrame]>.SentPacket], now: ContinuousClock.Instant) {
        guard let newest = packets.last, let oldest = packets.first else { return }
        statistics.packetsLost += packets.count
        for packet in packets {
            for frame in packet.payload {
                switch frame {
                case .stream(let data):
                    guard let stream = streams[data.id], !stream.resetSent else { continue }
                    statistics.bytesRetransmitted += data.data.readableBytes
                    retransmissions.append(data)
                case .maxData: maxDataPending = true
                case .maxStreams: maxStreamsPending = true
                case .maxStreamData(let id):
                    if let stream = streams[id], stream.reassembly.finalSize == nil { maxStreamDataPending.insert(id) }
                case .control(let frame): control.append(frame)
                }
            }
        }
        for packet in packets { congestion.lost(bytes: packet.bytes, sentAt: packet.sentAt, now: now) }
        congestion.congestionEvent(sentAt: newest.sentAt, now: now)
        // Persistent congestion (RFC 9002 §7.6): losses spanning three probe timeouts.
        let span = rtt.probeTimeout(maxAckDelay: parameters.maxAckDelay) * 3
        if rtt.hasSample, newest.sentAt - oldest.sentAt > span { congestion.persistentCongestion() }
    }

    // MARK: Called by streams

    func streamHasData(_ stream: MeshStreamChannel) {
        guard closedWith == nil, stream.hasSendableData else { return }
        if inSendQueue.insert(stream.id).inserted { sendQueue.append(stream.id) }
        needsSend()
    }

    /// `bytes` of a stream's data reached the application (or were discarded): return the credit. `stream` is
    /// nil when only the connection's credit moves (a reset's unread remainder).
    func streamConsumed(_ stream: MeshStreamChannel?, bytes: Int) {
        guard bytes > 0 else { return }
        if let stream, stream.receiveCredit.consume(UInt64(bytes)) != nil, stream.reassembly.finalSize == nil {
            maxStreamDataPending.insert(stream.id)
            needsSend()
        }
        if connectionReceiveCredit.consume(UInt64(bytes)) != nil {
            maxDataPending = true
            needsSend()
        }
    }

    func sendReset(_ stream: MeshStreamChannel, code: UInt64, finalSize: UInt64) {
        retransmissions = CircularBuffer(retransmissions.filter { $0.id != stream.id })
        control.append(.resetStream(id: stream.id, errorCode: code, finalSize: finalSize))
        needsSend()
    }

    func sendStopSending(_ stream: MeshStreamChannel, code: UInt64) {
        control.append(.stopSending(id: stream.id, errorCode: code))
        needsSend()
    }

    func decide(_ stream: MeshStreamChannel, service: MeshService) {
        stream.decided(owner?.decide(MeshStreamRequest(peer: peer, service: service)) ?? .refuse(reason: "the node is shutting down"))
    }

    /// Queues `stream` for delivery after everything this turn of the loop reads (tasks run after I/O).
    func streamHasInbound(_ stream: MeshStreamChannel) {
        inboundPending.append(stream)
        guard inboundPending.count == 1 else { return }
        eventLoop.execute {
            let streams = self.inboundPending
            self.inboundPending = []
            for stream in streams { stream.deliverInbound() }
        }
    }

    /// Forgets a stream once both directions are settled and its channel is closed.
    func streamStateChanged(_ stream: MeshStreamChannel) {
        stream.closeIfBothEnded()
        guard stream.isClosed, stream.sendFinished, stream.receiveFinished, streams[stream.id] === stream else { return }
        streams[stream.id] = nil
        maxStreamDataPending.remove(stream.id)
        if stream.id & 0x1 != localParity {
            peerStreamLimit += 1
            maxStreamsPending = true
            // Batched: a packet of its own only once an eighth of the limit has come free.
            if peerStreamLimit - advertisedStreamLimit >= max(1, parameters.maxConcurrentStreams / 8) { needsSend() }
        }
    }

    // MARK: Closing

    /// Ends the connection: every stream fails with `error`. `notifyPeer` sends CONNECTION_CLOSE with `code`.
    func close(_ error: MeshStreamError, code: MeshTransportErrorCode?, notifyPeer: Bool) {
        guard closedWith == nil else { return }
        if notifyPeer, let code {
            let reason: String = if case .connectionClosed(let text) = error { text } else { error.description }
            sendClose(code: code, reason: reason)
        }
        closedWith = error
        // What came before the end is delivered before it (once closed: a handler that reacts cannot close again).
        for stream in streams.values { stream.flushInbound() }
        timer?.cancel()
        timer = nil
        let open = streams.values
        streams = [:]
        _ = loss.removeAll()
        for stream in open { stream.connectionEnded(error) }
        while let next = waitingOpens.popFirst() { next(error) }
        owner?.connectionClosed(self)
    }
}
