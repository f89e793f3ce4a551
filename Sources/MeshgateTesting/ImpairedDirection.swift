import NIOCore

/// One direction of an `ImpairmentLink` on its event loop: the impairment, the packets it holds until their
/// release, and one timer for the earliest of them. Loop-confined: every method runs on `loop`.
final class ImpairedDirection {
    /// Copies held at most; more are dropped and counted in `overflowed` (about 21 MB of 1280-byte packets:
    /// 320k packets/s at 50 ms of delay).
    static let pendingLimit = 16_384
    /// Packets due within this much of a release go out with it: one timer and one flush per batch, not per
    /// packet, at tens of thousands of packets per second (netem's hrtimer slack is 50 µs).
    static let slack: Duration = .microseconds(100)

    var impairment: Impairment
    /// Copies not sent: the pending queue was full, or the socket was not writable.
    private(set) var overflowed = 0
    /// The socket that sends this direction's packets, and where to; nil until known (drops are counted).
    var channel: (any Channel)?
    var destination: SocketAddress?
    private let loop: any EventLoop
    private var pending = ReleaseHeap()
    private var timer: (task: Scheduled<Void>, at: ContinuousClock.Instant)?

    init(impairment: Impairment, loop: any EventLoop) {
        (self.impairment, self.loop) = (impairment, loop)
    }

    /// Runs `packet` through the impairment; its copies wait for `releaseDue`.
    func offer(_ packet: ByteBuffer, now: ContinuousClock.Instant) {
        for release in impairment.schedule(packet, now: now) {
            guard pending.count < Self.pendingLimit else {
                overflowed += 1
                continue
            }
            pending.insert(release)
        }
    }

    /// Writes every copy due by `now` (plus slack) in one flush, then arms the timer for the next one.
    func releaseDue(now: ContinuousClock.Instant) {
        var wrote = false
        while let next = pending.first, next.at <= now + Self.slack {
            _ = pending.removeFirst()
            // UDP has no backpressure: a socket that is not writable drops, as a full NIC queue would.
            guard let channel, let destination, channel.isWritable else {
                overflowed += 1
                continue
            }
            channel.write(AddressedEnvelope(remoteAddress: destination, data: next.packet), promise: nil)
            wrote = true
        }
        if wrote { channel?.flush() }
        arm(now: now)
    }

    private func arm(now: ContinuousClock.Instant) {
        guard let next = pending.first?.at else { return }
        if let timer {
            if timer.at <= next { return }  // fires first and re-arms
            timer.task.cancel()
        }
        let task = loop.assumeIsolated().scheduleTask(in: TimeAmount(max(next - now, .zero))) { [self] in
            self.timer = nil
            self.releaseDue(now: .now)
        }
        timer = (task, next)
    }

    /// Drops whatever is pending and stops the timer (the link is closing).
    func stop() {
        timer?.task.cancel()
        timer = nil
        pending.removeAll()
    }
}
