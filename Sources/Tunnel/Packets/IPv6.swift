import NIOCore

/// The fixed 40-byte IPv6 header (RFC 8200) of packets carried inside the mesh.
///
///     0: version 4 bits (6) | traffic class 8 | flow label 20
///     4: payload length u16 | next header u8 | hop limit u8
///     8: source 16 bytes | 24: destination 16 bytes | 40: payload
public struct IPv6Header: Equatable, Sendable {
    public static let length = 40
    public var source: [UInt8]
    public var destination: [UInt8]
    public var nextHeader: UInt8
    public var hopLimit: UInt8
    public var payloadLength: Int

    public var totalLength: Int { Self.length + payloadLength }

    /// Parses the header; nil unless it is IPv6 and at least 40 bytes long.
    public init?(_ packet: some RandomAccessCollection<UInt8>) {
        guard packet.count >= Self.length else { return nil }
        let bytes = Array(packet.prefix(Self.length))
        guard bytes[0] >> 4 == 6 else { return nil }
        payloadLength = Int(bytes[4]) << 8 | Int(bytes[5])
        nextHeader = bytes[6]
        hopLimit = bytes[7]
        source = Array(bytes[8..<24])
        destination = Array(bytes[24..<40])
    }

    public init(source: [UInt8], destination: [UInt8], nextHeader: UInt8, payloadLength: Int, hopLimit: UInt8 = 64) {
        (self.source, self.destination, self.nextHeader, self.payloadLength, self.hopLimit) = (source, destination, nextHeader, payloadLength, hopLimit)
    }

    /// Header followed by `payload`.
    public static func packet(source: MeshAddress, destination: MeshAddress, nextHeader: UInt8, payload: [UInt8], hopLimit: UInt8 = 64) -> [UInt8] {
        var packet = [UInt8](repeating: 0, count: length)
        packet[0] = 0x60
        packet[4] = UInt8(payload.count >> 8)
        packet[5] = UInt8(payload.count & 0xff)
        packet[6] = nextHeader
        packet[7] = hopLimit
        packet.replaceSubrange(8..<24, with: source.bytes)
        packet.replaceSubrange(24..<40, with: destination.bytes)
        return packet + payload
    }

    /// Internet checksum over the IPv6 pseudo-header and `upperLayer` (RFC 8200 §8.1), for ICMPv6 and UDP.
    static func checksum(source: [UInt8], destination: [UInt8], nextHeader: UInt8, upperLayer: some Collection<UInt8>) -> UInt16 {
        var sum: UInt64 = 0
        source.withUnsafeBytes { InternetChecksum.add($0, to: &sum) }
        destination.withUnsafeBytes { InternetChecksum.add($0, to: &sum) }
        InternetChecksum.addPseudoHeaderTail(length: upperLayer.count, nextHeader: nextHeader, to: &sum)
        let contiguous: Void? = upperLayer.withContiguousStorageIfAvailable { InternetChecksum.add(UnsafeRawBufferPointer($0), to: &sum) }
        if contiguous == nil { Array(upperLayer).withUnsafeBytes { InternetChecksum.add($0, to: &sum) } }
        return InternetChecksum.finish(sum)
    }

    /// The same checksum for the packet in `packet` (header included), its addresses read in place: per packet.
    static func checksum(packet: UnsafeRawBufferPointer, nextHeader: UInt8) -> UInt16 {
        var sum: UInt64 = 0
        InternetChecksum.add(UnsafeRawBufferPointer(rebasing: packet[8..<40]), to: &sum)
        InternetChecksum.addPseudoHeaderTail(length: packet.count - length, nextHeader: nextHeader, to: &sum)
        InternetChecksum.add(UnsafeRawBufferPointer(rebasing: packet[length...]), to: &sum)
        return InternetChecksum.finish(sum)
    }

    /// The length of the IPv6 packet at the start of `packet` (header and payload), read in place; nil unless it
    /// is IPv6 and all of it is there (anything after it is padding).
    static func totalLength(of packet: ByteBuffer) -> Int? {
        guard packet.readableBytes >= length, let first = packet.getInteger(at: packet.readerIndex, as: UInt8.self), first >> 4 == 6,
            let payloadLength = packet.getInteger(at: packet.readerIndex + 4, as: UInt16.self), length + Int(payloadLength) <= packet.readableBytes
        else { return nil }
        return length + Int(payloadLength)
    }
}

/// The Internet checksum (RFC 1071): a ones' complement sum of 16-bit big-endian words. Summed here eight bytes
/// at a time in the machine's order with end-around carry, which RFC 1071 §2 shows gives the same sum once
/// folded and put back in network order; parts must start at even offsets of the whole.
enum InternetChecksum {
    @inline(__always)
    static func add(_ bytes: UnsafeRawBufferPointer, to sum: inout UInt64) {
        var index = 0
        while index + 8 <= bytes.count {
            addWord(bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self), to: &sum)
            index += 8
        }
        guard index < bytes.count else { return }
        // The last few bytes, zero-padded: an odd final byte pairs with a zero, as the RFC pads.
        var tail: UInt64 = 0
        withUnsafeMutableBytes(of: &tail) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[index...])) }
        addWord(tail, to: &sum)
    }

    /// The pseudo-header's upper-layer length (32 bits) and next header (after three zero bytes).
    @inline(__always)
    static func addPseudoHeaderTail(length: Int, nextHeader: UInt8, to sum: inout UInt64) {
        var tail = (UInt32(length).bigEndian, UInt32(nextHeader).bigEndian)
        withUnsafeBytes(of: &tail) { add($0, to: &sum) }
    }

    @inline(__always)
    private static func addWord(_ word: UInt64, to sum: inout UInt64) {
        let (result, overflow) = sum.addingReportingOverflow(word)
        sum = result &+ (overflow ? 1 : 0)
    }

    /// Folds the sum to 16 bits, back in network order, complemented.
    static func finish(_ sum: UInt64) -> UInt16 {
        var folded = (sum & 0xffff_ffff) + (sum >> 32)
        folded = (folded & 0xffff) + (folded >> 16)
        folded = (folded & 0xffff) + (folded >> 16)
        folded = (folded & 0xffff) + (folded >> 16)
        return ~UInt16(bigEndian: UInt16(truncatingIfNeeded: folded))
    }
}

/// ICMPv6 echo (RFC 4443 §4): enough to answer `ping` and to send one.
public enum ICMPv6 {
    public static let nextHeader: UInt8 = 58
    static let echoRequest: UInt8 = 128
    static let echoReply: UInt8 = 129

    public struct Echo: Equatable, Sendable {
        public var identifier: UInt16
        public var sequence: UInt16
        public var data: [UInt8]
    }

    /// An echo request/reply packet from `source` to `destination`.
    public static func packet(reply: Bool, source: MeshAddress, destination: MeshAddress, echo: Echo) -> [UInt8] {
        var message: [UInt8] = [reply ? echoReply : echoRequest, 0, 0, 0,
                                UInt8(echo.identifier >> 8), UInt8(echo.identifier & 0xff),
                                UInt8(echo.sequence >> 8), UInt8(echo.sequence & 0xff)] + echo.data
        let checksum = IPv6Header.checksum(source: source.bytes, destination: destination.bytes, nextHeader: nextHeader, upperLayer: message)
        message[2] = UInt8(checksum >> 8)
        message[3] = UInt8(checksum & 0xff)
        return IPv6Header.packet(source: source, destination: destination, nextHeader: nextHeader, payload: message)
    }

    /// The echo in `packet` if it is a well-formed ICMPv6 echo of the given kind with a valid checksum.
    public static func parse(_ packet: [UInt8], reply: Bool) -> (header: IPv6Header, echo: Echo)? {
        guard let header = IPv6Header(packet), header.nextHeader == nextHeader, header.totalLength <= packet.count,
            header.payloadLength >= 8
        else { return nil }
        let message = packet[IPv6Header.length..<header.totalLength]
        let start = message.startIndex
        guard message[start] == (reply ? echoReply : echoRequest), message[start + 1] == 0,
            IPv6Header.checksum(source: header.source, destination: header.destination, nextHeader: nextHeader, upperLayer: message) == 0
        else { return nil }
        let echo = Echo(
            identifier: UInt16(message[start + 4]) << 8 | UInt16(message[start + 5]),
            sequence: UInt16(message[start + 6]) << 8 | UInt16(message[start + 7]),
            data: Array(message[(start + 8)...])
        )
        return (header, echo)
    }

    /// The reply to an echo request addressed to `local`, or nil when `packet` is not one.
    public static func reply(to packet: [UInt8], local: MeshAddress) -> [UInt8]? {
        guard let (header, echo) = parse(packet, reply: false), header.destination == local.bytes,
            let source = MeshAddress(bytes: header.source)
        else { return nil }
        return Self.packet(reply: true, source: local, destination: source, echo: echo)
    }
}

/// UDP inside IPv6 (RFC 768 with the RFC 8200 checksum, mandatory over IPv6): how mesh streams travel.
public enum UDPDatagram {
    public static let nextHeader: UInt8 = 17
    public static let headerLength = 8

    public struct Decoded: Equatable, Sendable {
        public var source: MeshAddress
        public var destination: MeshAddress
        public var sourcePort: UInt16
        public var destinationPort: UInt16
        public var payload: [UInt8]
    }

    /// IPv6 header, UDP header and `payload` as one array (tests and the slow path; streams use `write`).
    public static func packet(source: MeshAddress, destination: MeshAddress, sourcePort: UInt16, destinationPort: UInt16,
                              payload: some Collection<UInt8>) -> [UInt8] {
        var packet = ByteBuffer()
        write(source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort,
              payload: ByteBuffer(bytes: payload), into: &packet)
        return Array(packet.readableBytesView)
    }

    /// Appends IPv6 header, UDP header and `payload` to `buffer`, checksum included: the payload's one copy on its
    /// way from a stream to the socket.
    static func write(source: MeshAddress, destination: MeshAddress, sourcePort: UInt16, destinationPort: UInt16,
                      payload: ByteBuffer, into buffer: inout ByteBuffer) {
        let start = buffer.writerIndex
        let length = UInt16(headerLength + payload.readableBytes)
        buffer.writeInteger(UInt32(0x6000_0000))
        buffer.writeInteger(length)
        buffer.writeInteger(nextHeader)
        buffer.writeInteger(UInt8(64))  // hop limit
        buffer.writeBytes(source.bytes)
        buffer.writeBytes(destination.bytes)
        buffer.writeInteger(sourcePort)
        buffer.writeInteger(destinationPort)
        buffer.writeInteger(length)
        buffer.writeInteger(UInt16(0))
        buffer.writeImmutableBuffer(payload)
        var checksum = buffer.withUnsafeReadableBytes { bytes in
            IPv6Header.checksum(packet: UnsafeRawBufferPointer(rebasing: bytes[(start - buffer.readerIndex)...]), nextHeader: nextHeader)
        }
        if checksum == 0 { checksum = 0xffff }  // zero means "no checksum", which IPv6 forbids
        buffer.setInteger(checksum, at: start + IPv6Header.length + 6)
    }

    /// The payload of `packet` (an IPv6 packet exactly) if it is UDP to `destination` port `port`: a slice, no copy,
    /// checksum not checked (WireGuard has just authenticated the bytes; see `decode`).
    static func payload(of packet: ByteBuffer, to destination: MeshAddress, port: UInt16) -> ByteBuffer? {
        let start = packet.readerIndex
        guard packet.readableBytes >= IPv6Header.length + headerLength, packet.getInteger(at: start + 6, as: UInt8.self) == nextHeader,
            packet.getInteger(at: start + IPv6Header.length + 2, as: UInt16.self) == port,
            packet.getInteger(at: start + IPv6Header.length + 4, as: UInt16.self) == UInt16(packet.readableBytes - IPv6Header.length),
            packet.getInteger(at: start + IPv6Header.length + 6, as: UInt16.self) != 0,
            packet.withUnsafeReadableBytes({ $0[24..<40].elementsEqual(destination.bytes) })
        else { return nil }
        return packet.getSlice(at: start + IPv6Header.length + headerLength, length: packet.readableBytes - IPv6Header.length - headerLength)
    }

    /// The datagram in `packet`; nil if it is not UDP, is truncated, or fails its checksum. `verifyChecksum:
    /// false` is for packets WireGuard has just authenticated, whose bytes cannot have changed since the peer
    /// computed the checksum (the mesh streams skip a pass over every payload this way).
    public static func decode(_ packet: [UInt8], verifyChecksum: Bool = true) -> Decoded? {
        guard let header = IPv6Header(packet), header.nextHeader == nextHeader, header.totalLength <= packet.count,
            header.payloadLength >= headerLength, let source = MeshAddress(bytes: header.source),
            let destination = MeshAddress(bytes: header.destination)
        else { return nil }
        let segment = packet[IPv6Header.length..<header.totalLength]
        let s = segment.startIndex
        let length = Int(segment[s + 4]) << 8 | Int(segment[s + 5])
        guard length == segment.count, segment[s + 6] != 0 || segment[s + 7] != 0,
            !verifyChecksum || IPv6Header.checksum(source: header.source, destination: header.destination, nextHeader: nextHeader, upperLayer: segment) == 0
        else { return nil }
        return Decoded(
            source: source, destination: destination,
            sourcePort: UInt16(segment[s]) << 8 | UInt16(segment[s + 1]), destinationPort: UInt16(segment[s + 2]) << 8 | UInt16(segment[s + 3]),
            payload: Array(segment[(s + 8)...])
        )
    }
}
