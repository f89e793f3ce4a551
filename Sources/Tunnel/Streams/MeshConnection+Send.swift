import NIOCore

/// Packet assembly and timers. Sending is deferred to the end of the current event-loop turn (`needsSend`), so
/// a burst of received packets or of stream flushes becomes one pass that packs frames tightly.
extension MeshConnection {
    /// Most packets built in one pass before yielding the loop to reads.
    static let maxPacketsPerPass = 64
    /// Ranges per ACK frame: the newest ones; older ones were reported before (their packets are long
    /// acknowledged or declared lost), and a frame of 64 ranges would eat a tenth of a packet.
    static let maxAckRanges = 16
    /// Packets due within this much of now go at once: a timer per packet would cost more than the burst
    /// (a loop tick is tens of microseconds), and a millisecond's worth is far below any bottleneck queue.
    static let pacingGranularity: Duration = .milliseconds(1)

    func needsSend() {
        guard !sendScheduled, !isClosed else { return }
        sendScheduled = true
        eventLoop.execute {
            self.sendScheduled = false
            self.sendPending()
        }
    }

    /// Sends what the congestion window allows: ACKs always, ack-eliciting packets while the window has room
    /// (or a probe is due). Then arms the timer for whatever comes next.
    func sendPending() {
        guard !isClosed else { return }
        let now = clock.now
        var datagrams: [ByteBuffer] = []
        pacedUntil = nil
        while datagrams.count < Self.maxPacketsPerPass {
            var eliciting = probesPending > 0 || loss.bytesInFlight + limits.maxDatagramSize <= congestion.window
            if eliciting, probesPending == 0,
                let next = pacer.nextSendTime(bytes: limits.maxDatagramSize, now: now, window: congestion.window, rtt: rtt, rate: congestion.pacingRate),
                next > now + Self.pacingGranularity
            {
                // Paced: ACKs may still go; the timer resumes sending when the bucket has refilled.
                pacedUntil = next
                eliciting = false
            }
            guard let packet = buildPacket(now: now, eliciting: eliciting) else { break }
            datagrams.append(packet)
            if probesPending > 0 { probesPending -= 1 }
        }
        // RFC 9002 §7.8: under-using the window says nothing about the path, unless the window or the pacer held
        // us back; only running out of data makes the sender application-limited.
        if pacedUntil != nil || loss.bytesInFlight + limits.maxDatagramSize > congestion.window {
            applicationLimited = false
        } else if !hasElicitingWork {
            applicationLimited = true
        }
        if datagrams.count == Self.maxPacketsPerPass { needsSend() }
        if !datagrams.isEmpty {
            lastSentAt = now
            statistics.packetsSent += datagrams.count
            owner?.transmit(datagrams, for: self)
        }
        armTimer(now: now)
    }

    /// Anything waiting that needs an ack-eliciting packet.
    var hasElicitingWork: Bool {
        probesPending > 0 || pingPending || maxDataPending || maxStreamsPending || !maxStreamDataPending.isEmpty || !control.isEmpty
            || !retransmissions.isEmpty || streamDataReady
    }

    /// A queued stream can put something in a packet: data within connection credit, or a bare FIN.
    private var streamDataReady: Bool {
        let credit = connectionSendCredit.available > 0
        return sendQueue.contains { id in
            guard let stream = streams[id], stream.hasSendableData else { return false }
            return credit || stream.hasOnlyFinToSend
        }
    }

    private var ackDue: Bool { ackNow || (ackDeadline.map { clock.now >= $0 } ?? false) }

    /// One packet, or nil when there is nothing to send.
    private func buildPacket(now: ContinuousClock.Instant, eliciting: Bool) -> ByteBuffer? {
        let elicitingWork = eliciting && hasElicitingWork
        let ackAvailable = unacknowledgedEliciting > 0 || ackNow
        // An ACK goes alone only when due; otherwise it rides along with other frames.
        guard elicitingWork || (ackAvailable && ackDue) else { return nil }
        var buffer = allocator.buffer(capacity: MeshStreamTransport.maxDatagramSize)
        let number = nextPacketNumber
        nextPacketNumber += 1
        MeshStreamPacketHeader(sourceEpoch: localEpoch, destinationEpoch: remoteEpoch, packetNumber: number).encode(into: &buffer)
        let headerEnd = buffer.writerIndex
        if ackAvailable, let largestReceivedAt, let ack = AckFrame(received, delay: ackDelayField(since: largestReceivedAt, now: now), maxRanges: Self.maxAckRanges) {
            StreamFrame.ack(ack).encode(into: &buffer)
            (ackNow, unacknowledgedEliciting, ackDeadline) = (false, 0, nil)
        }
        guard elicitingWork else { return buffer }
        let ackOnly = buffer.writerIndex
        var frames: [SentFrame] = []
        writeControlFrames(into: &buffer, frames: &frames)
        writeStreamFrames(into: &buffer, frames: &frames)
        if probesPending > 0 || pingPending {
            // A probe or keepalive must elicit an ACK even with nothing else to say.
            StreamFrame.ping.encode(into: &buffer)
            pingPending = false
        } else if frames.isEmpty {
            // The work was not sendable after all (no credit): an ACK alone if one was written, else nothing.
            if ackOnly > headerEnd { return buffer }
            nextPacketNumber -= 1
            return nil
        }
        loss.sent(number, at: now, bytes: buffer.readableBytes, ackEliciting: true, payload: frames)
        lastElicitingSentAt = now
        if !sentSinceReceive {
            (idleStart, sentSinceReceive) = (now, true)
        }
        congestion.sent(bytes: buffer.readableBytes, now: now)
        pacer.sent(bytes: buffer.readableBytes, now: now, window: congestion.window, rtt: rtt, rate: congestion.pacingRate)
        return buffer
    }

    /// RFC 9000 §19.3: microseconds since the largest packet arrived, scaled down by the exponent.
    private func ackDelayField(since instant: ContinuousClock.Instant, now: ContinuousClock.Instant) -> UInt64 {
        UInt64(max(0, (now - instant).nanoseconds / 1000)) >> MeshStreamTransport.ackDelayExponent
    }

    private func room(_ buffer: ByteBuffer) -> Int { MeshStreamTransport.maxDatagramSize - buffer.writerIndex }

    /// Flow-control updates and resets: small frames that go before data (the largest is 25 bytes).
    private func writeControlFrames(into buffer: inout ByteBuffer, frames: inout [SentFrame]) {
        let largestControlFrame = 1 + 3 * 8
        if maxDataPending, room(buffer) >= largestControlFrame {
            StreamFrame.maxData(connectionReceiveCredit.advertised).encode(into: &buffer)
            frames.append(.maxData)
            maxDataPending = false
        }
        if maxStreamsPending, room(buffer) >= largestControlFrame {
            StreamFrame.maxStreams(peerStreamLimit).encode(into: &buffer)
            advertisedStreamLimit = peerStreamLimit
            frames.append(.maxStreams)
            maxStreamsPending = false
        }
        while room(buffer) >= largestControlFrame, let id = maxStreamDataPending.popFirst() {
            guard let stream = streams[id] else { continue }
            StreamFrame.maxStreamData(id: id, limit: stream.receiveCredit.advertised).encode(into: &buffer)
            frames.append(.maxStreamData(id: id))
        }
        while room(buffer) >= largestControlFrame, !control.isEmpty {
            let frame = control.removeFirst()
            frame.encode(into: &buffer)
            frames.append(.control(frame))
        }
    }

    /// Retransmissions first, then new data from each ready stream in turn (one frame per stream per packet,
    /// so streams share the connection fairly and a stalled one does not hold the others).
    private func writeStreamFrames(into buffer: inout ByteBuffer, frames: inout [SentFrame]) {
        while let pending = retransmissions.first {
            guard streams[pending.id].map({ !$0.resetSent }) ?? false else {
                retransmissions.removeFirst()
                continue
            }
            let space = room(buffer) - Self.streamFrameOverhead(id: pending.id, offset: pending.offset)
            guard space > 0 || (pending.data.readableBytes == 0 && space >= 0) else { return }
            var rest = retransmissions.removeFirst()
            let take = min(space, rest.data.readableBytes)
            let piece = PendingStreamData(id: rest.id, offset: rest.offset, data: rest.data.readSlice(length: take)!, fin: rest.fin && rest.data.readableBytes == 0)
            write(piece, into: &buffer, frames: &frames)
            if rest.data.readableBytes > 0 {
                rest.offset += UInt64(take)
                retransmissions.prepend(rest)
                return
            }
        }
        var turns = sendQueue.count
        while turns > 0, let id = sendQueue.first {
            turns -= 1
            guard let stream = streams[id], stream.hasSendableData else {
                sendQueue.removeFirst()
                inSendQueue.remove(id)
                continue
            }
            let space = room(buffer) - Self.streamFrameOverhead(id: id, offset: stream.sendOffset)
            guard space >= 0 else { return }
            let credit = Int(min(connectionSendCredit.available, UInt64(space)))
            guard let taken = stream.takeData(maxBytes: credit), taken.data.readableBytes > 0 || taken.fin else {
                // No connection credit for this one (MAX_DATA will bring it back); a bare FIN behind it may go.
                if connectionSendCredit.shouldReportBlocked() { control.append(.dataBlocked(connectionSendCredit.limit)) }
                sendQueue.removeFirst()
                sendQueue.append(id)
                continue
            }
            connectionSendCredit.consume(UInt64(taken.data.readableBytes))
            write(PendingStreamData(id: id, offset: taken.offset, data: taken.data, fin: taken.fin), into: &buffer, frames: &frames)
            sendQueue.removeFirst()
            if stream.hasSendableData { sendQueue.append(id) } else { inSendQueue.remove(id) }
        }
    }

    private func write(_ data: PendingStreamData, into buffer: inout ByteBuffer, frames: inout [SentFrame]) {
        StreamFrame.stream(id: data.id, offset: data.offset, data: data.data, fin: data.fin).encode(into: &buffer)
        frames.append(.stream(data))
    }

    /// Type byte, id, offset (when not 0) and a 2-byte length (data never exceeds 16383 bytes in one packet).
    static func streamFrameOverhead(id: UInt64, offset: UInt64) -> Int {
        1 + VarInt.length(of: id) + (offset > 0 ? VarInt.length(of: offset) : 0) + 2
    }

    /// A packet with CONNECTION_CLOSE, outside recovery: it is sent once and never retransmitted.
    func sendClose(code: MeshTransportErrorCode, reason: String) {
        var buffer = allocator.buffer(capacity: 64 + reason.utf8.count)
        MeshStreamPacketHeader(sourceEpoch: localEpoch, destinationEpoch: remoteEpoch, packetNumber: nextPacketNumber).encode(into: &buffer)
        nextPacketNumber += 1
        StreamFrame.connectionClose(errorCode: code.rawValue, frameType: 0, reason: String(reason.prefix(200))).encode(into: &buffer)
        owner?.transmit([buffer], for: self)
    }

    // MARK: Timers

    /// The next instant something is due: loss by time, a probe, a delayed ACK, a keepalive, the idle timeout.
    private func nextDeadline() -> ContinuousClock.Instant {
        var next = idleStart + parameters.idleTimeout
        if let lossTime = loss.lossTime(lossDelay: rtt.lossDelay) {
            next = min(next, lossTime)
        } else if loss.bytesInFlight > 0, let lastElicitingSentAt {
            next = min(next, lastElicitingSentAt + rtt.probeTimeout(maxAckDelay: parameters.maxAckDelay, backoff: probeCount))
        }
        if let ackDeadline { next = min(next, ackDeadline) }
        if let pacedUntil { next = min(next, pacedUntil) }
        if needsKeepAlive { next = min(next, lastSentAt + parameters.keepAliveInterval) }
        return next
    }

    /// PINGs keep a quiet connection alive while the application has a stream open. Not while packets are in
    /// flight: probes already elicit answers then, and a full window could not send the PING anyway.
    private var needsKeepAlive: Bool {
        loss.bytesInFlight == 0 && streams.values.contains { $0.isOpenForApplication }
    }

    /// Schedules the timer for the next deadline, unless one already fires sooner (it re-arms when it fires).
    func armTimer(now: ContinuousClock.Instant) {
        guard !isClosed else { return }
        let deadline = clock.deadline(nextDeadline())
        if let timerDeadline, timerDeadline <= deadline, timer != nil { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = eventLoop.scheduleTask(deadline: deadline) { [self] in
            timer = nil
            timerDeadline = nil
            timerFired()
        }
    }

    private func timerFired() {
        guard !isClosed else { return }
        let now = clock.now
        if now >= idleStart + parameters.idleTimeout {
            return close(.idleTimeout, code: nil, notifyPeer: false)
        }
        if let lossTime = loss.lossTime(lossDelay: rtt.lossDelay), now >= lossTime {
            lost(loss.detectLost(now: now, lossDelay: rtt.lossDelay), now: now)
        } else if loss.bytesInFlight > 0, let lastElicitingSentAt,
            now >= lastElicitingSentAt + rtt.probeTimeout(maxAckDelay: parameters.maxAckDelay, backoff: probeCount)
        {
            // RFC 9002 §6.2.4: two probes, sent even if the window is full.
            probeCount += 1
            probesPending = 2
        }
        if let ackDeadline, now >= ackDeadline { ackNow = true }
        if needsKeepAlive, now >= lastSentAt + parameters.keepAliveInterval { pingPending = true }
        sendPending()
    }
}
