import NIOConcurrencyHelpers
import NIOCore

/// Outbound user events a stream understands (`channel.triggerUserOutboundEvent`).
public enum MeshStreamEvent: Sendable {
    /// Abort: RESET_STREAM with `code` (buffered data is dropped) and STOP_SENDING if the input is still open.
    case reset(code: UInt64)
}

/// One mesh stream as a NIO `Channel`, a child of its `MeshConnection` (shaped like nio-http2's
/// `HTTP2StreamChannel`):
/// - Reads wait for `read0()`; `autoRead` (on by default) asks again after each read. Receive credit goes back
///   to the peer only when bytes reach the pipeline, so a slow reader slows the sender end to end.
/// - Writes wait for `flush0()`, then queue for the connection, which takes them as peer credit and the
///   congestion window allow. The channel is writable while that queue is under its high watermark.
/// - `close(mode: .output)` sends FIN after the queued bytes; a peer FIN arrives as `ChannelEvent.inputClosed`
///   (or closes the channel when `allowRemoteHalfClosure` is off). `close()` is TCP-like: queued bytes and a FIN
///   still go out, unread input is refused with STOP_SENDING. `MeshStreamEvent.reset` aborts.
///
/// `@unchecked Sendable`: every mutable field is touched only on `eventLoop` (the connection's); `flags` is
/// locked because `isActive` and `isWritable` may be read from any thread.
final class MeshStreamChannel: Channel, ChannelCore, @unchecked Sendable {
    let id: UInt64
    let eventLoop: any EventLoop
    let allocator: ByteBufferAllocator
    let parent: (any Channel)?
    private let connection: MeshConnection
    private var _pipeline: ChannelPipeline!
    private let closePromise: EventLoopPromise<Void>
    var pipeline: ChannelPipeline { _pipeline }
    var closeFuture: EventLoopFuture<Void> { closePromise.futureResult }
    var localAddress: SocketAddress? { nil }
    var remoteAddress: SocketAddress? { nil }
    var _channelCore: any ChannelCore { self }

    private struct Flags { var isActive = false, isWritable = true }
    private let flags = NIOLockedValueBox(Flags())
    var isActive: Bool { flags.withLockedValue { $0.isActive } }
    var isWritable: Bool { flags.withLockedValue { $0.isWritable } }

    /// Who opened the stream decides which preamble comes first on the input.
    enum Role { case opener, listener }
    let role: Role
    private(set) var service: MeshService?

    private enum Lifecycle { case initializing, active, closed }
    private var lifecycle = Lifecycle.initializing
    private var registered = false
    /// The preamble (service header, or the listener's verdict) has been read off the input.
    private var preambleDone = false
    private var preamble: ByteBuffer

    // Options.
    private var autoRead = true
    private var allowRemoteHalfClosure = true
    private var waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 64 << 10, high: 256 << 10)

    // MARK: Send side (owned by the channel, drained by the connection)
    private var unflushed = MarkedCircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)>(initialCapacity: 8)
    private var queued = CircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)>(initialCapacity: 8)
    private var queuedBytes = 0
    /// Unflushed plus queued: what the watermarks judge.
    private var bufferedBytes = 0
    var sendCredit: SendCredit
    /// The offset of the next new byte.
    private(set) var sendOffset: UInt64 = 0
    private var finQueued = false
    private(set) var finSent = false
    private var acknowledgedBytes: UInt64 = 0
    private var finAcknowledged = false
    private(set) var resetSent = false

    // MARK: Receive side
    var reassembly = ReassemblyBuffer()
    var receiveCredit: ReceiveCredit
    /// Pulled out of reassembly (past the preamble) but not yet delivered.
    private var pendingRead: ByteBuffer?
    /// Waiting in the connection's list for `deliverInbound`.
    private var inboundQueued = false
    private var unsatisfiedRead = false
    private var inputClosedFired = false
    /// We sent STOP_SENDING: input is discarded until the peer's RESET_STREAM settles the final size.
    private(set) var stopSendingSent = false
    private(set) var resetReceived = false
    /// Bytes handed to the pipeline or discarded, i.e. returned as connection credit.
    private(set) var consumedBytes: UInt64 = 0

    init(id: UInt64, role: Role, service: MeshService?, connection: MeshConnection, parameters: MeshStreamTransport.Parameters) {
        (self.id, self.role, self.service, self.connection) = (id, role, service, connection)
        self.eventLoop = connection.eventLoop
        self.allocator = connection.allocator
        self.parent = connection.parent
        self.closePromise = connection.eventLoop.makePromise()
        self.sendCredit = SendCredit(limit: parameters.streamWindow)
        self.receiveCredit = ReceiveCredit(window: parameters.streamWindow)
        self.preamble = connection.allocator.buffer(capacity: 0)
        self._pipeline = ChannelPipeline(channel: self)
    }

    // MARK: Lifecycle

    /// Opener: queue the service header, run the initializer, then go active. Listener: the initializer runs
    /// once the header is read and accepted (`accept`).
    func configure<Output: Sendable>(initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>) -> EventLoopFuture<Output> {
        if role == .opener, let service {
            var header = allocator.buffer(capacity: 16)
            service.encodeHeader(into: &header)
            enqueue(header, promise: nil)
        }
        registered = true
        pipeline.fireChannelRegistered()
        return initializer(self).flatMapErrorThrowing { error in
            // A service that cannot start (say, a refused TCP connect) answers with a refusal naming the cause.
            if self.role == .listener { self.refuse(reason: "\(error)") } else { self.abort(code: 0, error: error) }
            throw error
        }.map { output in
            if self.role == .listener { self.sendVerdict(.accepted) }
            self.activate()
            return output
        }
    }

    /// The verdict goes before anything the pipeline wrote while it was being set up.
    private func sendVerdict(_ verdict: MeshServiceVerdict) {
        var buffer = allocator.buffer(capacity: 16)
        verdict.encode(into: &buffer)
        enqueue(buffer, promise: nil, first: true)
    }

    private func refuse(reason: String) {
        sendVerdict(.refused(reason: reason))
        finQueued = true
        // The opener resets its side when it reads the refusal; a STOP_SENDING could overtake the verdict.
        stopReceiving(code: 0, notifyPeer: false)
        finishClose(error: nil)
        connection.streamHasData(self)
    }

    private func activate() {
        guard lifecycle == .initializing else { return }
        lifecycle = .active
        flags.withLockedValue { $0.isActive = true }
        pipeline.fireChannelActive()
        if autoRead { pipeline.read() }
        pullInbound()
        connection.streamHasData(self)
    }

    private func finishClose(error: (any Error)?) {
        guard lifecycle != .closed else { return }
        let wasActive = lifecycle == .active
        lifecycle = .closed
        flags.withLockedValue { $0.isActive = false }
        failUnflushed(ChannelError.ioOnClosedChannel)
        if let error { pipeline.fireErrorCaught(error) }
        if wasActive { pipeline.fireChannelInactive() }
        if registered { pipeline.fireChannelUnregistered() }
        eventLoop.execute {
            self.removeHandlers(pipeline: self.pipeline)
            self.closePromise.succeed(())
        }
        connection.streamStateChanged(self)
    }

    // MARK: ChannelCore

    func localAddress0() throws -> SocketAddress { throw ChannelError.operationUnsupported }
    func remoteAddress0() throws -> SocketAddress { throw ChannelError.operationUnsupported }
    func register0(promise: EventLoopPromise<Void>?) { promise?.fail(ChannelError.operationUnsupported) }
    func registerAlreadyConfigured0(promise: EventLoopPromise<Void>?) { promise?.fail(ChannelError.operationUnsupported) }
    func bind0(to: SocketAddress, promise: EventLoopPromise<Void>?) { promise?.fail(ChannelError.operationUnsupported) }
    func connect0(to: SocketAddress, promise: EventLoopPromise<Void>?) { promise?.fail(ChannelError.operationUnsupported) }
    func channelRead0(_ data: NIOAny) {}
    func errorCaught0(error: any Error) {}

    func write0(_ data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard lifecycle != .closed, !finQueued, !resetSent else {
            promise?.fail(lifecycle == .closed ? ChannelError.ioOnClosedChannel : ChannelError.outputClosed)
            return
        }
        let buffer = unwrapData(data, as: ByteBuffer.self)
        unflushed.append((buffer, promise))
        bufferedBytes += buffer.readableBytes
        updateWritability()
    }

    func flush0() {
        unflushed.mark()
        guard unflushed.hasMark else { return }
        while unflushed.hasMark, let (buffer, promise) = unflushed.popFirst() {
            guard buffer.readableBytes > 0 else {
                // Nothing to send: done now (an empty entry in the queue would look like a stall).
                promise?.succeed(())
                continue
            }
            queued.append((buffer, promise))
            queuedBytes += buffer.readableBytes
        }
        if lifecycle == .active { connection.streamHasData(self) }
    }

    func read0() {
        guard lifecycle != .closed else { return }
        unsatisfiedRead = true
        pullInbound()
    }

    func close0(error: any Error, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch mode {
        case .output:
            guard lifecycle != .closed, !finQueued, !resetSent else {
                promise?.fail(ChannelError.outputClosed)
                return
            }
            flush0()
            finQueued = true
            connection.streamHasData(self)
            promise?.succeed(())
            connection.streamStateChanged(self)
        case .input:
            stopReceiving(code: 0)
            promise?.succeed(())
        case .all:
            guard lifecycle != .closed else {
                promise?.fail(ChannelError.alreadyClosed)
                return
            }
            guard lifecycle == .active else {
                // Closed before it ever went active (its initializer is still running): nothing of ours was
                // sent that a FIN could end cleanly, so abort.
                abort(code: 0, error: nil)
                promise?.succeed(())
                return
            }
            // TCP-like: what was flushed still goes out, followed by FIN; unread input is refused.
            if !finQueued, !resetSent {
                failUnflushed(ChannelError.ioOnClosedChannel)
                finQueued = true
                connection.streamHasData(self)
            }
            stopReceiving(code: 0)
            finishClose(error: nil)
            promise?.succeed(())
        }
    }

    func triggerUserOutboundEvent0(_ event: Any, promise: EventLoopPromise<Void>?) {
        guard case .reset(let code) = event as? MeshStreamEvent else {
            promise?.fail(ChannelError.operationUnsupported)
            return
        }
        abort(code: min(code, VarInt.maximum), error: nil)
        promise?.succeed(())
    }

    /// RESET_STREAM (dropping queued data), STOP_SENDING, close.
    func abort(code: UInt64, error: (any Error)?) {
        resetSending(code: code)
        stopReceiving(code: code)
        finishClose(error: error)
    }

    private func resetSending(code: UInt64) {
        guard !resetSent, !(finSent && queuedBytes == 0 && finAcknowledged) else { return }
        resetSent = true
        failUnflushed(ChannelError.ioOnClosedChannel)
        while let (_, promise) = queued.popFirst() { promise?.fail(ChannelError.ioOnClosedChannel) }
        queuedBytes = 0
        bufferedBytes = 0
        connection.sendReset(self, code: code, finalSize: sendOffset)
    }

    /// Discards unread input; tells the peer to stop (STOP_SENDING) unless `notifyPeer` is false because it
    /// will stop anyway (a refusal).
    private func stopReceiving(code: UInt64, notifyPeer: Bool = true) {
        guard !stopSendingSent, !resetReceived, !reassembly.isComplete || pendingRead != nil else { return }
        stopSendingSent = true
        // What is dropped unread still counts as consumed, or the connection's credit would leak.
        if let dropped = pendingRead.take() { consume(dropped.readableBytes) }
        if !preambleDone {
            consume(preamble.readableBytes)
            preamble.clear()
        }
        discardReceived()
        if notifyPeer, reassembly.finalSize == nil { connection.sendStopSending(self, code: code) }
        connection.streamStateChanged(self)
    }

    // MARK: Options

    func setOption<Option: ChannelOption>(_ option: Option, value: Option.Value) -> EventLoopFuture<Void> {
        if eventLoop.inEventLoop { return eventLoop.makeCompletedFuture { try setOption0(option, value: value) } }
        return eventLoop.submit { try self.setOption0(option, value: value) }
    }

    func getOption<Option: ChannelOption>(_ option: Option) -> EventLoopFuture<Option.Value> {
        if eventLoop.inEventLoop { return eventLoop.makeCompletedFuture { try getOption0(option) } }
        return eventLoop.submit { try self.getOption0(option) }
    }

    fileprivate func setOption0<Option: ChannelOption>(_ option: Option, value: Option.Value) throws {
        eventLoop.preconditionInEventLoop()
        switch option {
        case is ChannelOptions.Types.AutoReadOption:
            autoRead = value as! Bool
            if autoRead, lifecycle == .active { pipeline.read() }
        case is ChannelOptions.Types.AllowRemoteHalfClosureOption:
            allowRemoteHalfClosure = value as! Bool
        case is ChannelOptions.Types.WriteBufferWaterMarkOption:
            waterMark = value as! ChannelOptions.Types.WriteBufferWaterMark
            updateWritability()
        default:
            throw ChannelError.operationUnsupported
        }
    }

    fileprivate func getOption0<Option: ChannelOption>(_ option: Option) throws -> Option.Value {
        eventLoop.preconditionInEventLoop()
        switch option {
        case is ChannelOptions.Types.AutoReadOption: return autoRead as! Option.Value
        case is ChannelOptions.Types.AllowRemoteHalfClosureOption: return allowRemoteHalfClosure as! Option.Value
        case is ChannelOptions.Types.WriteBufferWaterMarkOption: return waterMark as! Option.Value
        default: throw ChannelError.operationUnsupported
        }
    }

    private struct SynchronousOptions: NIOSynchronousChannelOptions {
        let channel: MeshStreamChannel
        func setOption<Option: ChannelOption>(_ option: Option, value: Option.Value) throws { try channel.setOption0(option, value: value) }
        func getOption<Option: ChannelOption>(_ option: Option) throws -> Option.Value { try channel.getOption0(option) }
    }

    var syncOptions: (any NIOSynchronousChannelOptions)? { SynchronousOptions(channel: self) }

    // MARK: Writes, as the connection takes them

    private func updateWritability() {
        let writable = flags.withLockedValue { $0.isWritable }
        if writable, bufferedBytes > waterMark.high {
            flags.withLockedValue { $0.isWritable = false }
            pipeline.fireChannelWritabilityChanged()
        } else if !writable, bufferedBytes < waterMark.low {
            flags.withLockedValue { $0.isWritable = true }
            pipeline.fireChannelWritabilityChanged()
        }
    }

    /// Queues bytes for the connection past the watermark check (preambles); `first` puts them ahead of the rest.
    private func enqueue(_ buffer: ByteBuffer, promise: EventLoopPromise<Void>?, first: Bool = false) {
        if first { queued.prepend((buffer, promise)) } else { queued.append((buffer, promise)) }
        queuedBytes += buffer.readableBytes
        bufferedBytes += buffer.readableBytes
    }

    private func failUnflushed(_ error: any Error) {
        while let (buffer, promise) = unflushed.popFirst() {
            bufferedBytes -= buffer.readableBytes
            promise?.fail(error)
        }
    }

    /// New data (or a bare FIN) is ready and the peer's stream credit allows some of it.
    var hasSendableData: Bool {
        guard !resetSent, lifecycle != .initializing else { return false }
        if queuedBytes > 0 { return sendCredit.available > 0 }
        return finQueued && !finSent
    }

    /// Only the FIN is left to send (it needs no credit).
    var hasOnlyFinToSend: Bool { !resetSent && queuedBytes == 0 && finQueued && !finSent }

    /// Both directions ended cleanly (our FIN acknowledged, the peer's delivered): the stream closes itself, as
    /// an HTTP/2 stream does, so nobody has to remember to.
    func closeIfBothEnded() {
        guard lifecycle == .active, inputClosedFired, finAcknowledged, acknowledgedBytes == sendOffset else { return }
        finishClose(error: nil)
    }

    /// Takes up to `maxBytes` of new data for a STREAM frame (nil when there is nothing to send).
    func takeData(maxBytes: Int) -> (offset: UInt64, data: ByteBuffer, fin: Bool)? {
        guard hasSendableData else { return nil }
        let offset = sendOffset
        let limit = min(maxBytes, Int(min(sendCredit.available, UInt64(Int.max))))
        // Gather queued writes up to the limit, so small writes (a header, then a body) share one frame; a
        // single buffer goes as it is, without a copy.
        var gathered: ByteBuffer?
        var written: [EventLoopPromise<Void>] = []
        var room = limit
        while room > 0, case (var first, let promise)? = queued.first {
            let piece: ByteBuffer
            if first.readableBytes <= room {
                queued.removeFirst()
                piece = first
                if let promise { written.append(promise) }
            } else {
                piece = first.readSlice(length: room)!
                queued[queued.startIndex] = (first, promise)
            }
            room -= piece.readableBytes
            if gathered == nil { gathered = piece } else { gathered!.writeImmutableBuffer(piece) }
        }
        let data = gathered ?? allocator.buffer(capacity: 0)
        queuedBytes -= data.readableBytes
        bufferedBytes -= data.readableBytes
        sendOffset += UInt64(data.readableBytes)
        sendCredit.consume(UInt64(data.readableBytes))
        let fin = finQueued && queuedBytes == 0
        if fin { finSent = true }
        updateWritability()
        // Last: the promises' callbacks may write, close or reset this stream, and must see the state above.
        for promise in written { promise.succeed(()) }
        return (offset, data, fin)
    }

    /// Some of our STREAM data (and maybe the FIN) reached the peer.
    func acknowledged(bytes: Int, fin: Bool) {
        acknowledgedBytes += UInt64(bytes)
        if fin { finAcknowledged = true }
        connection.streamStateChanged(self)
    }

    /// The peer raised our stream credit (MAX_STREAM_DATA).
    func creditRaised(to limit: UInt64) {
        sendCredit.raise(to: limit)
        connection.streamHasData(self)
    }

    /// The peer does not want our data (STOP_SENDING): reset as RFC 9000 §3.5 asks.
    func peerStoppedSending(code: UInt64) {
        flushInbound()
        guard !resetSent, !finAcknowledged else { return }
        resetSending(code: code)
        if lifecycle == .active { pipeline.fireErrorCaught(MeshStreamError.stopSending(code: code)) }
        connection.streamStateChanged(self)
    }

    // MARK: Reads

    /// New STREAM data reached reassembly (already checked against flow control). It reaches the pipeline once
    /// the loop has read every datagram of this turn, joined: a packet at a time, each crossed the pipeline and
    /// the HTTP decoder on it.
    func inboundChanged() {
        guard !inboundQueued else { return }
        inboundQueued = true
        connection.streamHasInbound(self)
    }

    /// The connection's turn for what `inboundChanged` announced. A stream closed meanwhile takes nothing (its
    /// acceptor and initializer must not run now); one the peer reset has had its credit back already.
    func deliverInbound() {
        guard inboundQueued else { return }
        inboundQueued = false
        if !resetReceived {
            if stopSendingSent { discardReceived() } else if lifecycle != .closed { pullInbound() }
        }
        connection.streamStateChanged(self)
    }

    /// Delivers what waits for the end of the turn now: a reset, a STOP_SENDING or the connection's end that came
    /// after it in the same turn must not overtake it.
    func flushInbound() {
        if inboundQueued { deliverInbound() }
    }

    /// The peer reset its side: deliver the error and close.
    func peerReset(code: UInt64) {
        flushInbound()
        guard !resetReceived else { return }
        resetReceived = true
        pendingRead = nil
        if lifecycle == .closed { return connection.streamStateChanged(self) }
        if !resetSent, !finAcknowledged { resetSending(code: code) }
        finishClose(error: MeshStreamError.reset(code: code))
    }

    /// The connection ended under the stream.
    func connectionEnded(_ error: MeshStreamError) {
        failUnflushed(error)
        while let (_, promise) = queued.popFirst() { promise?.fail(error) }
        (queuedBytes, bufferedBytes, resetSent, resetReceived) = (0, 0, true, true)
        finishClose(error: lifecycle == .closed ? nil : error)
    }

    /// Data received on a stream nobody will read is returned as connection credit at once.
    private func discardReceived() {
        while let chunk = reassembly.read() { consume(chunk.readableBytes) }
    }

    private func consume(_ count: Int) {
        consumedBytes += UInt64(count)
        connection.streamConsumed(self, bytes: count)
    }

    /// Reads the preamble, then satisfies an outstanding read from what is contiguous.
    private func pullInbound() {
        if !preambleDone {
            guard readPreamble() else { return }
        }
        guard lifecycle == .active else { return }
        if unsatisfiedRead, let data = pendingRead.take() ?? reassembly.read() {
            unsatisfiedRead = false
            consume(data.readableBytes)
            pipeline.fireChannelRead(data)
            pipeline.fireChannelReadComplete()
            if lifecycle == .active, autoRead { pipeline.read() }
        }
        if lifecycle == .active, pendingRead == nil, reassembly.isComplete, !inputClosedFired {
            inputClosedFired = true
            if allowRemoteHalfClosure {
                pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
                connection.streamStateChanged(self)
            } else {
                close(promise: nil)
            }
        }
    }

    /// Listener: the service header, then the acceptor's decision. Opener: the verdict. True once done.
    /// The preamble is bounded (a header ≤ 257 bytes, a verdict ≤ 1027), so holding it unconsumed is cheap.
    private func readPreamble() -> Bool {
        while var chunk = reassembly.read() { preamble.writeBuffer(&chunk) }
        let buffered = preamble.readableBytes
        do {
            switch role {
            case .listener:
                guard let service = try MeshService.decodeHeader(from: &preamble) else { return noPreambleYet() }
                self.service = service
                finishPreamble(consumed: buffered - preamble.readableBytes)
                connection.decide(self, service: service)
            case .opener:
                guard let verdict = try MeshServiceVerdict.decode(from: &preamble) else { return noPreambleYet() }
                finishPreamble(consumed: buffered - preamble.readableBytes)
                if case .refused(let reason) = verdict {
                    abort(code: 0, error: MeshStreamError.refused(service: service?.name ?? "?", reason: reason))
                    return false
                }
            }
        } catch {
            abort(code: 0, error: error)
            return false
        }
        return lifecycle != .closed
    }

    private func noPreambleYet() -> Bool {
        if reassembly.isComplete {
            abort(code: 0, error: MeshStreamError.connectionClosed(reason: "stream ended before its \(role == .listener ? "service header" : "verdict")"))
        }
        return false
    }

    /// The preamble's own bytes are consumed now; what follows it is delivered (and consumed) like any data.
    private func finishPreamble(consumed: Int) {
        preambleDone = true
        consume(consumed)
        if preamble.readableBytes > 0 { pendingRead = preamble }
        preamble = allocator.buffer(capacity: 0)
    }

    /// Listener: the acceptor's decision, from the connection.
    func decided(_ decision: MeshStreamDecision) {
        switch decision {
        case .refuse(let reason): refuse(reason: reason)
        case .accept(let initializer): _ = configure(initializer: initializer)
        }
    }

    // MARK: Transport bookkeeping

    /// Nothing more will be sent: all data and the FIN acknowledged, or reset.
    var sendFinished: Bool { resetSent || (finAcknowledged && acknowledgedBytes == sendOffset) }
    /// Nothing more will be received: the final size is known and every byte was delivered or discarded.
    var receiveFinished: Bool { resetReceived || (reassembly.isComplete && pendingRead == nil) }
    var isClosed: Bool { lifecycle == .closed }
    /// Open to the application: its connection keeps the peer alive with PINGs for it.
    var isOpenForApplication: Bool { lifecycle == .active }
}

extension MeshStreamChannel: CustomStringConvertible {
    var description: String { "MeshStreamChannel(id: \(id), service: \(service?.name ?? "?"))" }
}

extension Optional {
    fileprivate mutating func take() -> Wrapped? {
        defer { self = nil }
        return self
    }
}
