import Foundation
import Logging
import NIOSSL
import Synchronization

/// Where the TLS front's certificate comes from.
public enum CertificateSource: Sendable, Equatable {
    /// PEM files: a full chain (leaf first) and its private key.
    case files(certificate: String, key: String)
    /// A self-signed certificate for `host`, generated once and persisted in `directory`.
    case selfSigned(host: String, directory: String)
}

/// The TLS server context, swappable at run time. New connections take the current context;
/// connections already open keep theirs, so a reload never drops anyone.
public final class TLSCertificateStore: Sendable {
    public let source: CertificateSource
    private let state: Mutex<(context: NIOSSLContext, fingerprint: String)>
    private let logger: Logger

    /// Loads (or for `.selfSigned`, creates) the certificate. Throws with the file and cause when unusable.
    public init(source: CertificateSource, logger: Logger) throws {
        self.source = source
        self.logger = logger
        state = Mutex(try Self.load(source, logger: logger))
    }

    public var currentContext: NIOSSLContext { state.withLock { $0.context } }
    /// SHA-256 of the leaf certificate's DER, uppercase hex pairs joined by ':' (as browsers show it).
    public var currentFingerprint: String { state.withLock { $0.fingerprint } }
    /// The current certificate as a DERP map pins it: `CertName` "sha256-raw:" + hex SHA-256 of its DER.
    public var derpCertName: String { "sha256-raw:" + currentFingerprint.replacingOccurrences(of: ":", with: "").lowercased() }

    /// Re-reads the source. On failure the old certificate stays in service and the error is returned.
    @discardableResult
    public func reload() -> Result<String, any Error> {
        do {
            let loaded = try Self.load(source, logger: logger)
            state.withLock { $0 = loaded }
            return .success(loaded.fingerprint)
        } catch {
            return .failure(error)
        }
    }

    private static func load(_ source: CertificateSource, logger: Logger) throws -> (context: NIOSSLContext, fingerprint: String) {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        switch source {
        case .files(let certificatePath, let keyPath):
            chain = try readChain(certificatePath)
            key = try readKey(keyPath)
        case .selfSigned(let host, let directory):
            let (certificatePath, keyPath) = try SelfSignedCertificate.ensure(host: host, directory: directory, logger: logger)
            chain = try readChain(certificatePath)
            key = try readKey(keyPath)
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ALPNChannel.applicationProtocols
        let context = try NIOSSLContext(configuration: configuration)
        return (context, try fingerprint(of: chain[0]))
    }

    private static func readChain(_ path: String) throws -> [NIOSSLCertificate] {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(path)
            guard !chain.isEmpty else { throw TLSSetupError(path: path, reason: "no PEM certificate in file") }
            return chain
        } catch let error as TLSSetupError {
            throw error
        } catch {
            throw TLSSetupError(path: path, reason: "cannot read certificate chain (\(error))")
        }
    }

    private static func readKey(_ path: String) throws -> NIOSSLPrivateKey {
        do {
            return try NIOSSLPrivateKey(file: path, format: .pem)
        } catch {
            throw TLSSetupError(path: path, reason: "cannot read private key (\(error))")
        }
    }

    static func fingerprint(of certificate: NIOSSLCertificate) throws -> String {
        SelfSignedCertificate.fingerprint(ofDER: try certificate.toDERBytes())
    }
}

/// A certificate or key that cannot be used; names the file.
public struct TLSSetupError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}
