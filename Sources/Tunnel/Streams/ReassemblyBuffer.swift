import NIOCore

/// A receiving stream's bytes put back in order (RFC 9000 §2.2): STREAM frames may arrive out of order,
/// twice, or overlapping; `receive` keeps what is new, and `read` hands out what is contiguous from the read
/// offset. Memory is bounded by the stream's flow-control window, which the connection enforces before calling.
public struct ReassemblyBuffer: Sendable {
    /// Everything below this offset has been handed out.
    public private(set) var readOffset: UInt64 = 0
    /// The stream's length, once a FIN or RESET_STREAM told it.
    public private(set) var finalSize: UInt64?
    /// Received but not yet read, ascending by offset; chunks never overlap. An array searched by bisection:
    /// each frame touches only the chunks it overlaps, so a flood of tiny out-of-order frames costs
    /// O(log n + overlap) each, not a sort.
    private var chunks: [(offset: UInt64, data: ByteBuffer)] = []
    /// The highest offset + 1 seen in any frame (flow control counts this, RFC 9000 §4.5).
    public private(set) var highestReceived: UInt64 = 0
    /// Most out-of-order pieces held at once: honest loss leaves about one per lost packet of a stream window
    /// (4 MiB / 1232 B ≈ 3400); only a peer cutting data into slivers goes beyond.
    public static let maxChunks = 8192
    /// Pieces smaller than this are copied out of their datagram, so slivers do not pin whole packets.
    static let copyBelow = 256

    public init() {}

    /// Bytes buffered and not yet read.
    public var bufferedBytes: Int { chunks.reduce(0) { $0 + $1.data.readableBytes } }
    public var chunkCount: Int { chunks.count }

    /// All data up to the final size has been read.
    public var isComplete: Bool { finalSize == readOffset }

    /// Takes one STREAM frame's data. Throws when it contradicts a known final size (FINAL_SIZE_ERROR) or
    /// would fragment the stream past `maxChunks`.
    public mutating func receive(_ data: ByteBuffer, at offset: UInt64, fin: Bool) throws {
        let end = offset + UInt64(data.readableBytes)
        if let finalSize, end > finalSize || (fin && end != finalSize) { throw StreamFrameError.malformed("final size changed") }
        if fin {
            guard end >= highestReceived else { throw StreamFrameError.malformed("final size below data already received") }
            finalSize = end
        }
        highestReceived = max(highestReceived, end)
        var start = max(offset, readOffset)
        guard start < end else { return }
        var remaining = data.getSlice(at: data.readerIndex + Int(start - offset), length: Int(end - start))!
        // First chunk that ends after `start`: everything before it is untouched.
        var index = firstChunk(endingAfter: start)
        var pieces: [(offset: UInt64, data: ByteBuffer)] = []
        while remaining.readableBytes > 0 {
            guard index < chunks.count, chunks[index].offset < start + UInt64(remaining.readableBytes) else {
                pieces.append((start, remaining))
                break
            }
            let chunk = chunks[index]
            if chunk.offset > start {
                // The part before this chunk is new.
                pieces.append((start, remaining.readSlice(length: Int(chunk.offset - start))!))
                start = chunk.offset
            }
            // Skip the overlap with this chunk.
            let overlap = min(UInt64(remaining.readableBytes), chunk.offset + UInt64(chunk.data.readableBytes) - start)
            remaining.moveReaderIndex(forwardBy: Int(overlap))
            start += overlap
            index += 1
        }
        guard !pieces.isEmpty else { return }
        // A piece at the read offset is exempt: it becomes readable at once, and refusing it could stall an
        // honest stream whose head was lost.
        let adding = pieces.count - (pieces[0].offset == readOffset ? 1 : 0)
        guard chunks.count + adding <= Self.maxChunks else { throw StreamFrameError.malformed("stream cut into more than \(Self.maxChunks) pieces") }
        for piece in pieces.reversed() {
            var data = piece.data
            if data.readableBytes < Self.copyBelow { data = ByteBuffer(buffer: data) }
            chunks.insert((piece.offset, data), at: firstChunk(endingAfter: piece.offset))
        }
    }

    /// The contiguous bytes at the read offset (nil when the next byte has not arrived), consumed.
    public mutating func read() -> ByteBuffer? {
        guard let first = chunks.first, first.offset == readOffset else { return nil }
        var (taken, total) = (1, first.data.readableBytes)
        while taken < chunks.count, chunks[taken].offset == readOffset + UInt64(total) {
            total += chunks[taken].data.readableBytes
            taken += 1
        }
        readOffset += UInt64(total)
        defer { chunks.removeFirst(taken) }
        guard taken > 1 else { return first.data }
        // Joined into one buffer of the right size: appending to the first chunk grew it (and copied it) again
        // and again.
        var joined = ByteBufferAllocator().buffer(capacity: total)
        for index in 0..<taken { joined.writeImmutableBuffer(chunks[index].data) }
        return joined
    }

    /// Index of the first chunk whose end is past `offset` (chunks.count if none).
    private func firstChunk(endingAfter offset: UInt64) -> Int {
        var (low, high) = (0, chunks.count)
        while low < high {
            let middle = (low + high) / 2
            if chunks[middle].offset + UInt64(chunks[middle].data.readableBytes) <= offset { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
