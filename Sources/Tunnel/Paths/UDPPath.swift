import NIOCore
import NIOPosix

extension Endpoint {
    /// The UDP endpoint of a socket address. Both directions run for every datagram, so they copy the address
    /// bytes out of and into the `sockaddr` itself: through text (`ipAddress`, inet_ntop and inet_pton) they were
    /// a good part of the cost of a packet.
    init?(_ address: SocketAddress) {
        // Where the address sits in `sockaddr_in` (after family and port) and in `sockaddr_in6` (after the flow
        // label too): the same on every platform SwiftNIO runs on.
        let (offset, count): (Int, Int)
        switch address.protocol {
        case .inet: (offset, count) = (4, 4)
        case .inet6: (offset, count) = (8, 16)
        default: return nil
        }
        guard let port = address.port else { return nil }
        let bytes = address.withSockAddr { pointer, length in
            length >= offset + count ? Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(pointer) + offset, count: count)) : nil
        }
        guard let bytes else { return nil }
        self = .udp(address: bytes, port: UInt16(port))
    }

    /// The socket address of a UDP endpoint; nil for relayed ones.
    var socketAddress: SocketAddress? {
        guard case .udp(let address, let port) = self else { return nil }
        return try? SocketAddress(packedIPAddress: ByteBuffer(bytes: address), port: Int(port))
    }
}

enum IPAddressBytes {
    static func parse(_ text: String, family: Int32) -> [UInt8]? {
        var storage = [UInt8](repeating: 0, count: 16)
        guard inet_pton(family, text, &storage) == 1 else { return nil }
        return Array(storage.prefix(family == AF_INET ? 4 : 16))
    }

    static func format(_ bytes: [UInt8]) -> String? {
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(family, bytes, &text, socklen_t(text.count)) != nil else { return nil }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The direct-UDP path: one datagram socket carrying WireGuard messages to and from peers' endpoints.
/// Runs the device on the socket's event loop, so packets never hop threads.
final class UDPPathHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let node: MeshNode.LoopState

    init(node: MeshNode.LoopState) { self.node = node }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let endpoint = Endpoint(envelope.remoteAddress) else { return }
        let segmentSize = envelope.metadata?.segmentSize
        if let segmentSize, envelope.data.readableBytes > segmentSize { node.coalescedReads += 1 }
        UDPOffload.split(envelope.data, segmentSize: segmentSize) { datagram in
            if DirectProbe.isProbe(datagram.readableBytesView) {
                node.handleDirect(node.direct?.receive(Array(datagram.readableBytesView), from: endpoint, now: .now) ?? [])
            } else {
                node.receive(datagram, from: endpoint)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

/// Whether the host has a route to a UDP endpoint, asked of the kernel without sending anything: `connect` on a
/// throwaway datagram socket fails at once (ENETUNREACH) when there is none. A send on the node's socket would fail
/// the same way, and SwiftNIO closes a datagram channel on that error.
enum UDPRoute {
    static func exists(to endpoint: Endpoint) -> Bool {
        guard let address = endpoint.socketAddress else { return false }
        let fd = socket(address.protocol == .inet6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return address.withSockAddr { connect(fd, $0, socklen_t($1)) } == 0
    }
}
