import NIOCore

/// One direction of an impaired link, as a pure value: no I/O and no clock reads. The caller offers each packet
/// with the current instant and gets back the copies to release and when (none if the packet is dropped).
///
/// The model, applied in this order to every packet:
/// 1. `rate`: a FIFO serialization queue. A packet starts transmitting when the previous one is done and takes
///    `bytes / rate`; if the bytes still queued plus this packet exceed `queueLimit`, it is tail-dropped.
/// 2. `loss`: the packet is lost on the wire (after it used the link, as a real lossy link does).
/// 3. `delay` ± `jitter` (uniform) after transmission. Releases never go backwards, so jitter alone keeps order.
/// 4. `reorder`: the packet is held back `reorderDelay` beyond its release and does not hold later packets back,
///    so they overtake it.
/// 5. `corrupt`: one byte of the packet is XORed with a non-zero random value.
/// 6. `duplicate`: an uncorrupted copy is released at the same instant, right after the packet.
///
/// Each packet draws the same numbers from the generator whatever is configured, so for a given seed the loss
/// pattern does not shift when, say, duplication is switched on.
public struct Impairment: Sendable {
    /// The impairment of one direction. Probabilities are per packet, in 0...1.
    public struct Configuration: Sendable, Equatable {
        /// One-way delay after transmission.
        public var delay: Duration
        /// Each packet's delay is uniform in `delay - jitter ... delay + jitter` (never below zero).
        public var jitter: Duration
        public var loss: Double
        /// Probability that a packet is held back `reorderDelay` so that later packets overtake it.
        public var reorder: Double
        public var reorderDelay: Duration
        public var duplicate: Double
        /// Probability that one byte of a packet is flipped.
        public var corrupt: Double
        /// Bandwidth in bytes per second; nil: unlimited (and no queue).
        public var rate: Int?
        /// Bytes the serialization queue holds, the packet in transmission included; beyond it, tail drop.
        public var queueLimit: Int

        /// The default queue: 64 KiB, about 50 full 1280-byte packets.
        public static let defaultQueueLimit = 64 * 1024

        public init(
            delay: Duration = .zero, jitter: Duration = .zero, loss: Double = 0, reorder: Double = 0,
            reorderDelay: Duration = .milliseconds(10), duplicate: Double = 0, corrupt: Double = 0,
            rate: Int? = nil, queueLimit: Int = Configuration.defaultQueueLimit
        ) {
            (self.delay, self.jitter, self.loss, self.reorder, self.reorderDelay) = (delay, jitter, loss, reorder, reorderDelay)
            (self.duplicate, self.corrupt, self.rate, self.queueLimit) = (duplicate, corrupt, rate, queueLimit)
        }

        /// No impairment: every packet is released at once, unchanged.
        public static let none = Configuration()

        /// Throws `ImpairmentError.invalid` naming the first field out of range.
        public func validate() throws {
            for (name, probability) in [("loss", loss), ("reorder", reorder), ("duplicate", duplicate), ("corrupt", corrupt)]
            where !(0...1).contains(probability) {
                throw ImpairmentError.invalid("\(name) must be in 0...1, got \(probability)")
            }
            for (name, duration) in [("delay", delay), ("jitter", jitter), ("reorder delay", reorderDelay)] where duration < .zero {
                throw ImpairmentError.invalid("\(name) must not be negative, got \(duration)")
            }
            if let rate, rate <= 0 { throw ImpairmentError.invalid("rate must be positive, got \(rate)") }
            if queueLimit <= 0 { throw ImpairmentError.invalid("queue limit must be positive, got \(queueLimit)") }
        }
    }

    /// What happened to the packets offered so far.
    public struct Counters: Sendable, Equatable {
        /// Packets offered to `schedule`.
        public var received = 0
        /// Copies released, duplicates included.
        public var forwarded = 0
        /// Dropped by `loss`.
        public var lost = 0
        /// Tail-dropped because the `rate` queue was full.
        public var queueDropped = 0
        public var duplicated = 0
        public var corrupted = 0
        public var reordered = 0

        public var dropped: Int { lost + queueDropped }

        public init() {}
    }

    /// A copy of a packet to put on the wire at `at`.
    public struct Release: Sendable {
        public var at: ContinuousClock.Instant
        public var packet: ByteBuffer

        public init(at: ContinuousClock.Instant, packet: ByteBuffer) { (self.at, self.packet) = (at, packet) }
    }

    public let configuration: Configuration
    public private(set) var counters = Counters()
    private var random: SplitMix64
    /// The latest release of a packet that was not held back: later packets go no earlier (jitter keeps order).
    private var lastRelease: ContinuousClock.Instant?
    /// When the link finishes transmitting everything queued so far (only with `rate`).
    private var linkFree: ContinuousClock.Instant?

    public init(_ configuration: Configuration, seed: UInt64) throws {
        try configuration.validate()
        self.configuration = configuration
        random = SplitMix64(seed: seed)
    }

    /// Offers `packet` at `now`; returns the copies to release, in release order for equal instants.
    public mutating func schedule(_ packet: ByteBuffer, now: ContinuousClock.Instant) -> [Release] {
        counters.received += 1
        let lossDraw = random.unit(), reorderDraw = random.unit(), duplicateDraw = random.unit()
        let corruptDraw = random.unit(), jitterDraw = random.unit(), corruptBits = random.next()

        var sent = now
        if let rate = configuration.rate {
            let busyUntil = max(linkFree ?? now, now)
            let queued = Self.bytes(in: busyUntil - now, at: rate)
            guard queued + packet.readableBytes <= configuration.queueLimit else {
                counters.queueDropped += 1
                return []
            }
            sent = busyUntil + Self.transmissionTime(of: packet.readableBytes, at: rate)
            linkFree = sent
        }
        guard lossDraw >= configuration.loss else {
            counters.lost += 1
            return []
        }

        let spread = Duration.nanoseconds(Int64((jitterDraw * 2 - 1) * Double(Self.nanoseconds(configuration.jitter))))
        let candidate = max(sent + configuration.delay + spread, sent)
        let release: ContinuousClock.Instant
        if reorderDraw < configuration.reorder {
            // Held back and not recorded in `lastRelease`: the packets after it may overtake it.
            release = max(candidate, lastRelease ?? candidate) + configuration.reorderDelay
            counters.reordered += 1
        } else {
            release = max(candidate, lastRelease ?? candidate)
            lastRelease = release
        }

        var first = packet
        if corruptDraw < configuration.corrupt, packet.readableBytes > 0 {
            let offset = first.readerIndex + Int(corruptBits % UInt64(packet.readableBytes))
            let mask = UInt8(1 + (corruptBits >> 32) % 255)  // 1...255: the byte always changes
            first.setInteger(first.getInteger(at: offset, as: UInt8.self)! ^ mask, at: offset)
            counters.corrupted += 1
        }
        var releases = [Release(at: release, packet: first)]
        if duplicateDraw < configuration.duplicate {
            releases.append(Release(at: release, packet: packet))
            counters.duplicated += 1
        }
        counters.forwarded += releases.count
        return releases
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }

    /// Whole bytes a link at `rate` bytes/s sends in `duration`.
    static func bytes(in duration: Duration, at rate: Int) -> Int {
        Int(Double(nanoseconds(duration)) * Double(rate) / 1e9)
    }

    static func transmissionTime(of bytes: Int, at rate: Int) -> Duration {
        .nanoseconds(Int64(bytes) * 1_000_000_000 / Int64(rate))
    }
}

public enum ImpairmentError: Error, CustomStringConvertible, Equatable {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let reason): "invalid impairment: \(reason)"
        }
    }
}
