@testable import AppProxy
import Foundation
import Testing

/// The fast path on HTTP/2 frames (`AppHTTP2FastStreams` in `AppHTTP2Channel`, as the gateway runs them), below a
/// real Hummingbird server with the full path behind it, over a real mesh pair to a real app, asked by a real
/// HTTP/2 client: curl, all of a test's requests multiplexed on one connection (h2c, prior knowledge).
@Suite(.timeLimit(.minutes(3))) struct AppHTTP2FastStreamsTests {
    static let session = "meshgate_session_token=good-session"

    /// Streams with a token and without, at once on one connection: the first kind is answered as frames here, the
    /// other through a stream channel by the full path, each with the same answer as the other way.
    @Test func streamsOfOneConnectionTakeEitherPath() async throws {
        try await FastPathGateway.with(http2: true) { gateway in
            let cookie = try await gateway.http2Token()
            // Each request on a stream of its own, opened for it: an idle one left over may turn out stale (the test
            // pool does not watch them), and its request then goes the full way, as it should, but uncounted here.
            gateway.fixture.streams.closeAll()
            let answers = try await gateway.http2([
                ("/headers", "\(cookie); \(Self.session); theme=dark"), ("/headers", "\(Self.session); theme=dark"), ("/hello", cookie),
                ("/empty", cookie), ("/hello", Self.session), ("/download?bytes=300000", cookie),
            ])
            #expect(answers.map(\.status) == [200, 200, 200, 204, 200, 200])
            #expect(gateway.observer.served == 4)
            let (fast, full) = (answers[0], answers[1])
            let lines = { (body: String) in body.split(separator: "\n").filter { !$0.hasPrefix("X-Connection") } }
            #expect(lines(fast.body) == lines(full.body))
            #expect(fast.body.contains("Cookie: theme=dark\n") && !fast.body.contains("meshgate"))
            // The same headers (the full path also renews the token), and the gateway's own Date.
            let compared = { (answer: HTTP2Answer) in answer.headers.filter { !["set-cookie", "date", "x-connection"].contains($0.name) } }
            #expect(compared(fast) == compared(full))
            #expect(fast.headers.contains { $0.name == "date" && $0.value.hasSuffix(" GMT") })
            #expect(answers[2].body == "hello" && answers[4].body == "hello" && answers[3].body.isEmpty)
            #expect(answers[5].size == 300_000)
        }
    }

    /// 8 MiB through one stream: the app is read only as fast as the stream's window lets the browser take it.
    @Test func largeResponsesStreamThrough() async throws {
        try await FastPathGateway.with(http2: true) { gateway in
            let cookie = try await gateway.http2Token()
            gateway.fixture.streams.closeAll()
            let answers = try await gateway.http2([("/download?bytes=\(8 << 20)", cookie), ("/hello", cookie)])
            #expect(answers.map(\.status) == [200, 200] && answers[0].size == 8 << 20 && gateway.observer.served == 2)
        }
    }

    /// A browser that reads slowly holds the app back: the app writes no more than the browser took plus what the
    /// stream's DATA frames, the TLS side, the mesh stream and the sockets hold, not the whole download.
    @Test func aSlowReaderHoldsTheAppBack() async throws {
        try await FastPathGateway.with(http2: true) { gateway in
            let cookie = try await gateway.http2Token()
            let answer = try await gateway.http2(
                [("/download?bytes=\(512 << 20)", cookie)], extra: ["--max-time", "10", "--limit-rate", "100K"], expectOneConnection: false
            )
            let produced = gateway.meter.producedBytes
            print("a browser taking 100 KB/s for 10 s: it took \(answer[0].size >> 10) KiB, the app wrote \(produced >> 20) MiB")
            #expect(answer[0].size < 8 << 20)
            // Measured: 17-22 MiB, what the buffers on the way hold (the browser's and the gateway's socket buffers,
            // the exchange's, the mesh stream's 4 MiB window, the agent's and the app's sockets); with no limit here,
            // as much as the mesh carries in the time.
            #expect(produced < 40 << 20)
        }
    }

    /// A stale idle stream met before the app answered: the stream goes to the full path then, on a stream channel
    /// the multiplexer creates and activates late, and is answered there.
    @Test func aStaleStreamIsHandedToTheFullPath() async throws {
        try await FastPathGateway.with(http2: true) { gateway in
            let cookie = try await gateway.http2Token()
            #expect(try await gateway.http2([("/hello", cookie)])[0].body == "hello" && gateway.observer.served == 1)
            try await gateway.fixture.streams.endIdleStreamsButKeepThem()
            let answers = try await gateway.http2([("/hello", cookie), ("/headers", cookie)])
            #expect(answers.map(\.status) == [200, 200] && answers[0].body == "hello")
            // The first went the full way; the second took the stream that one opened, as frames.
            #expect(gateway.observer.served == 2)
        }
    }

    /// An app that does not answer in time: the full path's page, from here, with its length; the next stream is
    /// served as before.
    @Test func anAppThatNeverAnswersGetsTheTimeoutPage() async throws {
        try await FastPathGateway.with(responseHeadTimeout: .milliseconds(300), http2: true) { gateway in
            let cookie = try await gateway.http2Token()
            let answers = try await gateway.http2([("/hold?seconds=2", cookie), ("/hello", cookie)])
            #expect(answers[0].status == 504 && answers[0].body.contains("did not answer within"))
            #expect(answers[0].headers.contains { $0.name == "content-length" && $0.value == String(answers[0].size) })
            #expect(answers[1].body == "hello" && gateway.observer.served == 2)
        }
    }

    /// The browser goes away mid-response: the stream carrying it is closed, not left leased with the rest unread.
    @Test func aBrowserGoneMidResponseEndsTheAppsResponse() async throws {
        try await FastPathGateway.with(http2: true) { gateway in
            let cookie = try await gateway.http2Token()
            let partial = try await gateway.http2([("/download?bytes=\(256 << 20)", cookie)], extra: ["--max-time", "2", "--limit-rate", "2M"], expectOneConnection: false)
            #expect(partial[0].size < 256 << 20)
            let carrier = try #require(gateway.fixture.streams.lastLeased)
            #expect(await closes(carrier, by: .now + .seconds(20)))
            #expect(try await gateway.http2([("/hello", cookie)])[0].body == "hello")
        }
    }
}

struct HTTP2Answer {
    var status = 0
    var size = 0
    var body = ""
    var headers: [(name: String, value: String)] = []
}

extension FastPathGateway {
    /// A signed app token cookie (`name=value`) and the session, from a request through the full path.
    func http2Token() async throws -> String {
        let answer = try await http2([("/hello", AppHTTP2FastStreamsTests.session)])[0]
        let token = try #require(answer.headers.first { $0.name == "set-cookie" }?.value.split(separator: ";").first)
        return "\(token); \(AppHTTP2FastStreamsTests.session)"
    }

    /// GETs `requests` (path, cookie) at once on one HTTP/2 connection with curl.
    func http2(_ requests: [(path: String, cookie: String)], extra: [String] = [], expectOneConnection: Bool = true) async throws -> [HTTP2Answer] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("h2-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var arguments = ["-s", "--http2-prior-knowledge", "--parallel", "--parallel-max", "50", "--max-time", "60"]
        for (index, request) in requests.enumerated() {
            if index > 0 { arguments.append("--next") }
            arguments += extra + [
                "-H", "Cookie: \(request.cookie)", "-o", directory.appendingPathComponent("\(index).body").path,
                "-D", directory.appendingPathComponent("\(index).head").path,
                "-w", "%{num_connects}\\n", "http://127.0.0.1:\(port)/@alice/dev/apps/code\(request.path)",
            ]
        }
        let connects = try await Self.curl(arguments).split(separator: "\n").compactMap { Int($0) }.reduce(0, +)
        if expectOneConnection { #expect(connects == 1) }
        return try requests.indices.map { index in
            var answer = HTTP2Answer()
            let head = try String(contentsOf: directory.appendingPathComponent("\(index).head"), encoding: .utf8)
            for line in head.split(separator: "\r\n") {
                if line.hasPrefix("HTTP/2 ") {
                    answer.status = Int(line.split(separator: " ")[1]) ?? 0
                } else if let colon = line.firstIndex(of: ":") {
                    answer.headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
                }
            }
            let body = (try? Data(contentsOf: directory.appendingPathComponent("\(index).body"))) ?? Data()
            answer.size = body.count
            answer.body = body.count < 1 << 16 ? String(decoding: body, as: UTF8.self) : ""
            return answer
        }
    }

    /// Runs curl; its standard output (the `-w` lines: bodies go to files, so the pipe never fills). It waits on a
    /// thread of its own, not on the test's cooperative pool, which the server shares.
    static func curl(_ arguments: [String]) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
                process.arguments = arguments
                let output = Pipe()
                process.standardOutput = output
                process.standardError = FileHandle.nullDevice
                do {
                    try process.run()
                } catch {
                    return continuation.resume(throwing: error)
                }
                let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                process.waitUntilExit()
                continuation.resume(returning: text)
            }
        }
    }
}
