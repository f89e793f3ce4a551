// `meshgate-bench impair`: MeshgateTesting's UDP impairment link as a process, for bench/kernel-tcp.sh and for
// anyone who wants a bad network between two UDP peers on a kernel without netem:
//
//   meshgate-bench impair --listen HOST:PORT --upstream IP:PORT [--delay 25ms] [--jitter 2ms] [--loss 0.01]
//                         [--reorder 0.01] [--reorder-delay 10ms] [--duplicate 0.01] [--corrupt 0.001]
//                         [--rate BYTES_PER_S] [--queue BYTES] [--seed N]
//
// Each direction gets the whole configuration (so the round trip is 2 × delay); --rate counts UDP payload bytes
// and --queue is that rate queue's limit in bytes (tail drop beyond it). Prints
// `impair: listening on HOST:PORT upstream IP:PORT` once bound (PORT is the bound one when 0 was asked for),
// runs until SIGINT or SIGTERM, then prints the counters of both directions.
import Dispatch
import Foundation
import MeshgateTesting
import NIOCore
import Tunnel

enum ImpairCommand {
    static func run(_ arguments: ArraySlice<String>) async throws {
        let flags = try Flags(arguments)
        guard let listen = try flags.parsed("listen", hostAndPort) else { throw BenchError("missing --listen HOST:PORT") }
        guard let upstreamText = try flags.parsed("upstream", hostAndPort) else { throw BenchError("missing --upstream IP:PORT") }
        let upstream = try SocketAddress(ipAddress: upstreamText.host, port: upstreamText.port)
        var configuration = Impairment.Configuration()
        configuration.delay = try flags.parsed("delay", duration) ?? configuration.delay
        configuration.jitter = try flags.parsed("jitter", duration) ?? configuration.jitter
        configuration.loss = try flags.parsed("loss") { Double($0) } ?? configuration.loss
        configuration.reorder = try flags.parsed("reorder") { Double($0) } ?? configuration.reorder
        configuration.reorderDelay = try flags.parsed("reorder-delay", duration) ?? configuration.reorderDelay
        configuration.duplicate = try flags.parsed("duplicate") { Double($0) } ?? configuration.duplicate
        configuration.corrupt = try flags.parsed("corrupt") { Double($0) } ?? configuration.corrupt
        configuration.rate = try flags.parsed("rate") { Int($0) }
        configuration.queueLimit = try flags.parsed("queue") { Int($0) } ?? configuration.queueLimit
        let seed = try flags.parsed("seed") { UInt64($0) } ?? 1

        let termination = TerminationSignals()
        let link = try await ImpairmentLink.start(
            host: listen.host, port: listen.port, upstream: upstream, forward: configuration, backward: configuration, seed: seed)
        let started = ContinuousClock.now
        let bound = link.localAddress
        say("impair: listening on \(bound.ipAddress ?? listen.host):\(link.port) upstream \(upstreamText.host):\(upstreamText.port)")

        let signal = await termination.next()
        let stats = try await link.stats()
        try await link.close()
        let elapsed = ContinuousClock.now - started
        say(line("forward", stats.forward, overflowed: stats.forwardOverflowed))
        say(line("backward", stats.backward, overflowed: stats.backwardOverflowed))
        say("impair: unroutable=\(stats.unroutable) socket_errors=\(stats.socketErrors) seconds=\(seconds(elapsed)) signal=\(signal)")
    }

    static func line(_ direction: String, _ counters: Impairment.Counters, overflowed: Int) -> String {
        "impair: \(direction) received=\(counters.received) forwarded=\(counters.forwarded) lost=\(counters.lost) "
            + "queue_dropped=\(counters.queueDropped) duplicated=\(counters.duplicated) corrupted=\(counters.corrupted) "
            + "reordered=\(counters.reordered) overflowed=\(overflowed)"
    }

    /// Unbuffered: a script waits for the readiness line through a pipe or file.
    static func say(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    static func seconds(_ duration: Duration) -> String {
        String(format: "%.3f", duration.inSeconds)
    }

    /// `HOST:PORT` or `[IPv6]:PORT`.
    static func hostAndPort(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        return host.isEmpty ? nil : (String(host), port)
    }

    /// `25ms`, `1.5s`, `500us`, `0`.
    static func duration(_ text: String) -> Duration? {
        let number = text.prefix { $0.isNumber || $0 == "." }
        guard let value = Double(number), value >= 0 else { return nil }
        let scale: Double
        switch text.dropFirst(number.count) {
        case "s": scale = 1
        case "ms": scale = 1e-3
        case "us", "µs": scale = 1e-6
        case "ns": scale = 1e-9
        case "" where value == 0: scale = 0
        default: return nil
        }
        return .nanoseconds(Int64((value * scale * 1e9).rounded()))
    }
}

/// SIGINT and SIGTERM as an async sequence: installed before the relay starts, so an early signal is not lost.
final class TerminationSignals {
    private let signals: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]

    init() {
        let (signals, continuation) = AsyncStream.makeStream(of: Int32.self)
        sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)  // handled by the dispatch source instead of killing the process
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
        self.signals = signals
    }

    /// The first signal received.
    func next() async -> Int32 {
        for await number in signals { return number }
        return 0
    }

    deinit { sources.forEach { $0.cancel() } }
}
