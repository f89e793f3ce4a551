import CVTerm

/// The lines libvterm scrolled off the top of the primary screen (its `sb_pushline`), oldest first, keeping the
/// newest `capacity`. Trailing default blanks are dropped: most lines are short.
struct TerminalScrollback {
    let capacity: Int
    private var storage: [[VTermScreenCell]] = []
    /// Where the oldest line is once `storage` is full and wraps around.
    private var oldest = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 0)
    }

    var count: Int { storage.count }

    /// Oldest first.
    subscript(index: Int) -> [VTermScreenCell] {
        storage[(oldest + index) % storage.count]
    }

    mutating func push(_ cells: UnsafeBufferPointer<VTermScreenCell>) {
        guard capacity > 0 else { return }
        var end = cells.count
        while end > 0 && cells[end - 1].isDefaultBlank { end -= 1 }
        let line = Array(cells[0..<end])
        if storage.count < capacity {
            storage.append(line)
        } else {
            storage[oldest] = line
            oldest = (oldest + 1) % capacity
        }
    }

    /// The newest line, for libvterm's `sb_popline` when the screen grows taller.
    mutating func popNewest() -> [VTermScreenCell]? {
        if oldest != 0 {
            // Wrapped: unwrap first (rare: only when the screen grows) so appending stays the newest end.
            storage = Array(storage[oldest...] + storage[..<oldest])
            oldest = 0
        }
        return storage.popLast()
    }
}
