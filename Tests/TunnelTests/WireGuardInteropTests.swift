import Foundation
import NIOCore
import Testing

@testable import Tunnel

/// Interop with Debian's wireguard-go: a real WireGuard peer in its own network namespace, joined to the
/// test's namespace by a veth pair. Needs root, iproute2 and wireguard-go (make test installs them);
/// without them the tests are reported as skipped with the reason.
enum Interop {
    static var available: Bool {
        getuid() == 0 && ["/usr/bin/wireguard-go", "/usr/bin/wg", "/usr/bin/ping", "/usr/bin/unshare"].allSatisfy {
            FileManager.default.isExecutableFile(atPath: $0)
        } && (FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/usr/bin/ip"))
    }

    @discardableResult
    static func run(_ arguments: String..., allowFailure: Bool = false) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        if process.terminationStatus != 0 && !allowFailure {
            throw InteropError("\(arguments.joined(separator: " ")) failed (\(process.terminationStatus)): \(output)")
        }
        return (process.terminationStatus, output)
    }
}

struct InteropError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A namespace with wireguard-go listening on wg0, reachable from here over a veth pair.
final class WireGuardGoPeer {
    let namespace: String
    let hostInterface: String
    let hostAddress: String
    let peerAddress: String
    let privateKey = NodePrivateKey.generate()
    let meshAddress = MeshAddress("fd7a:115c:a1e0::2")!
    let port = 51820
    private let process = Process()
    private let directory: URL

    init() throws {
        let id = String(UInt32.random(in: 0..<0xffff), radix: 16)
        namespace = "mgwg\(id)"
        hostInterface = "mgh\(id)"
        let subnet = Int.random(in: 1..<250)
        hostAddress = "10.213.\(subnet).1"
        peerAddress = "10.213.\(subnet).2"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshgate-wg-\(id)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)

        try Interop.run("ip", "netns", "add", namespace)
        try Interop.run("ip", "link", "add", hostInterface, "type", "veth", "peer", "name", "mgn\(id)")
        try Interop.run("ip", "link", "set", "mgn\(id)", "netns", namespace)
        try Interop.run("ip", "addr", "add", "\(hostAddress)/24", "dev", hostInterface)
        try Interop.run("ip", "link", "set", hostInterface, "up")
        try Interop.run("ip", "netns", "exec", namespace, "ip", "addr", "add", "\(peerAddress)/24", "dev", "mgn\(id)")
        try Interop.run("ip", "netns", "exec", namespace, "ip", "link", "set", "mgn\(id)", "up")
        try Interop.run("ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up")

        // wireguard-go's control socket lives in /run/wireguard: give it a private one (see reference notes).
        try FileManager.default.createDirectory(atPath: "/run/wireguard", withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip", "netns", "exec", namespace, "unshare", "-m", "--propagation", "private", "sh", "-c",
                             "mount -t tmpfs tmpfs /run/wireguard && exec wireguard-go -f wg0"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<100 where try Interop.run("nsenter", "-t", "\(process.processIdentifier)", "-m", "-n", "wg", "show", "wg0", allowFailure: true).status != 0 {
            usleep(50_000)
        }
        let keyFile = directory.appendingPathComponent("wg.key").path
        try (privateKey.base64 + "\n").write(toFile: keyFile, atomically: true, encoding: .utf8)
        try wg("set", "wg0", "private-key", keyFile, "listen-port", "\(port)")
        try Interop.run("ip", "netns", "exec", namespace, "ip", "-6", "addr", "add", "\(meshAddress)/48", "dev", "wg0")
        try Interop.run("ip", "netns", "exec", namespace, "ip", "link", "set", "wg0", "mtu", "1280", "up")
    }

    @discardableResult
    func wg(_ arguments: String...) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["nsenter", "-t", "\(self.process.processIdentifier)", "-m", "-n", "wg"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw InteropError("wg \(arguments.joined(separator: " ")): \(output)") }
        return output
    }

    /// Lets `node` in as a peer (allowed IPs: its /128), reachable at `port` on the host side.
    func allow(_ node: NodePublicKey, address: MeshAddress, port: Int) throws {
        try wg("set", "wg0", "peer", node.base64, "allowed-ips", "\(address)/128", "endpoint", "\(hostAddress):\(port)")
    }

    /// Unix time of the latest handshake with `node` (0: never).
    func latestHandshake(with node: NodePublicKey) throws -> Int {
        let output = try wg("show", "wg0", "latest-handshakes")
        for line in output.split(separator: "\n") {
            let fields = line.split(whereSeparator: \.isWhitespace)
            if fields.count == 2, fields[0] == node.base64 { return Int(fields[1]) ?? 0 }
        }
        return 0
    }

    func ping(_ address: MeshAddress, count: Int = 3) throws -> Int32 {
        try Interop.run("ip", "netns", "exec", namespace, "ping", "-6", "-c", "\(count)", "-i", "0.2", "-W", "3", "\(address)", allowFailure: true).status
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        _ = try? Interop.run("ip", "netns", "del", namespace, allowFailure: true)
        _ = try? Interop.run("ip", "link", "del", hostInterface, allowFailure: true)
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite(.serialized, .enabled(if: Interop.available, "SKIPPED LOUDLY: needs root, iproute2 and wireguard-go (make test installs them)"))
struct WireGuardInteropTests {
    let swiftAddress = MeshAddress("fd7a:115c:a1e0::1")!

    func withPeer(_ body: (WireGuardGoPeer) async throws -> Void) async throws {
        let peer = try WireGuardGoPeer()
        do {
            try await body(peer)
        } catch {
            peer.stop()
            throw error
        }
        peer.stop()
    }

    /// wireguard-go pings the Swift node (which answers ICMPv6 itself); the Swift node pings wireguard-go's
    /// address and the Linux kernel behind wg0 answers; a forced rekey keeps pings flowing.
    @Test func handshakeAndPingsBothWaysAndRekey() async throws {
        try await withPeer { peer in
            let node = try await MeshNode.start(privateKey: .generate(), address: swiftAddress, host: peer.hostAddress)
            let port = try #require(node.localPort)
            try peer.allow(node.privateKey.publicKey, address: swiftAddress, port: port)
            try await node.addPeer(
                peer.privateKey.publicKey, allowedIPs: [MeshPrefix(peer.meshAddress, length: 128)!],
                endpoint: try SocketAddress(ipAddress: peer.peerAddress, port: peer.port)
            )

            #expect(try peer.ping(swiftAddress) == 0, "wireguard-go's namespace got no echo replies from the Swift node")
            #expect(try peer.latestHandshake(with: node.privateKey.publicKey) > 0)
            let rtt = try await node.ping(peer.meshAddress)
            #expect(rtt < .seconds(1))

            let before = try await node.handshakesCompleted(with: peer.privateKey.publicKey)
            for round in 0..<6 {
                if round == 2 { try await node.forceHandshake(with: peer.privateKey.publicKey) }
                _ = try await node.ping(peer.meshAddress, timeout: .seconds(3))
            }
            #expect(try await node.handshakesCompleted(with: peer.privateKey.publicKey) == before + 1)
            #expect(try peer.ping(swiftAddress, count: 2) == 0)
            try await node.close()
        }
    }

    /// A node whose key wireguard-go does not know completes no handshake and gets no replies.
    @Test func wrongKeyGetsNoHandshake() async throws {
        try await withPeer { peer in
            let node = try await MeshNode.start(privateKey: .generate(), address: swiftAddress, host: peer.hostAddress)
            let port = try #require(node.localPort)
            try peer.allow(NodePrivateKey.generate().publicKey, address: swiftAddress, port: port)  // some other key
            try await node.addPeer(
                peer.privateKey.publicKey, allowedIPs: [MeshPrefix(peer.meshAddress, length: 128)!],
                endpoint: try SocketAddress(ipAddress: peer.peerAddress, port: peer.port)
            )
            await #expect(throws: MeshNodeError.self) { try await node.ping(peer.meshAddress, timeout: .seconds(3)) }
            #expect(try await node.handshakesCompleted(with: peer.privateKey.publicKey) == 0)
            #expect(try peer.latestHandshake(with: node.privateKey.publicKey) == 0)
            try await node.close()
        }
    }
}
