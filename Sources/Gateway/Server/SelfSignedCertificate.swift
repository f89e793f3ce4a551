import Crypto
import Foundation
import Logging
import SwiftASN1
import X509

/// The certificate a deployment uses when it was given none: self-signed for the access URL's host,
/// generated once and kept in the data directory so clients can pin it across restarts.
enum SelfSignedCertificate {
    static let validity: TimeInterval = 365 * 86_400
    /// Regenerate when less than this remains, rather than serve a certificate about to expire.
    static let renewBefore: TimeInterval = 7 * 86_400

    /// Returns the paths of a usable certificate and key for `host`, generating them if missing or expiring.
    static func ensure(host: String, directory: String, now: Date = Date(), logger: Logger) throws -> (certificate: String, key: String) {
        let folder = URL(fileURLWithPath: directory).appendingPathComponent("tls")
        let safeHost = host.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }
        let certificatePath = folder.appendingPathComponent("self-signed-\(String(safeHost)).crt").path
        let keyPath = folder.appendingPathComponent("self-signed-\(String(safeHost)).key").path

        if let pem = try? String(contentsOfFile: certificatePath, encoding: .utf8),
            let existing = try? Certificate(pemEncoded: pem), FileManager.default.fileExists(atPath: keyPath),
            existing.notValidAfter > now.addingTimeInterval(renewBefore)
        {
            return (certificatePath, keyPath)
        }

        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let key = P256.Signing.PrivateKey()
        let certificate = try make(host: host, key: key, now: now)
        // Key first with 0600 from creation: there is no moment the key is world-readable.
        guard FileManager.default.createFile(atPath: keyPath, contents: Data(key.pemRepresentation.utf8), attributes: [.posixPermissions: 0o600])
        else { throw TLSSetupError(path: keyPath, reason: "cannot write generated key") }
        guard FileManager.default.createFile(atPath: certificatePath, contents: Data(try certificate.serializeAsPEM().pemString.utf8))
        else { throw TLSSetupError(path: certificatePath, reason: "cannot write generated certificate") }
        logger.notice("Generated a self-signed TLS certificate", metadata: ["tls.host": "\(host)", "tls.certificate": "\(certificatePath)"])
        return (certificatePath, keyPath)
    }

    static func make(host: String, key: P256.Signing.PrivateKey, now: Date) throws -> Certificate {
        let name = try DistinguishedName {
            CommonName(host)
            OrganizationName("meshgate self-signed")
        }
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),  // tolerate clients with a slightly slow clock
            notValidAfter: now.addingTimeInterval(validity),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(subjectAlternativeNames(for: host))
            },
            issuerPrivateKey: .init(key)
        )
    }

    /// SANs for `host`; "localhost" also covers the loopback addresses it resolves to.
    static func subjectAlternativeNames(for host: String) -> [GeneralName] {
        var names: [GeneralName] = []
        if let address = ipAddressBytes(host) {
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(address))))
        } else {
            names.append(.dnsName(host))
        }
        if host == "localhost" {
            names.append(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])))
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1]))))
        }
        return names
    }

    private static func ipAddressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        let bare = text.hasPrefix("[") && text.hasSuffix("]") ? String(text.dropFirst().dropLast()) : text
        if inet_pton(AF_INET6, bare, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// SHA-256 of a certificate's DER as uppercase hex pairs joined by ':'.
    static func fingerprint(ofDER der: [UInt8]) -> String {
        SHA256.hash(data: der).map { String(format: "%02X", $0) }.joined(separator: ":")
    }
}
