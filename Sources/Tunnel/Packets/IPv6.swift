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
        // 64-bit accumulator: no carry handling per word; folded once at the end.
        var sum: UInt64 = 0
        func add(_ bytes: some Collection<UInt8>) {
            let contiguous: Void? = bytes.withContiguousStorageIfAvailable { buffer in
                // Four bytes at a time (every stream packet is summed): a 32-bit big-endian word folds to the
                // same ones' complement sum as its two 16-bit halves, since 2^16 ≡ 1 (mod 2^16 - 1).
                let raw = UnsafeRawBufferPointer(buffer)
                var index = 0
                while index + 4 <= raw.count {
                    sum &+= UInt64(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: index, as: UInt32.self)))
                    index += 4
                }
                while index + 1 < raw.count {
                    sum &+= UInt64(raw[index]) << 8 | UInt64(raw[index + 1])
                    index += 2
                }
                if index < raw.count { sum &+= UInt64(raw[index]) << 8 }
            }
            guard contiguous == nil else { return }
            var iterator = bytes.makeIterator()
            while let high = iterator.next() {
                let low = iterator.next() ?? 0
                sum &+= UInt64(high) << 8 | UInt64(low)
            }
        }
        add(source)
        add(destination)
        let length = UInt32(upperLayer.count)
        add([UInt8(length >> 24), UInt8((length >> 16) & 0xff), UInt8((length >> 8) & 0xff), UInt8(length & 0xff), 0, 0, 0, nextHeader])
        add(upperLayer)
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
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

    /// IPv6 header, UDP header and `payload` built in one array (one copy of the payload: this runs per packet).
    public static func packet(source: MeshAddress, destination: MeshAddress, sourcePort: UInt16, destinationPort: UInt16,
                              payload: some Collection<UInt8>) -> [UInt8] {
        let length = headerLength + payload.count
        var packet: [UInt8] = []
        packet.reserveCapacity(IPv6Header.length + length)
        packet += [0x60, 0, 0, 0, UInt8(length >> 8), UInt8(length & 0xff), nextHeader, 64]
        packet += source.bytes
        packet += destination.bytes
        packet += [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), UInt8(destinationPort >> 8), UInt8(destinationPort & 0xff),
                   UInt8(length >> 8), UInt8(length & 0xff), 0, 0]
        packet += payload
        var checksum = IPv6Header.checksum(source: source.bytes, destination: destination.bytes, nextHeader: nextHeader,
                                           upperLayer: packet[IPv6Header.length...])
        if checksum == 0 { checksum = 0xffff }  // zero means "no checksum", which IPv6 forbids
        packet[IPv6Header.length + 6] = UInt8(checksum >> 8)
        packet[IPv6Header.length + 7] = UInt8(checksum & 0xff)
        return packet
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
