/// The packet numbers a receiver has seen, as sorted, disjoint, non-adjacent closed ranges: what an ACK frame
/// reports (RFC 9000 §19.3). Bounded: past `maximumRanges` the oldest ranges are forgotten, as RFC 9000
/// §13.2.4 allows (the sender has long declared those packets acknowledged or lost).
public struct PacketNumberSet: Equatable, Sendable {
    /// Ascending; no two ranges touch.
    public private(set) var ranges: [ClosedRange<UInt64>] = []
    public let maximumRanges: Int

    public init(maximumRanges: Int = 64) { self.maximumRanges = maximumRanges }

    public var largest: UInt64? { ranges.last?.upperBound }

    public func contains(_ number: UInt64) -> Bool {
        // Newest ranges are the likeliest hit: search from the end.
        for range in ranges.reversed() {
            if range.contains(number) { return true }
            if range.upperBound < number { return false }
        }
        return false
    }

    /// Adds `number`; false if it was already there (a duplicate packet).
    @discardableResult
    public mutating func insert(_ number: UInt64) -> Bool {
        // Index of the first range whose upper bound is ≥ number − 1 (a range `number` could join).
        var index = ranges.count
        while index > 0, ranges[index - 1].upperBound &+ 1 >= number { index -= 1 }
        if index < ranges.count, ranges[index].contains(number) { return false }
        let joinsLower = index < ranges.count && ranges[index].upperBound &+ 1 == number
        let nextIndex = joinsLower ? index + 1 : index
        let joinsUpper = nextIndex < ranges.count && number &+ 1 == ranges[nextIndex].lowerBound
        switch (joinsLower, joinsUpper) {
        case (true, true):
            ranges[index] = ranges[index].lowerBound...ranges[nextIndex].upperBound
            ranges.remove(at: nextIndex)
        case (true, false):
            ranges[index] = ranges[index].lowerBound...number
        case (false, true):
            ranges[nextIndex] = number...ranges[nextIndex].upperBound
        case (false, false):
            ranges.insert(number...number, at: nextIndex)
            if ranges.count > maximumRanges { ranges.removeFirst(ranges.count - maximumRanges) }
        }
        return true
    }

    /// Forgets everything below `number` (acknowledged ACKs need not be repeated).
    public mutating func removeAll(below number: UInt64) {
        ranges = ranges.compactMap { range in
            if range.upperBound < number { return nil }
            return max(range.lowerBound, number)...range.upperBound
        }
    }
}
