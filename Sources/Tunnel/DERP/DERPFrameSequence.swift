import NIOCore

/// DERP frames pulled out of a sequence of byte chunks (WebSocket messages carry a byte stream: frames are
/// not aligned to messages). Pull-based, so a slow relay slows the reader instead of buffering.
public struct DERPFrameSequence<Bytes: AsyncSequence & Sendable>: AsyncSequence, Sendable where Bytes.Element == ByteBuffer {
    public typealias Element = DERPFrame
    let bytes: Bytes
    let maximumFrameLength: Int

    public init(bytes: Bytes, maximumFrameLength: Int) { (self.bytes, self.maximumFrameLength) = (bytes, maximumFrameLength) }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: Bytes.AsyncIterator
        var buffer = ByteBuffer()
        let maximumFrameLength: Int

        public mutating func next() async throws -> DERPFrame? {
            while true {
                if let frame = try DERPFrameDecoder.next(from: &buffer, maximumFrameLength: maximumFrameLength) { return frame }
                guard var chunk = try await base.next() else { return nil }
                buffer.discardReadBytes()
                buffer.writeBuffer(&chunk)
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: bytes.makeAsyncIterator(), maximumFrameLength: maximumFrameLength)
    }
}
