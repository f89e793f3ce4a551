import MeshgateTesting
import NIOCore
import Testing

/// The pure model with fixed seeds: every figure below is exact for its seed, and the bounds are those a correct
/// model meets for any seed (several standard deviations), so a broken draw or a swapped condition fails.
@Suite struct ImpairmentTests {
    let start = ContinuousClock.now

    /// A packet whose first four bytes are its index, then a fixed pattern.
    static func packet(_ index: Int, size: Int = 64) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(index))
        buffer.writeBytes((4..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        return buffer
    }

    /// Offers `count` packets `spacing` apart and returns every release with the index and offer instant of its packet.
    static func run(_ impairment: inout Impairment, count: Int = 20_000, spacing: Duration = .microseconds(100),
                    from start: ContinuousClock.Instant, size: Int = 64) -> [(index: Int, offered: ContinuousClock.Instant, release: Impairment.Release)] {
        (0..<count).flatMap { index in
            let now = start + spacing * index
            return impairment.schedule(packet(index, size: size), now: now).map { (index, now, $0) }
        }
    }

    /// No configuration: each packet leaves at once, unchanged, and only `received`/`forwarded` move.
    @Test func noImpairmentIsTransparent() throws {
        var impairment = try Impairment(.none, seed: 1)
        let releases = Self.run(&impairment, count: 1000, from: start)
        #expect(releases.count == 1000)
        #expect(releases.allSatisfy { $0.release.at == $0.offered && $0.release.packet == Self.packet($0.index) })
        var expected = Impairment.Counters()
        (expected.received, expected.forwarded) = (1000, 1000)
        #expect(impairment.counters == expected)
    }

    /// 1 % and 10 % loss over 20k packets stay within 3σ of the configured fraction, and the counters add up.
    @Test(arguments: [0.01, 0.1])
    func lossFraction(loss: Double) throws {
        var impairment = try Impairment(.init(loss: loss), seed: 42)
        let releases = Self.run(&impairment, from: start)
        let counters = impairment.counters
        let sigma = (20_000 * loss * (1 - loss)).squareRoot()
        #expect(abs(Double(counters.lost) - 20_000 * loss) < 3 * sigma, "lost \(counters.lost)")
        #expect(counters.received == 20_000 && counters.forwarded == releases.count && counters.forwarded + counters.lost == 20_000)
        #expect(try Self.runLost(loss: 1) == 1000 && Self.runLost(loss: 0) == 0)
    }

    static func runLost(loss: Double) throws -> Int {
        var impairment = try Impairment(.init(loss: loss), seed: 7)
        _ = run(&impairment, count: 1000, from: .now)
        return impairment.counters.lost
    }

    /// Packets far enough apart never meet: each delay is within delay ± jitter, and the spread uses the range.
    @Test func delayAndJitterBounds() throws {
        var impairment = try Impairment(.init(delay: .milliseconds(25), jitter: .milliseconds(5)), seed: 3)
        let delays = Self.run(&impairment, count: 5000, spacing: .milliseconds(20), from: start).map { $0.release.at - $0.offered }
        #expect(delays.allSatisfy { $0 >= .milliseconds(20) && $0 <= .milliseconds(30) })
        #expect(delays.min()! < .milliseconds(20) + .microseconds(100) && delays.max()! > .milliseconds(30) - .microseconds(100))
        let mean = delays.reduce(Duration.zero, +) / delays.count
        #expect(mean > .microseconds(24_800) && mean < .microseconds(25_200), "mean \(mean)")
    }

    /// Jitter far above the packet spacing still keeps order: releases never go backwards, and stay in bounds.
    @Test func jitterKeepsOrderWithoutReorder() throws {
        var impairment = try Impairment(.init(delay: .milliseconds(10), jitter: .milliseconds(8), duplicate: 0.01), seed: 5)
        let releases = Self.run(&impairment, from: start)
        // `releases` is in offer order, so this is "no packet leaves before one offered earlier".
        #expect(zip(releases, releases.dropFirst()).allSatisfy { $0.release.at <= $1.release.at })
        #expect(releases.allSatisfy { $0.release.at - $0.offered >= .milliseconds(2) && $0.release.at - $0.offered <= .milliseconds(18) })
        #expect(impairment.counters.reordered == 0)
    }

    /// With reorder, held-back packets leave `reorderDelay` late and later packets overtake them.
    @Test func reorderOvertakes() throws {
        let configuration = Impairment.Configuration(delay: .milliseconds(5), reorder: 0.05, reorderDelay: .milliseconds(2))
        var impairment = try Impairment(configuration, seed: 11)
        let releases = Self.run(&impairment, from: start)
        let counters = impairment.counters
        let sigma = (20_000 * 0.05 * 0.95).squareRoot()
        #expect(abs(Double(counters.reordered) - 1000) < 3 * sigma, "reordered \(counters.reordered)")
        let held = releases.filter { $0.release.at - $0.offered == .milliseconds(7) }
        #expect(held.count == counters.reordered)
        #expect(releases.allSatisfy { [.milliseconds(5), .milliseconds(7)].contains($0.release.at - $0.offered) })

        // On the wire (release order, ties in offer order), a held packet arrives after the next 19.
        let wire = releases.sorted { ($0.release.at, $0.index) < ($1.release.at, $1.index) }.map(\.index)
        let overtaken = zip(wire, wire.dropFirst()).filter { $0 > $1 }.count
        #expect(overtaken > counters.reordered * 9 / 10 && overtaken <= counters.reordered)
        #expect(Set(wire).count == 20_000)
    }

    /// Duplicates follow their original at the same instant; corrupted packets differ in exactly one byte,
    /// and the counters match what is in the releases.
    @Test func duplicationAndCorruption() throws {
        var impairment = try Impairment(.init(duplicate: 0.02, corrupt: 0.01), seed: 13)
        let releases = Self.run(&impairment, from: start)
        let counters = impairment.counters
        #expect(abs(Double(counters.duplicated) - 400) < 3 * (20_000 * 0.02 * 0.98).squareRoot())
        #expect(abs(Double(counters.corrupted) - 200) < 3 * (20_000 * 0.01 * 0.99).squareRoot())
        #expect(releases.count == 20_000 + counters.duplicated && counters.forwarded == releases.count)

        let copies = Dictionary(grouping: releases, by: \.index)
        var corrupted = 0
        for (index, copies) in copies {
            let original = Self.packet(index)
            let differing = copies.map { copy in zip(original.readableBytesView, copy.release.packet.readableBytesView).filter { $0 != $1 }.count }
            #expect(copies.allSatisfy { $0.release.packet.readableBytes == original.readableBytes && $0.release.at == $0.offered })
            #expect(differing[0] <= 1 && differing.dropFirst().allSatisfy { $0 == 0 }, "only the first copy is corrupted")
            corrupted += differing[0]
        }
        #expect(copies.values.filter { $0.count == 2 }.count == counters.duplicated && copies.values.allSatisfy { $0.count <= 2 })
        #expect(corrupted == counters.corrupted)

        // Corrupting every packet changes exactly one byte of each (a zero XOR mask would change none).
        var always = try Impairment(.init(corrupt: 1), seed: 19)
        let changed = Self.run(&always, count: 5000, from: start).map { release in
            zip(Self.packet(release.index).readableBytesView, release.release.packet.readableBytesView).filter { $0 != $1 }.count
        }
        #expect(changed.allSatisfy { $0 == 1 } && always.counters.corrupted == 5000)
    }

    /// The serialization queue: a burst leaves one transmission time apart, what exceeds the queue is
    /// tail-dropped, and the queue drains at the configured rate.
    @Test func rateLimitSpacing() throws {
        // 1 MB/s: a 1000-byte packet takes 1 ms; the queue holds 5 of them.
        var impairment = try Impairment(.init(delay: .milliseconds(10), rate: 1_000_000, queueLimit: 5000), seed: 17)
        let burst = (0..<8).flatMap { impairment.schedule(Self.packet($0, size: 1000), now: start) }
        #expect(burst.map { $0.at - start } == (1...5).map { .milliseconds(10 + $0) })
        #expect(impairment.counters.queueDropped == 3)

        // 2.5 ms later 2500 bytes are still queued: two more fit (4500), a third would not (5500).
        let later = (0..<3).flatMap { impairment.schedule(Self.packet(8 + $0, size: 1000), now: start + .microseconds(2500)) }
        #expect(later.map { $0.at - start } == [.milliseconds(16), .milliseconds(17)])
        #expect(impairment.counters.queueDropped == 4)

        // Below the rate, once drained, a packet only pays its own transmission time.
        let idle = start + .seconds(1)
        let paced = (0..<100).flatMap { impairment.schedule(Self.packet($0, size: 500), now: idle + .milliseconds(1) * $0) }
        #expect(paced.enumerated().allSatisfy { $0.element.at - idle == .milliseconds(1) * $0.offset + .microseconds(10_500) })
    }

    /// The same seed gives the same releases; another seed another pattern; both directions of a link differ.
    @Test func seededDeterminism() throws {
        let configuration = Impairment.Configuration(delay: .milliseconds(3), jitter: .milliseconds(1), loss: 0.2, reorder: 0.1, duplicate: 0.1, corrupt: 0.1)
        func pattern(_ seed: UInt64) throws -> [String] {
            var impairment = try Impairment(configuration, seed: seed)
            return Self.run(&impairment, count: 2000, from: start).map { "\($0.release.at - start) \(Array($0.release.packet.readableBytesView))" }
        }
        #expect(try pattern(99) == pattern(99))
        #expect(try pattern(99) != pattern(100))
    }

    /// Out-of-range settings are refused with the field named.
    @Test func validation() {
        #expect(throws: ImpairmentError.invalid("loss must be in 0...1, got 1.5")) { try Impairment(.init(loss: 1.5), seed: 0) }
        #expect(throws: ImpairmentError.self) { try Impairment(.init(delay: .milliseconds(-1)), seed: 0) }
        #expect(throws: ImpairmentError.self) { try Impairment(.init(rate: 0), seed: 0) }
        #expect(throws: ImpairmentError.self) { try Impairment(.init(corrupt: -0.1), seed: 0) }
    }
}
