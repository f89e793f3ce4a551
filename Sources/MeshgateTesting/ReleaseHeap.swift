/// Packets waiting for their release, earliest first; equal instants leave in the order they were inserted,
/// so a duplicate follows its original and jitter-free traffic keeps its order.
struct ReleaseHeap {
    private var items: [(release: Impairment.Release, sequence: UInt64)] = []
    private var nextSequence: UInt64 = 0

    var count: Int { items.count }
    var first: Impairment.Release? { items.first?.release }

    mutating func insert(_ release: Impairment.Release) {
        items.append((release, nextSequence))
        nextSequence &+= 1
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard precedes(child, parent) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func removeFirst() -> Impairment.Release? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let first = items.removeLast().release
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < items.count, precedes(left, smallest) { smallest = left }
            if right < items.count, precedes(right, smallest) { smallest = right }
            guard smallest != parent else { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return first
    }

    mutating func removeAll() { items.removeAll() }

    private func precedes(_ a: Int, _ b: Int) -> Bool {
        (items[a].release.at, items[a].sequence) < (items[b].release.at, items[b].sequence)
    }
}
