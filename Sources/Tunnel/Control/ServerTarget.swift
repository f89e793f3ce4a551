import Foundation
import NIOCore
import NIOSSL

/// Where a node dials one of meshgate's own servers (a DERP relay, the control API): host, port, TLS or not,
/// and the path, taken from an `http(s)://` URL.
struct ServerTarget: Sendable {
    let host: String
    let port: Int
    let secure: Bool
    let path: String

    /// `defaultPath` stands in for an empty path or "/".
    init(url: URL, defaultPath: String) throws(DERPConnection.DialError) {
        guard let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme), let host = url.host, !host.isEmpty else {
            throw DERPConnection.DialError.badURL(url.absoluteString)
        }
        (self.host, self.secure) = (host, scheme == "https")
        self.port = url.port ?? (secure ? 443 : 80)
        self.path = url.path.isEmpty || url.path == "/" ? defaultPath : url.path
    }

    var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return (secure && port == 443) || (!secure && port == 80) ? name : "\(name):\(port)"
    }

    /// SNI only for names: RFC 6066 forbids IP literals.
    var serverName: String? { host.first?.isNumber == true || host.contains(":") ? nil : host }
}

extension DERPTrust {
    /// Full verification; a pin replaces it through the handler's callback (`.none` would skip the callback too).
    static func makeTLSContext() throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.applicationProtocols = ["http/1.1"]  // an upgrade needs HTTP/1.1; h2 cannot carry it
        return try NIOSSLContext(configuration: tls)
    }

    /// The TLS handler that checks the server's certificate this way.
    func makeClientHandler(context: NIOSSLContext, serverHostname: String?) throws -> NIOSSLClientHandler {
        switch self {
        case .systemRoots:
            return try NIOSSLClientHandler(context: context, serverHostname: serverHostname)
        case .pinnedSHA256(let pin):
            return try NIOSSLClientHandler(context: context, serverHostname: serverHostname) { certificates, promise in
                let der = (try? certificates.first?.toDERBytes()) ?? []
                promise.succeed(ConstantTime.equal(SHA256.hash(der), pin) ? .certificateVerified : .failed)
            }
        }
    }
}

extension DERPTrust {
    /// A pin from a certificate fingerprint as people copy it: 64 hex digits, colons allowed
    /// (`meshgate server` prints "SHA-256 AB:CD:…" for a generated certificate).
    public init?(fingerprint: String) {
        guard let bytes = Hex.decode(fingerprint.replacingOccurrences(of: ":", with: "")), bytes.count == 32 else { return nil }
        self = .pinnedSHA256(bytes)
    }
}
