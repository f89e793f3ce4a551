import NIOCore

/// Frames out of a byte stream (TCP after `Upgrade: DERP`, or the concatenated messages of a WebSocket,
/// which are not aligned to frames). One decoder for the relay and the client.
public struct DERPFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = DERPFrame

    /// Frames longer than this close the connection before anything is allocated for them.
    public var maximumFrameLength: Int

    /// - Parameter maximumFrameLength: a server uses `DERPLimits.maxClientInfoLength` (it covers the largest
    ///   packet frame too); a client `DERPLimits.maxFrameLength`.
    public init(maximumFrameLength: Int) { self.maximumFrameLength = maximumFrameLength }

    /// The next complete frame in `buffer` (consumed), nil if more bytes are needed.
    public static func next(from buffer: inout ByteBuffer, maximumFrameLength: Int) throws -> DERPFrame? {
        guard let type: UInt8 = buffer.getInteger(at: buffer.readerIndex),
            let length: UInt32 = buffer.getInteger(at: buffer.readerIndex + 1)
        else { return nil }
        guard Int(length) <= maximumFrameLength else {
            throw DERPError.frameTooLarge(type: type, length: Int(length), limit: maximumFrameLength)
        }
        guard buffer.readableBytes >= DERPLimits.frameHeaderLength + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: DERPLimits.frameHeaderLength)
        let payload = buffer.readSlice(length: Int(length))!
        return try DERPFrame.decode(type: type, payload: payload)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.next(from: &buffer, maximumFrameLength: maximumFrameLength) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Refuses packets over `DERPLimits.maxPacketSize` before they reach the wire, as Tailscale's `Client.send`
/// does ("packet too big"): the peer would close the connection over them.
public struct DERPFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = DERPFrame
    public init() {}
    public func encode(data: DERPFrame, out: inout ByteBuffer) throws {
        switch data {
        case .sendPacket(_, let packet), .recvPacket(_, let packet), .forwardPacket(_, _, let packet):
            guard packet.readableBytes <= DERPLimits.maxPacketSize else { throw DERPError.packetTooLarge(packet.readableBytes) }
        default:
            break
        }
        data.encode(into: &out)
    }
}
