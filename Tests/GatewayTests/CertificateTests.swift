import Foundation
import Logging
import Testing

@testable import Gateway

@Suite struct CertificateTests {
    /// The self-signed certificate is generated once and reused across starts (clients may pin it).
    @Test func selfSignedIsPersistedAndReused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshgate-tls-\(UUID().uuidString)").path
        let logger = Logger(label: "test")
        let first = try TLSCertificateStore(source: .selfSigned(host: "localhost", directory: directory), logger: logger)
        let second = try TLSCertificateStore(source: .selfSigned(host: "localhost", directory: directory), logger: logger)
        #expect(first.currentFingerprint == second.currentFingerprint)
        let keyPath = directory + "/tls/self-signed-localhost.key"
        let permissions = try FileManager.default.attributesOfItem(atPath: keyPath)[.posixPermissions] as? Int
        #expect(permissions == 0o600)
    }

    /// A broken certificate file fails with its path; a failed reload keeps the old certificate.
    @Test func badFilesAreNamedAndReloadFailureKeepsOld() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshgate-tls-\(UUID().uuidString)").path
        let logger = Logger(label: "test")
        let (certificate, key) = try SelfSignedCertificate.ensure(host: "example.test", directory: directory, logger: logger)
        let store = try TLSCertificateStore(source: .files(certificate: certificate, key: key), logger: logger)
        let before = store.currentFingerprint
        try "not a certificate".write(toFile: certificate, atomically: true, encoding: .utf8)
        guard case .failure(let error) = store.reload() else { Issue.record("reload of garbage succeeded"); return }
        #expect("\(error)".hasPrefix(certificate))
        #expect(store.currentFingerprint == before)
    }
}
