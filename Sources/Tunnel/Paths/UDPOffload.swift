import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// UDP segmentation offload (GSO) on send and receive offload (GRO), Linux only.
///
/// A bulk transfer is tens of thousands of datagrams a second, and the kernel's per-datagram path (routing, socket
/// queues, a system call's share) was a fifth of each side's CPU. With GSO one write carries a run of equal-sized
/// datagrams and the kernel (or the NIC) cuts it; with GRO the receiving socket gets such runs whole (across a veth,
/// the run is never cut at all). wireguard-go does the same.
enum UDPOffload {
    /// At most this many datagrams per write: the kernel's UDP_MAX_SEGMENTS (64 since Linux 4.18), which its
    /// headers do not export.
    static let maxSegments = 64
    /// At most this many bytes per write: a UDP datagram's payload limit, with room for the headers.
    static let maxBytes = 60_000
    /// A receive slot must hold a whole coalesced run (the kernel caps GRO at 64 KiB); a smaller one truncates it.
    static let receiveSlotSize = 65_536

    static var sendAvailable: Bool { System.supportsUDPSegmentationOffload }
    static var receiveAvailable: Bool { System.supportsUDPReceiveOffload }

    /// Whether a segmented write towards `endpoint` goes through. The kernel refuses one (EIO) when the route's
    /// device cannot checksum in hardware, and SwiftNIO closes a datagram channel on that error, so each endpoint
    /// is asked once, on a throwaway socket routed the same way. The probe is two one-byte datagrams, which the
    /// peer drops as malformed.
    static func segmentationWorks(to endpoint: Endpoint) -> Bool {
        #if os(Linux)
        guard sendAvailable, let address = endpoint.socketAddress else { return false }
        let fd = socket(address.protocol == .inet6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var segment: Int32 = 1
        guard setsockopt(fd, Int32(IPPROTO_UDP), 103 /* UDP_SEGMENT */, &segment, socklen_t(MemoryLayout<Int32>.size)) == 0,
            address.withSockAddr({ connect(fd, $0, socklen_t($1)) }) == 0
        else { return false }
        let probe: [UInt8] = [0, 0]
        return send(fd, probe, probe.count, Int32(MSG_DONTWAIT)) == probe.count
        #else
        return false
        #endif
    }

    /// Turns GRO on for `channel` if the kernel lets it: a run of datagrams then arrives as one, with its segment
    /// size. The size is asked for first: a run without it would read as one oversized datagram. A kernel that
    /// refuses either just delivers datagrams one by one.
    static func receiveCoalesced(on channel: any Channel) {
        guard receiveAvailable, let options = channel.syncOptions,
            (try? options.setOption(.datagramReceiveSegmentSize, value: true)) != nil
        else { return }
        _ = try? options.setOption(.datagramReceiveOffload, value: true)
    }

    /// Consecutive datagrams to one endpoint that can go as one segmented write: all the size of the first, except
    /// that the last may be shorter.
    struct Run {
        let endpoint: Endpoint
        private(set) var datagrams: [ByteBuffer]
        private(set) var bytes: Int
        /// A shorter datagram ended the run.
        private var closed = false

        init(_ datagram: ByteBuffer, to endpoint: Endpoint) {
            (self.endpoint, datagrams, bytes) = (endpoint, [datagram], datagram.readableBytes)
        }

        var segmentSize: Int { datagrams[0].readableBytes }

        /// Adds `datagram` if it can join; false when the run must be sent first.
        mutating func append(_ datagram: ByteBuffer, to endpoint: Endpoint) -> Bool {
            let size = datagram.readableBytes
            guard !closed, endpoint == self.endpoint, size <= segmentSize, datagrams.count < UDPOffload.maxSegments,
                bytes + size <= UDPOffload.maxBytes
            else { return false }
            datagrams.append(datagram)
            bytes += size
            closed = size < segmentSize
            return true
        }

        /// The run as one buffer, for a write with `segmentSize` set.
        func joined(allocator: ByteBufferAllocator) -> ByteBuffer {
            var buffer = allocator.buffer(capacity: bytes)
            for datagram in datagrams { buffer.writeImmutableBuffer(datagram) }
            return buffer
        }
    }

    /// The datagrams of a coalesced read (`segmentSize` each, the last possibly shorter), as slices.
    static func split(_ data: ByteBuffer, segmentSize: Int?, _ body: (ByteBuffer) -> Void) {
        guard let segmentSize, segmentSize > 0, data.readableBytes > segmentSize else { return body(data) }
        var rest = data
        while rest.readableBytes > 0, let segment = rest.readSlice(length: min(segmentSize, rest.readableBytes)) { body(segment) }
    }
}
