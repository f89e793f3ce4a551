/// Sliding window of received counters (RFC 6479, as WireGuard sizes it): 128 blocks of 64 bits, one block
/// kept as slack, so 8128 counters behind the newest are remembered. Accepting a counter marks it, so each
/// counter is accepted once; anything older than the window is refused.
///
/// Call only after the packet authenticated: an attacker must not be able to move the window.
struct ReplayWindow: Sendable {
    static let blockBits = 64
    static let ringBlocks = 128
    static let windowSize = (ringBlocks - 1) * blockBits  // 8128
    /// WireGuard's RejectAfterMessages: counters at or past this are never valid.
    static let counterLimit: UInt64 = UInt64.max - (1 << 13)

    private var ring = [UInt64](repeating: 0, count: ringBlocks)
    private var last: UInt64 = 0

    /// True when `counter` is new and inside the window (and records it).
    mutating func accept(_ counter: UInt64) -> Bool {
        guard counter < Self.counterLimit else { return false }
        var blockIndex = counter >> 6
        if counter > last {
            let current = last >> 6
            let advance = min(blockIndex - current, UInt64(Self.ringBlocks))
            var index: UInt64 = 1
            while index <= advance {
                ring[Int((current + index) & UInt64(Self.ringBlocks - 1))] = 0
                index += 1
            }
            last = counter
        } else if last - counter > UInt64(Self.windowSize) {
            return false
        }
        blockIndex &= UInt64(Self.ringBlocks - 1)
        let bit: UInt64 = 1 << (counter & 63)
        let old = ring[Int(blockIndex)]
        ring[Int(blockIndex)] = old | bit
        return old & bit == 0
    }
}

/// TAI64N timestamps for initiations: 8-byte big-endian TAI seconds (2^62 + 10 offset) and 4-byte
/// big-endian nanoseconds. Responders refuse any timestamp not newer than the last, which stops replayed
/// initiations.
enum TAI64N {
    static let base: UInt64 = 0x4000_0000_0000_000a
    /// Nanoseconds are rounded down to 2^24 ns (~16 ms), as wireguard-go does, so the timestamp does not
    /// leak a precise clock.
    static let whitenerMask: UInt32 = 0x100_0000 - 1

    static func stamp(secondsSince1970 seconds: UInt64, nanoseconds: UInt32) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 12)
        let tai = base + seconds
        for i in 0..<8 { out[i] = UInt8(truncatingIfNeeded: tai >> (56 - 8 * UInt64(i))) }
        let nanos = nanoseconds & ~whitenerMask
        for i in 0..<4 { out[8 + i] = UInt8(truncatingIfNeeded: nanos >> (24 - 8 * UInt32(i))) }
        return out
    }

    /// Big-endian byte order makes lexicographic order the time order.
    static func isAfter(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.lexicographicallyPrecedes(b) == false && a != b }
}
