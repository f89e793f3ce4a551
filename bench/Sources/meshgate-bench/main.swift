// Tunnel micro-benchmarks, run by bench/wireguard.sh (release build). Prints one JSON object.
// `meshgate-bench derp …` runs the DERP relay benchmark instead (DERPBench.swift, bench/derp.sh),
// `meshgate-bench streams …` the mesh stream benchmark (StreamsBench.swift, bench/streams.sh), and
// `meshgate-bench impair …` the UDP impairment relay (ImpairCommand.swift, bench/kernel-tcp.sh).
//
// 1. seal+open per core: WireGuardDevice's whole transport path (sealing into a datagram, header,
//    counter, opening in place, replay window, IPv6 checks) against libsodium's raw
//    ChaCha20-Poly1305 seal+open of the same bytes. Both single-threaded.
// 2. packets/s between two MeshNodes over loopback UDP (WireGuard over real sockets).
import CSodium
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Tunnel

if CommandLine.arguments.dropFirst().first == "streams" {
    precondition(sodium_init() >= 0)
    let result = try await StreamsBench.run(CommandLine.arguments.dropFirst(2))
    print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
    exit(0)
}
if CommandLine.arguments.dropFirst().first == "derp" {
    precondition(sodium_init() >= 0)
    let result = try await DERPBench.run(CommandLine.arguments.dropFirst(2))
    print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
    exit(0)
}
if CommandLine.arguments.dropFirst().first == "impair" {
    do {
        try await ImpairCommand.run(CommandLine.arguments.dropFirst(2))
    } catch {
        FileHandle.standardError.write(Data("impair: \(error)\n".utf8))
        exit(2)
    }
    exit(0)
}

let payloadSize = 1200  // a full mesh packet at MTU 1280 (IPv6 header included below)
let iterations = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 200_000

func seconds(_ body: () -> Void) -> Double {
    let start = ContinuousClock.now
    body()
    let elapsed = ContinuousClock.now - start
    return elapsed.inSeconds
}

// Raw libsodium: encrypt then decrypt in place, detached tag.
precondition(sodium_init() >= 0)
var buffer = [UInt8](repeating: 7, count: payloadSize + 40)
var tag = [UInt8](repeating: 0, count: 16)
let key = AEAD.randomBytes(32)
var nonce = [UInt8](repeating: 0, count: 12)
let rawSeconds = seconds {
    for counter in 0..<iterations {
        nonce[4] = UInt8(truncatingIfNeeded: counter)
        _ = crypto_aead_chacha20poly1305_ietf_encrypt_detached(&buffer, &tag, nil, buffer, UInt64(buffer.count), nil, 0, nil, nonce, key)
        _ = crypto_aead_chacha20poly1305_ietf_decrypt_detached(&buffer, nil, buffer, UInt64(buffer.count), tag, nil, 0, nonce, key)
    }
}

// The device path: A.send → datagram → B.receive → deliver.
let aKey = NodePrivateKey.generate(), bKey = NodePrivateKey.generate()
let aAddress = MeshAddress("fd7a:115c:a1e0::a")!, bAddress = MeshAddress("fd7a:115c:a1e0::b")!
let a = WireGuardDevice(privateKey: aKey), b = WireGuardDevice(privateKey: bKey)
let aEndpoint = Endpoint.udp(address: [127, 0, 0, 1], port: 1), bEndpoint = Endpoint.udp(address: [127, 0, 0, 1], port: 2)
a.addPeer(bKey.publicKey, allowedIPs: [MeshPrefix(bAddress, length: 128)!], endpoint: bEndpoint)
b.addPeer(aKey.publicKey, allowedIPs: [MeshPrefix(aAddress, length: 128)!], endpoint: aEndpoint)
let packet = UDPDatagram.packet(source: aAddress, destination: bAddress, sourcePort: 1, destinationPort: 2, payload: [UInt8](repeating: 1, count: payloadSize - 8))
@MainActor func shuttle(_ outputs: [WireGuardDevice.Output], from sender: WireGuardDevice) -> Int {
    var delivered = 0
    var pending = outputs.map { (sender === a, $0) }
    while !pending.isEmpty {
        let (fromA, output) = pending.removeFirst()
        switch output {
        case .transmit(let datagram, _):
            pending += (fromA ? b.receive(datagram, from: aEndpoint, now: .now) : a.receive(datagram, from: bEndpoint, now: .now)).map { (!fromA, $0) }
        case .deliver: delivered += 1
        }
    }
    return delivered
}
_ = shuttle(a.send(packet, now: .now), from: a)  // handshake
var delivered = 0
let deviceSeconds = seconds {
    for _ in 0..<iterations { delivered += shuttle(a.send(packet, now: .now), from: a) }
}
precondition(delivered == iterations, "device path lost packets: \(delivered)/\(iterations)")

// Two MeshNodes over loopback UDP: windows of packets, waiting for each window to arrive.
let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
let sender = try await MeshNode.start(privateKey: aKey, address: aAddress, host: "127.0.0.1", group: group)
let receiver = try await MeshNode.start(privateKey: bKey, address: bAddress, host: "127.0.0.1", group: group)
try await sender.addPeer(bKey.publicKey, allowedIPs: [MeshPrefix(bAddress, length: 128)!], endpoint: try SocketAddress(ipAddress: "127.0.0.1", port: receiver.localPort!))
try await receiver.addPeer(aKey.publicKey, allowedIPs: [MeshPrefix(aAddress, length: 128)!], endpoint: try SocketAddress(ipAddress: "127.0.0.1", port: sender.localPort!))
/// Counts arrivals and wakes the benchmark when a target count is reached (no spinning).
final class Arrivals: Sendable {
    private let state = Mutex<(count: Int, target: Int, waiter: CheckedContinuation<Void, Never>?)>((0, 0, nil))
    func arrived() {
        let waiter: CheckedContinuation<Void, Never>? = state.withLock { state in
            state.count += 1
            guard state.count >= state.target, let waiter = state.waiter else { return nil }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }
    var count: Int { state.withLock { $0.count } }
    /// Waits until `target` packets arrived or `timeout` passed (lost datagrams must not hang the run).
    func wait(for target: Int, timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let ready = self.state.withLock { state -> Bool in
                        if state.count >= target { return true }
                        (state.target, state.waiter) = (target, continuation)
                        return false
                    }
                    if ready { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            // Release a still-pending waiter so the first task can finish.
            let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
let arrivals = Arrivals()
try await receiver.setPacketHandler { _, _ in arrivals.arrived() }
_ = try await sender.ping(bAddress)  // handshake
// 32 full packets (~75 KB of socket buffer) per window: loopback's default receive buffer holds that.
let window = 32
let udpPackets = iterations / 2
var sent = 0
let udpStart = ContinuousClock.now
while sent < udpPackets {
    try await sender.send(Array(repeating: packet, count: window))
    sent += window
    await arrivals.wait(for: sent, timeout: .milliseconds(50))
}
let udpElapsed = ContinuousClock.now - udpStart
let udpSeconds = udpElapsed.inSeconds
let udpReceived = arrivals.count
try await sender.close()
try await receiver.close()

let bytes = Double(iterations * (payloadSize + 40))
let result: [String: Any] = [
    "packet_bytes": payloadSize + 40,
    "iterations": iterations,
    "libsodium_seal_open_mb_s": bytes / rawSeconds / 1e6,
    "device_seal_open_mb_s": bytes / deviceSeconds / 1e6,
    "device_packets_s": Double(iterations) / deviceSeconds,
    "ratio_device_vs_libsodium": rawSeconds / deviceSeconds,
    "udp_packets_sent": sent,
    "udp_packets_received": udpReceived,
    "udp_packets_s": Double(udpReceived) / udpSeconds,
    "udp_mbit_s": Double(udpReceived) * Double(payloadSize + 40) * 8 / udpSeconds / 1e6,
]
print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
