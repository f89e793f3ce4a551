import AppProxy
import HummingbirdCore
import HummingbirdHTTP2
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP2
import NIOSSL
import NIOTLS

/// The TLS front's child channel: TLS, then ALPN decides the protocol of the whole connection.
///
/// `h2` gets Hummingbird's HTTP/2 channel; `http/1.1` (or no ALPN) gets HTTP/1.1 *with* WebSocket and
/// DERP upgrades.
/// Hummingbird's own `HTTP2UpgradeChannel` pairs HTTP/2 with plain HTTP/1.1 only, which would leave
/// WebSockets (terminal, coordinator, DERP-over-WebSocket) unreachable on the TLS port.
///
/// The TLS context is read from `certificates` once per connection, so a SIGHUP reload applies to new
/// connections while open ones keep the context they started with.
struct ALPNChannel: ServerChildChannel {
    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<NIONegotiatedHTTPVersion<DERPAwareHTTP1Channel.Value, AppHTTP2Channel.Value>>
        let channel: any Channel
    }

    /// Protocols offered, in server preference order.
    static let applicationProtocols = ["h2", "http/1.1"]

    let certificates: TLSCertificateStore
    let http1: DERPAwareHTTP1Channel
    let http2: AppHTTP2Channel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(NIOSSLServerHandler(context: certificates.currentContext))
            let alpn = NIOTypedApplicationProtocolNegotiationHandler<
                NIONegotiatedHTTPVersion<DERPAwareHTTP1Channel.Value, AppHTTP2Channel.Value>
            > { result in
                switch result {
                case .negotiated("h2"):
                    return http2.setup(channel: channel, logger: logger).map { .http2($0) }
                case .negotiated("http/1.1"), .fallback:
                    return http1.setup(channel: channel, logger: logger).map { .http1_1($0) }
                case .negotiated(let other):
                    // BoringSSL only selects from what we offered; anything else is a broken peer.
                    logger.debug("Unexpected ALPN protocol", metadata: ["tls.alpn": "\(other)"])
                    return channel.close().flatMapThrowing { throw NIOHTTP2Errors.invalidALPNToken() }
                }
            }
            try sync.addHandler(alpn)
            return Value(negotiated: alpn.protocolNegotiationResult, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .http1_1(let connection): await http1.handle(value: connection, logger: logger)
            case .http2(let connection): await http2.handle(value: connection, logger: logger)
            }
        } catch {
            // Failed handshakes are routine on a public port (scanners, wrong trust): debug, not error.
            logger.debug("TLS connection ended before a protocol was chosen", metadata: ["error": "\(error)"])
        }
    }
}
