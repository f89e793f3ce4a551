import NIOCore
import NIOPosix

extension Endpoint {
    /// The UDP endpoint of a socket address.
    init?(_ address: SocketAddress) {
        guard let ip = address.ipAddress, let port = address.port else { return nil }
        if let v4 = IPAddressBytes.parse(ip, family: AF_INET) {
            self = .udp(address: v4, port: UInt16(port))
        } else if let v6 = IPAddressBytes.parse(ip, family: AF_INET6) {
            self = .udp(address: v6, port: UInt16(port))
        } else {
            return nil
        }
    }

    /// The socket address of a UDP endpoint; nil for relayed ones.
    var socketAddress: SocketAddress? {
        guard case .udp(let address, let port) = self, let text = IPAddressBytes.format(address) else { return nil }
        return try? SocketAddress(ipAddress: text, port: Int(port))
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
        let datagram = Array(envelope.data.readableBytesView)
        if DirectProbe.isProbe(datagram) {
            node.handleDirect(node.direct?.receive(datagram, from: endpoint, now: .now) ?? [])
        } else {
            node.handle(node.device.receive(datagram, from: endpoint, now: .now))
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
