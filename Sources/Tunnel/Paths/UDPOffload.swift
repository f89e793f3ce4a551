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

    /// The longest segment a segmented write towards `endpoint` may carry: the route's MTU less the IP and UDP
    /// headers, or 0 where segmented writes fail. The kernel refuses one when the route's device cannot checksum
    /// in hardware (EIO) or a segment would not fit the MTU unfragmented (EINVAL, or EMSGSIZE on newer kernels),
    /// and SwiftNIO closes a datagram channel on the first two. So each endpoint is asked on a throwaway socket
    /// routed the same way: the MTU of its route, and a segmented write of two one-byte datagrams (which the
    /// peer drops as malformed).
    static func segmentLimit(to endpoint: Endpoint) -> Int {
        #if os(Linux)
        guard sendAvailable, let address = endpoint.socketAddress else { return 0 }
        let inet6 = address.protocol == .inet6
        let fd = socket(inet6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var segment: Int32 = 1
        guard setsockopt(fd, Int32(IPPROTO_UDP), 103 /* UDP_SEGMENT */, &segment, socklen_t(MemoryLayout<Int32>.size)) == 0,
            address.withSockAddr({ connect(fd, $0, socklen_t($1)) }) == 0
        else { return 0 }
        // The connected route's MTU: IP_MTU (14) and IPV6_MTU (24), which the Swift overlay does not export.
        var mtu: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, inet6 ? Int32(IPPROTO_IPV6) : Int32(IPPROTO_IP), inet6 ? 24 : 14, &mtu, &length) == 0 else { return 0 }
        let probe: [UInt8] = [0, 0]
        guard send(fd, probe, probe.count, Int32(MSG_DONTWAIT)) == probe.count else { return 0 }
        return max(0, Int(mtu) - (inet6 ? 48 : 28))
        #else
        return 0
        #endif
    }

    /// How long a probe's answer stands: routes change (a VPN comes up, a path MTU shrinks).
    static let probeLifetime: TimeAmount = .seconds(30)

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
