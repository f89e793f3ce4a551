// DERP relay benchmark, run by bench/derp.sh against a running `meshgate server` (release build):
//
//   meshgate-bench derp --url https://127.0.0.1:PORT/derp --pin HEX --cert PEM --key PEM --server-pid PID
//                       [--seconds 10] [--idle 1000] [--pairs 100]
//
// 1. Memory per idle client: the server's VmRSS before and after `--idle` clients log in and stay.
// 2. Relay throughput, 1 pair and `--pairs` pairs: each A sends 1280-byte packets to its B as fast as TCP and
//    the relay's reading allow (batches of 16, at most two in flight); each B counts what arrives.
//    Drops = sent − received: on loopback TCP only the relay's per-client queue (drop-oldest) can lose one.
// 3. Reference: one NIOSSL client streaming to a NIOSSL server over 127.0.0.1 in this process, with the
//    server's certificate: the TLS stack the relay runs on.
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import Tunnel

enum DERPBench {
    static let payloadSize = 1280  // a full mesh packet at MTU 1280
    /// Frames per flush: a sender with a queue flushes once per batch, so the client is not the bottleneck.
    static let batch = 16

    struct Options {
        var url: URL
        var trust: DERPTrust
        var certificate: String
        var key: String
        var serverPID: Int32
        var seconds = 10
        var idleClients = 1000
        var pairs = 100

        init(_ arguments: ArraySlice<String>) throws {
            let flags = try Flags(arguments)
            guard let url = URL(string: try flags.required("url")), let pid = Int32(try flags.required("server-pid")) else { throw BenchError("bad --url or --server-pid") }
            (self.url, serverPID) = (url, pid)
            trust = DERPTrust(certName: "sha256-raw:" + (try flags.required("pin")))
            guard case .pinnedSHA256 = trust else { throw BenchError("--pin must be 64 hex digits") }
            (certificate, key) = (try flags.required("cert"), try flags.required("key"))
            seconds = try flags.parsed("seconds") { Int($0) } ?? seconds
            idleClients = try flags.parsed("idle") { Int($0) } ?? idleClients
            pairs = try flags.parsed("pairs") { Int($0) } ?? pairs
        }
    }

    static func run(_ arguments: ArraySlice<String>) async throws -> [String: Any] {
        let options = try Options(arguments)
        var result: [String: Any] = ["payload_bytes": payloadSize, "seconds": options.seconds, "pairs": options.pairs]

        // Memory first: the throughput runs leave buffers in the allocator that later connections would reuse.
        let idle = try await idleMemory(options)
        result["idle_clients"] = options.idleClients
        result["rss_before_kib"] = idle.before
        result["rss_after_kib"] = idle.after
        result["rss_per_idle_client_kib"] = Double(idle.after - idle.before) / Double(options.idleClients)

        for (label, pairs) in [("pair1", 1), ("pairs", options.pairs)] {
            let run = try await relay(pairs: pairs, options: options)
            result["\(label)_sent"] = run.sent
            result["\(label)_received"] = run.received
            result["\(label)_dropped"] = run.sent - run.received
            result["\(label)_packets_s"] = Double(run.receivedInWindow) / Double(options.seconds)
            result["\(label)_mb_s"] = Double(run.receivedInWindow * payloadSize) / Double(options.seconds) / 1e6
            result["\(label)_offered_packets_s"] = Double(run.sentInWindow) / Double(options.seconds)
        }
        result["tls_mb_s"] = try await tlsLoopback(options)
        return result
    }

    // MARK: Memory per idle client

    static func idleMemory(_ options: Options) async throws -> (before: Int, after: Int) {
        // Warm-up: first-use allocations (TLS session state, tables, thread caches) belong in the baseline.
        await close(try await dial(20, options))
        try await Task.sleep(for: .seconds(1))
        let before = try residentKiB(options.serverPID)
        let clients = try await dial(options.idleClients, options)
        try await Task.sleep(for: .seconds(2))  // let the server finish registering and settle
        let after = try residentKiB(options.serverPID)
        await close(clients)
        try await Task.sleep(for: .seconds(1))
        return (before, after)
    }

    /// The server's resident set in KiB, from /proc/PID/status.
    static func residentKiB(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Int(line.split(whereSeparator: \.isWhitespace).dropFirst().first ?? "")
        else { throw BenchError("no VmRSS for pid \(pid)") }
        return kib
    }

    // MARK: Relay throughput

    struct RelayRun {
        var sent = 0, sentInWindow = 0, received = 0, receivedInWindow = 0
    }

    static func relay(pairs: Int, options: Options) async throws -> RelayRun {
        let senders = try await dial(pairs, options)
        let receivers = try await dial(pairs, options)
        let (sent, received, ready, stop) = (Counter(), Counter(), Counter(), Counter())
        let payload = ByteBuffer(repeating: 0x5a, count: payloadSize)
        var run = RelayRun()

        try await withThrowingTaskGroup(of: Void.self) { group in
            for (_, connection) in receivers {
                group.addTask {
                    try? await connection.channel.executeThenClose { inbound, outbound in
                        // A Pong proves the relay has registered this client: no packet meets "not here".
                        try await outbound.write(.ping([0, 0, 0, 0, 0, 0, 0, 1]))
                        for try await frame in inbound {
                            switch frame {
                            case .pong: ready.add(1)
                            case .recvPacket: received.add(1)
                            default: break
                            }
                        }
                    }
                }
            }
            let registration = ContinuousClock.now + .seconds(30)
            while ready.value < pairs {
                guard ContinuousClock.now < registration else { throw BenchError("only \(ready.value) of \(pairs) receivers answered a Ping") }
                try await Task.sleep(for: .milliseconds(5))
            }
            let deadline = ContinuousClock.now + .seconds(options.seconds)
            for ((_, connection), (receiver, _)) in zip(senders, receivers) {
                let frames = Array(repeating: DERPFrame.sendPacket(destination: receiver.publicKey, packet: payload), count: batch)
                group.addTask {
                    try? await connection.channel.executeThenClose { inbound, _ in
                        try await withThrowingTaskGroup(of: Void.self) { sender in
                            // Read what the relay sends us (KeepAlive, PeerGone), so it never waits on us.
                            sender.addTask { for try await _ in inbound {} }
                            try await stream(frames, on: connection.channel.channel, until: deadline, counting: sent)
                            // Stay open until the drain ends: closing now could cut the last batches short.
                            while stop.value == 0 { try await Task.sleep(for: .milliseconds(20)) }
                            connection.channel.channel.close(promise: nil)
                        }
                    }
                }
            }
            try await Task.sleep(until: deadline)
            (run.sentInWindow, run.receivedInWindow) = (sent.value, received.value)
            // Drain: until everything sent arrived, or nothing arrived for 500 ms (the rest was dropped).
            var (last, quiet) = (-1, 0)
            while received.value < sent.value && quiet < 5 {
                try await Task.sleep(for: .milliseconds(100))
                (last, quiet) = received.value == last ? (last, quiet + 1) : (received.value, 0)
            }
            (run.sent, run.received) = (sent.value, received.value)
            stop.add(1)
            for (_, connection) in receivers { connection.channel.channel.close(promise: nil) }
            try await group.waitForAll()
        }
        try await Task.sleep(for: .milliseconds(500))  // the relay unregisters the closed clients
        return run
    }

    // MARK: TLS loopback reference

    /// MB/s of one TLS stream over 127.0.0.1 (16 KiB writes, one full record each), same certificate and
    /// the same sending discipline as the relay's senders.
    static func tlsLoopback(_ options: Options) async throws -> Double {
        let chain = try NIOSSLCertificate.fromPEMFile(options.certificate).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: options.key, format: .pem)
        let serverContext = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
        var clientConfiguration = TLSConfiguration.makeClientConfiguration()
        clientConfiguration.certificateVerification = .none  // a throughput reference, not a trust check
        let clientContext = try NIOSSLContext(configuration: clientConfiguration)
        let received = Counter()

        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverContext))
                    try channel.pipeline.syncOperations.addHandler(ByteSink(counter: received))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: clientContext, serverHostname: nil))
                }
            }
            .connect(host: "127.0.0.1", port: server.localAddress!.port!).get()
        let chunks = Array(repeating: ByteBuffer(repeating: 0x5a, count: 16 << 10), count: 4)
        try await client.writeAndFlush(chunks[0])  // handshake done before the clock starts
        while received.value == 0 { try await Task.sleep(for: .milliseconds(5)) }
        let base = received.value
        let deadline = ContinuousClock.now + .seconds(options.seconds)
        try await stream(chunks, on: client, until: deadline, counting: nil)
        let window = received.value - base
        try await client.close()
        try await server.close()
        return Double(window) / Double(options.seconds) / 1e6
    }

    // MARK: Helpers

    /// Writes `batch` again and again until `deadline`, with at most two batches in flight; counts a batch
    /// once it has reached the socket. Not NIOAsyncChannel's writer: it hands each write to the event loop
    /// without waiting, so a producer faster than its loop queues without bound (a first version of this
    /// bench grew to 14 GB) and "sent" would count packets still in the client's memory.
    static func stream<Message: Sendable>(
        _ batch: [Message], on channel: any Channel, until deadline: ContinuousClock.Instant, counting sent: Counter?
    ) async throws {
        var inFlight: EventLoopFuture<Void>?
        while ContinuousClock.now < deadline {
            let flushed = channel.eventLoop.flatSubmit {
                for message in batch.dropLast() { channel.write(message, promise: nil) }
                return channel.writeAndFlush(batch.last!)
            }
            if let inFlight {
                try await inFlight.get()
                sent?.add(batch.count)
            }
            inFlight = flushed
        }
        try await inFlight?.get()
        sent?.add(inFlight == nil ? 0 : batch.count)
    }

    /// `count` logged-in clients, dialled 16 at a time.
    static func dial(_ count: Int, _ options: Options) async throws -> [(NodePrivateKey, DERPConnection)] {
        try await withThrowingTaskGroup(of: (NodePrivateKey, DERPConnection).self) { group in
            var clients: [(NodePrivateKey, DERPConnection)] = []
            for index in 0..<count {
                if index >= 16, let client = try await group.next() { clients.append(client) }
                group.addTask {
                    let key = NodePrivateKey.generate()
                    return (key, try await DERPConnection.dial(url: options.url, privateKey: key, trust: options.trust))
                }
            }
            for try await client in group { clients.append(client) }
            return clients
        }
    }

    static func close(_ clients: [(NodePrivateKey, DERPConnection)]) async {
        for (_, connection) in clients { try? await connection.channel.channel.close() }
    }
}

/// A relaxed counter shared by the bench's tasks.
final class Counter: Sendable {
    private let atomic = Atomic<Int>(0)
    func add(_ amount: Int) { atomic.add(amount, ordering: .relaxed) }
    var value: Int { atomic.load(ordering: .relaxed) }
}

/// Counts and discards decrypted bytes: the TLS reference's server.
final class ByteSink: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let counter: Counter
    init(counter: Counter) { self.counter = counter }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { counter.add(unwrapInboundIn(data).readableBytes) }
}
