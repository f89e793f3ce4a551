import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
import Tunnel

@testable import AppProxy

/// The forwarder over a real mesh pair to real apps behind the agent's `tcp:PORT` forward.
@Suite(.timeLimit(.minutes(3))) struct AppForwarderTests {
    @Test func getPostHeadAndNoContent() async throws {
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter()) { port in
                let app = fixture.app(port: port)
                let hello = try await fixture.forward(.get, "/hello", to: app)
                #expect(hello.status == .ok)
                #expect(try await hello.bodyString() == "hello")
                let echoed = try await fixture.forward(.post, "/echo", body: RequestBody(buffer: ByteBuffer(string: "ping")), to: app)
                #expect(try await echoed.bodyString() == "ping")
                let put = try await fixture.forward(.put, "/echo", headers: [.contentLength: "3"], body: RequestBody(buffer: ByteBuffer(string: "put")), to: app)
                #expect(try await put.bodyString() == "put")
                let head = try await fixture.forward(.head, "/hello", to: app)
                #expect(head.status == .ok && head.headers[.contentLength] == "5" && head.body.contentLength == 0)
                let empty = try await fixture.forward(.get, "/empty", to: app)
                #expect(empty.status == .noContent && empty.headers[.contentLength] == nil)
            }
        }
    }

    /// Sequential requests share one stream, so the app sees one TCP connection.
    @Test func keepsTheConnectionAliveBetweenRequests() async throws {
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter()) { port in
                let app = fixture.app(port: port)
                var connections: Set<String> = []
                for _ in 0..<3 {
                    let response = try await fixture.forward(.get, "/headers", to: app)
                    _ = try await response.bodyString()
                    connections.insert(response.headers[HTTPField.Name("X-Connection")!] ?? "?")
                }
                let posted = try await fixture.forward(.post, "/echo", body: RequestBody(buffer: ByteBuffer(string: "x")), to: app)
                #expect(try await posted.bodyString() == "x")
                #expect(connections.count == 1)
                #expect(fixture.mesh.dialer.streamsOpened == 1 && fixture.streams.idleCount == 1)
            }
        }
    }

    /// What the app receives: no meshgate cookie or header, its own cookies, the forwarded headers, its own
    /// host and path prefix.
    @Test func appReceivesCleanHeaders() async throws {
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter()) { port in
                let headers: HTTPFields = [
                    .cookie: "meshgate_session_token=abc-def; theme=dark", .cookie: "meshgate_app_token=jws; sid=7",
                    HTTPField.Name(MeshgateCredentials.sessionHeader)!: "abc-def", HTTPField.Name("X-Forwarded-For")!: "10.1.1.1",
                    .connection: "keep-alive",
                ]
                let response = try await fixture.forward(.get, "/headers?q=1", headers: headers, to: fixture.app(port: port, pathPrefix: "/ui"))
                let received = try await response.bodyString()
                #expect(!received.lowercased().contains("meshgate"))
                #expect(received.contains("path: /ui/headers?q=1\n"))
                #expect(received.contains("host: 127.0.0.1:\(port)\n"))
                #expect(received.contains("Cookie: theme=dark; sid=7\n"))
                #expect(received.contains("X-Forwarded-For: 10.1.1.1, 192.0.2.10\n"))
                #expect(received.contains("X-Forwarded-Proto: https\n"))
                #expect(received.contains("X-Forwarded-Host: \(ForwardingFixture.origin.host)\n"))
                #expect(!received.lowercased().contains("connection: keep-alive"))
            }
        }
    }

    /// 64 MiB (by default) up to an app that stops reading for a while every 16 MiB: the bytes sent but not yet read stay
    /// within the stream windows and socket buffers, never the body. (Slow in a debug build: the mesh moves a
    /// few MB/s there.)
    @Test(.timeLimit(.minutes(5))) func streamsLargeUploadsWithBoundedBuffering() async throws {
        let meter = TransferMeter()
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter(meter: meter)) { port in
                let memory = ProcessMemory.start()
                let body = GeneratedBody(total: TransferMeter.total) { meter.produced($0) }
                let response = try await fixture.forward(.post, "/upload", body: RequestBody(asyncSequence: body), to: fixture.app(port: port))
                #expect(try await response.bodyString() == "received \(TransferMeter.total)")
                let grown = memory.peakGrowth()
                print("upload: \(TransferMeter.total >> 20) MiB in \(memory.elapsed), at most \(meter.maxInFlight >> 10) KiB in flight, peak RSS +\(grown >> 20) MiB")
                #expect(meter.maxInFlight < TransferMeter.inFlightBound)
                #expect(grown < ProcessMemory.growthBound)
            }
        }
    }

    /// 64 MiB (by default) down to a reader that stops for a while every 16 MiB: the app is held back, nothing piles up.
    @Test(.timeLimit(.minutes(5))) func streamsLargeDownloadsWithBoundedBuffering() async throws {
        let meter = TransferMeter()
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter(meter: meter)) { port in
                let memory = ProcessMemory.start()
                let response = try await fixture.forward(.get, "/download?bytes=\(TransferMeter.total)", to: fixture.app(port: port))
                #expect(response.body.contentLength == TransferMeter.total)
                var reader = BodyCollector(sink: .init(), keep: false)
                reader.onChunk = { chunk in await meter.consumed(chunk.readableBytes) }
                try await response.body.write(reader)
                let grown = memory.peakGrowth()
                print("download: \(TransferMeter.total >> 20) MiB in \(memory.elapsed), at most \(meter.maxInFlight >> 10) KiB in flight, peak RSS +\(grown >> 20) MiB")
                #expect(meter.consumedBytes == TransferMeter.total)
                #expect(meter.maxInFlight < TransferMeter.inFlightBound)
                #expect(grown < ProcessMemory.growthBound)
                #expect(fixture.streams.idleCount == 1)
            }
        }
    }

    /// A reader that stops for seconds holds the exchange at its buffer limit plus one read of the stream
    /// (which hands over all it has, at most its 4 MiB window): the stream stops reading and the app waits.
    @Test func exchangeStopsReadingForASlowReader() async throws {
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter()) { port in
                let total = 24 << 20
                var request = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/download?bytes=\(total)")
                request.headers.add(name: "Host", value: "127.0.0.1:\(port)")
                let exchange = try await AgentHTTPExchange.begin(request, agent: fixture.agentID, port: UInt16(port), through: fixture.streams)
                try await Task.sleep(for: .seconds(3))
                let peak = await exchange.peakBufferedResponseBytes()
                var received = 0
                while case .bytes(let chunk) = try await exchange.nextBodyPart() { received += chunk.readableBytes }
                #expect(await exchange.finish())
                print("a reader pausing 3 s: at most \(peak >> 10) KiB waited in the exchange")
                #expect(received == total)
                #expect(peak <= HTTPExchangeHandler.bufferLimit + (4 << 20))
            }
        }
    }

    /// The stream goes back to the pool the moment the exchange completes on its loop, before the caller has
    /// taken the body; an abort after that (the browser went away while the body was written to it) must leave
    /// the pooled stream, which may already carry someone else's exchange, alone.
    @Test func completedExchangeReturnsTheStreamAtOnce() async throws {
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter()) { port in
                var request = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/hello")
                request.headers.add(name: "Host", value: "127.0.0.1:\(port)")
                let exchange = try await AgentHTTPExchange.begin(request, agent: fixture.agentID, port: UInt16(port), through: fixture.streams)
                try await eventually("the stream is back in the pool") { fixture.streams.idleCount == 1 }
                var body = exchange.takeCompleteBody() ?? ByteBuffer()
                if body.readableBytes == 0 {
                    while case .bytes(var chunk) = try await exchange.nextBodyPart() { body.writeBuffer(&chunk) }
                }
                #expect(String(buffer: body) == "hello")
                exchange.abort()
                #expect(await exchange.finish())
                let next = try await AgentHTTPExchange.begin(request, agent: fixture.agentID, port: UInt16(port), through: fixture.streams)
                #expect(next.lease.reused && next.lease.channel === exchange.lease.channel)
                var again = ByteBuffer()
                while case .bytes(var chunk) = try await next.nextBodyPart() { again.writeBuffer(&chunk) }
                #expect(String(buffer: again) == "hello")
                #expect(await next.finish())
            }
        }
    }

    /// A reader cancelled after its exchange completed (the body waits in the exchange, the stream is back in the
    /// pool) must not close the stream: it may already carry the next exchange.
    @Test func cancelledReaderLeavesAReturnedStreamAlone() async throws {
        try await ForwardingFixture.with { fixture in
            let server = try await ScriptedServer.start { _, _, _ in
                .respondInTwoParts(head: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", body: "hello", later: .milliseconds(100))
            }
            var request = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
            request.headers.add(name: "Host", value: "127.0.0.1")
            let exchange = try await AgentHTTPExchange.begin(request, agent: fixture.agentID, port: UInt16(server.port), through: fixture.streams)
            try await eventually("the stream is back in the pool") { fixture.streams.idleCount == 1 }
            let reader = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await exchange.nextBodyPart()
            }
            guard case .bytes(let body) = try await reader.value else { Issue.record("no body"); return }
            #expect(String(buffer: body) == "hello")
            try await Task.sleep(for: .milliseconds(50))
            #expect(exchange.lease.channel.isActive, "the returned stream stays open")
            let next = try await AgentHTTPExchange.begin(request, agent: fixture.agentID, port: UInt16(server.port), through: fixture.streams)
            #expect(next.lease.reused && next.lease.channel === exchange.lease.channel)
            next.abort()
            await server.close()
        }
    }

    /// An app that drops a request on every kept-alive stream gets it twice at most (the keep-alive race is worth
    /// one more try), not once per idle stream.
    @Test func staleStreamRetryHappensOnce() async throws {
        try await ForwardingFixture.with { fixture in
            let server = try await ScriptedServer.start { _, _, _ in .close }
            var request = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
            request.headers.add(name: "Host", value: "127.0.0.1")
            // Four streams waiting in the pool (handed out again as kept-alive ones).
            var leases: [AgentStreamLease] = []
            for _ in 0..<4 { leases.append(try await fixture.streams.checkout(agent: fixture.agentID, port: UInt16(server.port))) }
            for lease in leases { await fixture.streams.checkin(lease) }
            #expect(fixture.streams.idleCount == 4)
            await #expect(throws: AgentHTTPExchangeFailure.self) {
                _ = try await AgentHTTPExchange.begin(
                    request, agent: fixture.agentID, port: UInt16(server.port), through: fixture.streams, retryingStaleStreams: true
                )
            }
            #expect(fixture.streams.idleCount == 2, "two streams tried, two left")
            await server.close()
        }
    }

    /// Hummingbird writes a response's body only after its head; when the browser is gone by then (h2load resets
    /// its HTTP/2 streams at the end of a run) the body is dropped unwritten, and its exchange must still free the
    /// stream. Left leased, each large download held a full stream window (4 MiB) unread against the mesh
    /// connection's 16 MiB, so a few stalled every later request to the agent.
    @Test func unwrittenResponseFreesItsStream() async throws {
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter()) { port in
                let leases = LeaseLog(fixture.streams)
                let forwarder = AppForwarder(streams: leases, dialer: fixture.mesh.dialer)
                let app = fixture.app(port: port)
                for _ in 0..<5 {
                    let path = "/download?bytes=\(32 << 20)"
                    let head = HTTPRequest(method: .get, scheme: "https", authority: "x", path: path, headerFields: [:])
                    let response = try await forwarder.forward(Request(head: head, body: RequestBody(buffer: ByteBuffer())), to: app, path: path, origin: ForwardingFixture.origin)
                    #expect(response.status == .ok)
                }
                let deadline = ContinuousClock.now + .seconds(10)
                for channel in leases.channels {
                    #expect(await closes(channel, by: deadline), "the stream of a response never written is still open")
                }
                let hello = await firstOf(.seconds(30)) { try await fixture.forward(.get, "/hello", to: app).bodyString() }
                #expect(hello == "hello", "a request after them answers")
                for channel in leases.channels { channel.close(promise: nil) }  // so the app can stop when this fails
            }
        }
    }

    /// An HTTPS app (a self-signed certificate, as such apps have) is reached with TLS over the stream.
    @Test func httpsApps() async throws {
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter(), tls: try selfSignedTLS()) { port in
                let app = fixture.app(port: port, https: true)
                let response = try await fixture.forward(.get, "/headers", to: app)
                #expect(response.status == .ok)
                #expect(try await response.bodyString().contains("X-Forwarded-Proto: https\n"))
                let big = String(repeating: "0123456789abcdef", count: 1 << 16)
                let echoed = try await fixture.forward(.post, "/echo", body: RequestBody(buffer: ByteBuffer(string: big)), to: app)
                #expect(try await echoed.bodyString() == big)
                // Unpooled: one stream per exchange, none kept.
                #expect(fixture.mesh.dialer.streamsOpened == 2 && fixture.streams.idleCount == 0)
            }
        }
    }

    /// Plain HTTP to a TLS port and TLS to a plain port fail as bad gateway, with a hint to switch.
    @Test func hintsAtTheOtherScheme() async throws {
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter(), tls: try selfSignedTLS()) { tlsPort in
                let error = await forwardError { try await fixture.forward(.get, "/hello", to: fixture.app(port: tlsPort)) }
                guard case .badGateway(_, .appSpeaksHTTPS) = error else { Issue.record("got \(String(describing: error))"); return }
                #expect(AppForwardError.SchemeHint.appSpeaksHTTPS.advice(for: .port(8443, https: false)).contains("switch to HTTPS"))
            }
            try await withTestApp(upstreamRouter()) { plainPort in
                let error = await forwardError { try await fixture.forward(.get, "/hello", to: fixture.app(port: plainPort, https: true)) }
                guard case .badGateway(let cause, .appSpeaksHTTP) = error else { Issue.record("got \(String(describing: error))"); return }
                #expect(cause.contains("TLS"))
            }
        }
    }

    /// A port nobody listens on, and one the agent does not forward: refused, with the agent's reason. An agent
    /// without a stream: unreachable.
    @Test func refusedPortsAndUnreachableAgents() async throws {
        try await ForwardingFixture.with { fixture in
            let closed = try await ScriptedServer.start { _, _, _ in .close }
            let closedPort = closed.port
            await closed.close()
            let refused = await forwardError { try await fixture.forward(.get, "/", to: fixture.app(port: closedPort)) }
            guard case .portRefused(let port, let reason) = refused else { Issue.record("got \(String(describing: refused))"); return }
            #expect(port == closedPort && reason.contains("connect to 127.0.0.1:\(closedPort) failed") && reason.lowercased().contains("refused"))
            let unforwarded = await forwardError { try await fixture.forward(.get, "/", to: fixture.app(port: 9)) }
            #expect(unforwarded == .portRefused(port: 9, reason: "port 9 is not forwarded"))
            let unreachable = await forwardError { try await fixture.forward(.get, "/", to: fixture.app(port: 8080, agent: UUID())) }
            #expect(unreachable == .agentUnreachable(cause: "the agent is not connected"))
        }
    }

    /// A refusal that closes the stream before the exchange is set up on it (the source handed the stream
    /// over late) still reaches the caller with the agent's reason.
    @Test func refusalBeforeTheExchangeBegins() async throws {
        try await ForwardingFixture.with { fixture in
            let late = AppForwarder(streams: LateStreams(dialer: fixture.mesh.dialer), dialer: fixture.mesh.dialer)
            let head = HTTPRequest(method: .get, scheme: "https", authority: "x", path: "/", headerFields: [:])
            let refused = await forwardError {
                try await late.forward(Request(head: head, body: RequestBody(buffer: ByteBuffer())), to: fixture.app(port: 9), path: "/", origin: ForwardingFixture.origin)
            }
            #expect(refused == .portRefused(port: 9, reason: "port 9 is not forwarded"))
        }
    }

    /// An app that closes before its response, in the middle of it, or answers with something else than HTTP.
    @Test func badGatewayWhenTheAppBreaksHTTP() async throws {
        try await ForwardingFixture.with { fixture in
            let server = try await ScriptedServer.start { _, _, line in
                switch line {
                case "GET /cut HTTP/1.1": .respondAndClose("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b")
                case "GET /ssh HTTP/1.1": .respondAndClose("SSH-2.0-OpenSSH_9.2\r\n\r\n")
                default: .close
                }
            }
            let app = fixture.app(port: server.port)
            let early = await forwardError { try await fixture.forward(.get, "/close", to: app) }
            #expect(early == .badGateway(cause: AppUpstreamError.closedEarly.description, hint: nil))
            let cut = try await fixture.forward(.get, "/cut", to: app)
            #expect(cut.status == .ok && cut.body.contentLength == 1000)
            let midway = await forwardError { _ = try await cut.bodyString() }
            #expect(midway == .badGateway(cause: "the app closed the connection in the middle of the response", hint: nil))
            let garbage = await forwardError { try await fixture.forward(.get, "/ssh", to: app) }
            guard case .badGateway(let cause, nil) = garbage else { Issue.record("got \(String(describing: garbage))"); return }
            #expect(cause.contains("not valid HTTP/1.1"))
            #expect(fixture.streams.idleCount == 0)
            await server.close()
        }
    }

    /// An app that takes the request and never answers gets a 504 after the head timeout, and its stream is not kept.
    @Test func appThatNeverAnswersTimesOut() async throws {
        try await ForwardingFixture.with { fixture in
            let server = try await ScriptedServer.start { _, _, _ in .hold }
            let forwarder = AppForwarder(streams: fixture.streams, dialer: fixture.mesh.dialer, responseHeadTimeout: .milliseconds(300))
            let head = HTTPRequest(method: .get, scheme: "https", authority: "x", path: "/slow", headerFields: [:])
            let started = ContinuousClock.now
            let error = await forwardError {
                try await forwarder.forward(Request(head: head, body: RequestBody(buffer: ByteBuffer())), to: fixture.app(port: server.port), path: "/slow", origin: ForwardingFixture.origin)
            }
            #expect(error == .timedOut(cause: "the app did not answer within 0.3 seconds"))
            #expect(ContinuousClock.now - started >= .milliseconds(300), "not before the limit")
            #expect(AppErrorPage.forwarding(error!, app: fixture.app(port: server.port)).status == 504)
            #expect(fixture.streams.idleCount == 0)
            await server.close()
        }
    }

    /// The app's time to answer runs from the end of the request: an upload slower than the limit is not cut.
    @Test func slowUploadIsNotATimeout() async throws {
        let meter = TransferMeter()
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter(meter: meter)) { port in
                // The limit leaves the app ample time once the upload is in, even on a loaded machine; the upload
                // takes half as long again.
                let forwarder = AppForwarder(streams: fixture.streams, dialer: fixture.mesh.dialer, responseHeadTimeout: .seconds(1))
                let (chunks, feed) = AsyncStream<ByteBuffer>.makeStream()
                Task {
                    for _ in 0..<6 {
                        feed.yield(ByteBuffer(repeating: 0x61, count: 1024))
                        try? await Task.sleep(for: .milliseconds(250))
                    }
                    feed.finish()
                }
                let head = HTTPRequest(method: .post, scheme: "https", authority: "x", path: "/upload", headerFields: [:])
                let response = try await forwarder.forward(
                    Request(head: head, body: RequestBody(asyncSequence: chunks)), to: fixture.app(port: port), path: "/upload", origin: ForwardingFixture.origin
                )
                #expect(try await response.bodyString() == "received 6144")
            }
        }
    }

    /// A kept stream the app closed as the request arrived is retried on a fresh one for an idempotent request
    /// without a body; a POST is not repeated.
    @Test func retriesStaleStreamsOnlyWhenSafe() async throws {
        try await ForwardingFixture.with { fixture in
            let server = try await ScriptedServer.start { connection, request, _ in
                request == 0 ? .respond("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n\(connection)") : .close
            }
            let app = fixture.app(port: server.port)
            #expect(try await fixture.forward(.get, "/", to: app).bodyString() == "0")
            #expect(try await fixture.forward(.get, "/", to: app).bodyString() == "1")
            #expect(server.accepted == 2)
            let post = await forwardError {
                try await fixture.forward(.post, "/", headers: [.contentLength: "1"], body: RequestBody(buffer: ByteBuffer(string: "x")), to: app)
            }
            #expect(post == .badGateway(cause: AppUpstreamError.closedEarly.description, hint: nil))
            #expect(server.accepted == 2)
            await server.close()
        }
    }

    /// Behind a real Hummingbird server, as the gateway will use it: a 1 MiB body each way over HTTP/1.1.
    @Test func behindHummingbird() async throws {
        try await ForwardingFixture.with { fixture in
            try await withTestApp(upstreamRouter()) { port in
                let front = Router()
                let forward: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
                    try await fixture.forwarder.forward(request, to: fixture.app(port: port), path: request.uri.description, origin: ForwardingFixture.origin)
                }
                front.get("**", use: forward)
                front.post("**", use: forward)
                let body = ByteBuffer(repeating: UInt8(ascii: "m"), count: 1 << 20)
                try await Application(router: front).test(.live) { client in
                    let echoed = try await client.execute(uri: "/echo", method: .post, body: body)
                    #expect(echoed.status == .ok && echoed.body == body)
                    let headers = try await client.execute(uri: "/headers", method: .get, headers: [.cookie: "meshgate_session_token=s; a=b"])
                    #expect(String(buffer: headers.body).contains("Cookie: a=b\n"))
                }
            }
        }
    }
}

/// The error `body` throws, as an `AppForwardError` (nil if it threw none).
func forwardError(_ body: () async throws -> Any) async -> AppForwardError? {
    do {
        _ = try await body()
        return nil
    } catch let error as AppForwardError {
        return error
    } catch {
        Issue.record("not an AppForwardError: \(error)")
        return nil
    }
}

/// The app behind the agent. `/headers` lists what it received (one `Name: value` line each, then its path
/// and host) with the TCP connection's client port in `X-Connection`; `/echo` streams the body back;
/// `/download?bytes=N` streams N bytes; `/upload` reads slowly (see `TransferMeter`).
func upstreamRouter(meter: TransferMeter = TransferMeter()) -> Router<ConnectionContext> {
    let router = Router(context: ConnectionContext.self)
    let headers: @Sendable (Request, ConnectionContext) async throws -> Response = { request, context in
        var text = ""
        for field in request.headers { text += "\(field.name.rawName): \(field.value)\n" }
        text += "path: \(request.uri)\nhost: \(request.head.authority ?? "")\n"
        return Response(status: .ok, headers: [HTTPField.Name("X-Connection")!: "\(context.connectionPort)"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
    router.get("/headers", use: headers)
    router.get("/ui/headers", use: headers)
    router.get("/hello") { _, _ in "hello" }
    router.head("/hello") { _, _ in Response(status: .ok, headers: [.contentLength: "5"]) }
    router.get("/empty") { _, _ in Response(status: .noContent) }
    // Answers only after `seconds` (an app that holds a request past the gateway's patience).
    router.get("/hold") { request, _ in
        try await Task.sleep(for: .seconds(request.uri.queryParameters.get("seconds", as: Int.self) ?? 1))
        return "late"
    }
    let echo: @Sendable (Request, ConnectionContext) async throws -> Response = { request, _ in
        Response(status: .ok, body: ResponseBody(asyncSequence: request.body))
    }
    router.post("/echo", use: echo)
    router.put("/echo", use: echo)
    router.get("/download") { request, _ in
        let total = request.uri.queryParameters.get("bytes", as: Int.self) ?? 0
        return Response(status: .ok, body: ResponseBody(contentLength: total) { writer in
            var sent = 0
            while sent < total {
                let size = min(TransferMeter.chunk, total - sent)
                try await writer.write(ByteBuffer(repeating: UInt8(ascii: "d"), count: size))
                sent += size
                meter.produced(size)
            }
            try await writer.finish(nil)
        })
    }
    router.post("/upload") { request, _ in
        var received = 0
        for try await chunk in request.body {
            received += chunk.readableBytes
            await meter.consumed(chunk.readableBytes)
        }
        return "received \(received)"
    }
    return router
}

/// Bytes produced and consumed on the two ends of a transfer, and the most that were ever between them. The
/// consumer pauses for `pause` at every `pauseEvery` bytes, so whatever can fill up does.
final class TransferMeter: Sendable {
    /// 64 MiB by default (a debug build moves a few MB/s through the mesh); `MESHGATE_LARGE_BODY_BYTES` for more.
    static let total = ProcessInfo.processInfo.environment["MESHGATE_LARGE_BODY_BYTES"].flatMap(Int.init) ?? 64 << 20
    static let chunk = 64 << 10
    static let pauseEvery = 16 << 20
    static let pause: Duration = .milliseconds(150)
    /// Mesh stream windows (4 MiB each way), loopback socket buffers (a few MiB each), the forwarder's and
    /// Hummingbird's bounded buffers: far below the transfer (measured: under 10 MiB).
    static let inFlightBound = 24 << 20

    private let counts = Mutex((produced: 0, consumed: 0, maxInFlight: 0))

    var maxInFlight: Int { counts.withLock { $0.maxInFlight } }
    var consumedBytes: Int { counts.withLock { $0.consumed } }
    var producedBytes: Int { counts.withLock { $0.produced } }

    func produced(_ bytes: Int) {
        counts.withLock {
            $0.produced += bytes
            $0.maxInFlight = max($0.maxInFlight, $0.produced - $0.consumed)
        }
    }

    func consumed(_ bytes: Int) async {
        let crossed = counts.withLock { counts in
            defer { counts.consumed += bytes }
            return (counts.consumed + bytes) / Self.pauseEvery > counts.consumed / Self.pauseEvery
        }
        if crossed { try? await Task.sleep(for: Self.pause) }
    }
}

/// `total` bytes in fresh 64 KiB buffers (fresh, so that bytes held anywhere would show in the process's memory).
struct GeneratedBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let total: Int
    let onChunk: @Sendable (Int) -> Void

    struct AsyncIterator: AsyncIteratorProtocol {
        var remaining: Int
        let onChunk: @Sendable (Int) -> Void

        mutating func next() async throws -> ByteBuffer? {
            guard remaining > 0 else { return nil }
            let size = Swift.min(TransferMeter.chunk, remaining)
            remaining -= size
            onChunk(size)
            return ByteBuffer(repeating: UInt8(ascii: "u"), count: size)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(remaining: total, onChunk: onChunk) }
}

/// The process's resident memory (Linux): its peak is reset at the start, so `peakGrowth` is what one test added.
struct ProcessMemory {
    /// Far below what a test moves each way (measured: under 10 MiB).
    static let growthBound = 40 << 20
    let baseline: Int
    let started = ContinuousClock.now

    static func start() -> ProcessMemory {
        // "5" resets the peak (VmHWM) to the current RSS.
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        return ProcessMemory(baseline: status("VmRSS"))
    }

    var elapsed: Duration { .now - started }

    func peakGrowth() -> Int { Self.status("VmHWM") - baseline }

    private static func status(_ field: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes << 10
    }
}

/// Records the streams it hands out (from `streams`), so a test can see whether they end.
final class LeaseLog: AgentStreamFailureReporting {
    private let streams: any AgentStreamFailureReporting
    private let leased = Mutex([any Channel]())

    init(_ streams: any AgentStreamFailureReporting) { self.streams = streams }

    var channels: [any Channel] { leased.withLock { $0 } }

    func checkoutReportingFailure(agent: UUID, port: UInt16) async throws -> (lease: AgentStreamLease, failure: AgentStreamFailureRecord?) {
        let checkout = try await streams.checkoutReportingFailure(agent: agent, port: port)
        leased.withLock { $0.append(checkout.lease.channel) }
        return checkout
    }

    func checkin(_ lease: AgentStreamLease) async { await streams.checkin(lease) }
    func checkinOnLoop(_ lease: AgentStreamLease) { streams.checkinOnLoop(lease) }
}

/// Whether `channel` closes before `deadline` (polled: a close future cannot be given up on).
func closes(_ channel: any Channel, by deadline: ContinuousClock.Instant) async -> Bool {
    while channel.isActive, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
    return !channel.isActive
}

/// `body`'s value, or nil if it throws or takes longer than `limit` (`body` must end when cancelled).
func firstOf<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async -> T? {
    await withTaskGroup(of: T?.self) { group in
        group.addTask { try? await body() }
        group.addTask {
            try? await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        return await group.next() ?? nil
    }
}
