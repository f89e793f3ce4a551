import NIOCore

/// Time as an event loop sees it (`EventLoop.now`, which an `EmbeddedEventLoop` lets tests advance), expressed
/// as `ContinuousClock` instants for the pure recovery values. Anchored once: instants and deadlines convert
/// both ways without reading another clock.
struct LoopClock {
    let loop: any EventLoop
    private let anchorDeadline: NIODeadline
    private let anchorInstant: ContinuousClock.Instant

    init(loop: any EventLoop) {
        (self.loop, self.anchorDeadline, self.anchorInstant) = (loop, loop.now, .now)
    }

    var now: ContinuousClock.Instant { instant(loop.now) }

    func instant(_ deadline: NIODeadline) -> ContinuousClock.Instant {
        anchorInstant + .nanoseconds(Int64(deadline.uptimeNanoseconds) - Int64(anchorDeadline.uptimeNanoseconds))
    }

    /// Rounded up to the next nanosecond, so a timer never fires just before the instant it is for.
    func deadline(_ instant: ContinuousClock.Instant) -> NIODeadline {
        let offset = instant - anchorInstant
        let roundUp: Int64 = offset.components.attoseconds % 1_000_000_000 > 0 ? 1 : 0
        return anchorDeadline + .nanoseconds(offset.nanoseconds + roundUp)
    }
}

extension Duration {
    /// Seconds as a `Double`: congestion control's curves and rates, and reports of measured times.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }

    /// Whole nanoseconds, rounded down; saturates rather than traps on absurd durations (a configured timeout).
    public var nanoseconds: Int64 {
        let (seconds, overflow) = components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : seconds.addingReportingOverflow(components.attoseconds / 1_000_000_000).partialValue
    }
}

