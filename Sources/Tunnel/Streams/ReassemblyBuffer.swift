import NIOCore

/// A receiving stream's bytes put back in order (RFC 9000 §2.2): STREAM frames may arrive out of order,
/// twice, or overlapping; `receive` keeps what is new, and `read` hands out what is contiguous from the read
/// offset. Memory is bounded by the stream's flow-control window, which the connection enforces before calling.
public struct ReassemblyBuffer: Sendable {
    /// Everything below this offset has been handed out.
    public private(set) var readOffset: UInt64 = 0
    /// The stream's length, once a FIN or RESET_STREAM told it.
    public private(set) var finalSize: UInt64?
    /// Received but not yet read, keyed by offset; chunks never overlap.
    private var chunks: [UInt64: ByteBuffer] = [:]
    /// The highest offset + 1 seen in any frame (flow control counts this, RFC 9000 §4.5).
    public private(set) var highestReceived: UInt64 = 0

    public init() {}

    /// Bytes buffered and not yet read.
    public var bufferedBytes: Int { chunks.values.reduce(0) { $0 + $1.readableBytes } }

    /// All data up to the final size has been read.
    public var isComplete: Bool { finalSize == readOffset }

    /// Takes one STREAM frame's data. Throws when it contradicts a known final size (FINAL_SIZE_ERROR).
    public mutating func receive(_ data: ByteBuffer, at offset: UInt64, fin: Bool) throws {
        let end = offset + UInt64(data.readableBytes)
        if let finalSize, end > finalSize || (fin && end != finalSize) { throw StreamFrameError.malformed("final size changed") }
        if fin {
            guard end >= highestReceived else { throw StreamFrameError.malformed("final size below data already received") }
            finalSize = end
        }
        highestReceived = max(highestReceived, end)
        // Trim what was already read, then what other chunks already hold.
        var start = max(offset, readOffset)
        guard start < end else { return }
        var remaining = data.getSlice(at: data.readerIndex + Int(start - offset), length: Int(end - start))!
        for (chunkOffset, chunk) in chunks.sorted(by: { $0.key < $1.key }) {
            let chunkEnd = chunkOffset + UInt64(chunk.readableBytes)
            guard chunkEnd > start else { continue }
            guard chunkOffset < start + UInt64(remaining.readableBytes) else { break }
            if chunkOffset > start {
                // The part before this chunk is new.
                chunks[start] = remaining.readSlice(length: Int(chunkOffset - start))!
                start = chunkOffset
            }
            // Skip the overlap with this chunk.
            let overlap = min(UInt64(remaining.readableBytes), chunkEnd - start)
            remaining.moveReaderIndex(forwardBy: Int(overlap))
            start += overlap
            if remaining.readableBytes == 0 { return }
        }
        if remaining.readableBytes > 0 { chunks[start] = remaining }
    }

    /// The contiguous bytes at the read offset (nil when the next byte has not arrived), consumed.
    public mutating func read() -> ByteBuffer? {
        guard var first = chunks.removeValue(forKey: readOffset) else { return nil }
        readOffset += UInt64(first.readableBytes)
        while var next = chunks.removeValue(forKey: readOffset) {
            readOffset += UInt64(next.readableBytes)
            first.writeBuffer(&next)
        }
        return first
    }
}
