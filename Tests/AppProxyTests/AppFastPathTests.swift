@testable import AppProxy
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import Tunnel

/// The fast path below a real Hummingbird server, with the full path (`AppProxyMiddleware`) behind it, over a real
/// mesh pair to a real app: requests with a verified token are answered below Hummingbird, everything else as
/// before, in order, and nothing the app sends is lost on either path.
@Suite(.timeLimit(.minutes(3))) struct AppFastPathTests {
    @Test func aVerifiedTokenIsServedBelowHummingbirdWithTheSameAnswer() async throws {
        try await FastPathGateway.with { gateway in
            let full = try await gateway.exchange([.get("/headers", cookie: "meshgate_session_token=good-session; theme=dark")])[0]
            #expect(full.status == 200 && gateway.observer.served == 0)
            let token = try #require(full.setCookie)
            let fast = try await gateway.exchange([.get("/headers", cookie: "\(token); meshgate_session_token=good-session; theme=dark")])[0]
            #expect(fast.status == 200 && gateway.observer.served == 1)
            // The app heard the same request both ways, and no meshgate credential.
            let lines = { (body: String) in body.split(separator: "\n").filter { !$0.hasPrefix("X-Connection") } }
            #expect(lines(fast.body) == lines(full.body))
            #expect(fast.body.contains("Cookie: theme=dark\n") && !fast.body.contains("meshgate"))
            #expect(fast.body.contains("X-Forwarded-For: 127.0.0.1\n"))
            // The browser gets the app's headers the same way too (the full path also set a new token), and the
            // gateway's own Date (the two may be a second apart).
            let compared = { (response: RawResponse) in response.headers.filter { $0.name != "set-cookie" && $0.name != "date" } }
            #expect(compared(fast) == compared(full))
            #expect(fast.headers.contains { $0.name == "date" && $0.value.hasSuffix(" GMT") })
        }
    }

    /// Pipelined requests, fast and not, answered in the order they came; the fast path's own requests that arrive
    /// while it serves one wait for it (their ends were once handed to Hummingbird alone, which closed the
    /// connection).
    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await FastPathGateway.with { gateway in
            let token = try await gateway.token()
            let cookie = "\(token); meshgate_session_token=good-session"
            let requests: [RawRequest] = [
                .get("/hello", cookie: cookie), .get("/headers", cookie: cookie), .post("/echo", body: "posted", cookie: cookie),
                .get("/hello", cookie: cookie), .get("/empty", cookie: cookie), .get("/hello", cookie: "meshgate_session_token=good-session"),
                .get("/hello", cookie: cookie),
            ]
            let batches = try await gateway.exchange(batches: [requests, [.get("/hello", cookie: cookie)], [.get("/hello", cookie: cookie)]])
            let answers = batches[0]
            #expect(answers.map(\.status) == [200, 200, 200, 200, 204, 200, 200])
            #expect(answers[0].body == "hello" && answers[1].body.contains("path: /headers") && answers[2].body == "posted")
            #expect(answers[3].body == "hello" && answers[5].body == "hello" && answers[6].body == "hello")
            // The first two here; once the POST went to Hummingbird, everything behind it follows it there. On the
            // same connection afterwards, with Hummingbird done, the fast path takes over again.
            let again = batches[1] + batches[2]
            #expect(again.map(\.body) == ["hello", "hello"] && gateway.observer.served == 4)
        }
    }

    @Test func aStaleStreamIsHandedToTheFullPath() async throws {
        try await FastPathGateway.with { gateway in
            let token = try await gateway.token()
            let cookie = "\(token); meshgate_session_token=good-session"
            #expect(try await gateway.exchange([.get("/hello", cookie: cookie)])[0].body == "hello")
            #expect(gateway.observer.served == 1)
            // The idle stream ends while the pool still lists it: the fast path meets a dead stream.
            try await gateway.fixture.streams.endIdleStreamsButKeepThem()
            let answer = try await gateway.exchange([.get("/hello", cookie: cookie)])[0]
            #expect(answer.status == 200 && answer.body == "hello")
            #expect(gateway.observer.served == 1)
        }
    }

    @Test func largeResponsesStreamThrough() async throws {
        try await FastPathGateway.with { gateway in
            let token = try await gateway.token()
            let size = 8 << 20
            let answer = try await gateway.exchange([.get("/download?bytes=\(size)", cookie: "\(token); meshgate_session_token=good-session")])[0]
            #expect(answer.status == 200 && answer.bodyBytes == size && gateway.observer.served == 1)
        }
    }

    @Test func aBrowserGoneMidResponseEndsTheAppsResponse() async throws {
        try await FastPathGateway.with { gateway in
            let token = try await gateway.token()
            let cookie = "\(token); meshgate_session_token=good-session"
            try await gateway.readPartOfAResponse(.get("/download?bytes=\(256 << 20)", cookie: cookie), bytes: 1 << 20)
            // The stream that carried it is closed, not left leased (or pooled) with 255 MiB unread.
            let carrier = try #require(gateway.fixture.streams.lastLeased)
            #expect(await closes(carrier, by: .now + .seconds(20)))
            #expect(gateway.fixture.streams.idleCount == 0)
            #expect(try await gateway.exchange([.get("/hello", cookie: cookie)])[0].body == "hello")
        }
    }

    /// An app that does not answer in time gets the full path's page, from the fast path: with its length, and the
    /// connection still good for the next request.
    @Test func anAppThatNeverAnswersGetsTheTimeoutPage() async throws {
        try await FastPathGateway.with(responseHeadTimeout: .milliseconds(300)) { gateway in
            let token = try await gateway.token()
            let answers = try await gateway.exchange([.get("/hold?seconds=2", cookie: token), .get("/hello", cookie: token)])
            let page = answers[0]
            #expect(page.status == 504 && page.body.contains("did not answer within"))
            #expect(page.headers.contains { $0.name == "content-length" && $0.value == String(page.body.utf8.count) })
            #expect(page.headers.contains { $0.name == "date" && $0.value.hasSuffix(" GMT") })
            // The timed-out stream was closed: the next request opens a new one, on the fast path too.
            #expect(answers[1].body == "hello" && gateway.observer.served == 2)
        }
    }

    /// Without an idle stream the fast path opens one, off the loop, and the next request reuses it; an open that
    /// fails leaves the request to the full path, whose gate and pages decide as before.
    @Test func aMissingStreamIsOpenedOnTheFastPath() async throws {
        try await FastPathGateway.with { gateway in
            let token = try await gateway.token()
            gateway.fixture.streams.closeAll()
            let opened = gateway.fixture.mesh.dialer.streamsOpened
            let answers = try await gateway.exchange([.get("/hello", cookie: token), .get("/hello", cookie: token)])
            #expect(answers.map(\.body) == ["hello", "hello"] && gateway.observer.served == 2)
            #expect(gateway.fixture.mesh.dialer.streamsOpened == opened + 1)
            // The agent is gone: the open fails, and the full path answers with its page.
            gateway.fixture.streams.closeAll()
            gateway.fixture.mesh.dialer.disconnect()
            let page = try await gateway.exchange([.get("/hello", cookie: token)])[0]
            #expect(page.status == 502 && gateway.observer.served == 2)
        }
    }

    /// A client that sends its request and then shuts its side (`nc -N`, some health checkers) still gets the answer:
    /// Hummingbird, which ends the connection on the half-close, hears of it only after the response.
    @Test func aHalfClosedRequestIsStillAnswered() async throws {
        try await FastPathGateway.with { gateway in
            let token = try await gateway.token()
            let answer = try await gateway.exchange([.get("/hello", cookie: "\(token)")], halfClose: true)
            #expect(answer.map(\.body) == ["hello"] && gateway.observer.served == 1)
        }
    }

    /// A graceful shutdown while a request is served here: the answer still goes out, and then the connection ends
    /// (Hummingbird, idle on this connection, would have closed it at once).
    @Test func aGracefulShutdownWaitsForTheResponseServed() async throws {
        try await FastPathGateway.with { gateway in
            let token = try await gateway.token()
            try await gateway.withConnection { inbound, outbound in
                var reader = ResponseReader(inbound: inbound.makeAsyncIterator())
                try await outbound.write(ByteBuffer(string: RawRequest.get("/hold?seconds=1", cookie: token).text))
                // Taken by the fast path once it leased the idle stream the token's request left.
                let deadline = ContinuousClock.now + .seconds(10)
                while gateway.fixture.streams.lastLeased == nil, ContinuousClock.now < deadline { await Task.yield() }
                #expect(gateway.fixture.streams.lastLeased != nil)
                await gateway.shutdown.trigger()
                let answer = try await reader.next()
                #expect(answer.status == 200 && answer.body == "late")
                await #expect(throws: ResponseReader.Closed.self) { try await reader.next() }
            }
            #expect(gateway.observer.served == 1)
        }
    }

    /// A token is for its one app: presented to another app of the same user, it opens nothing on either path.
    @Test func aTokenOpensOnlyItsOwnApp() async throws {
        try await FastPathGateway.with { gateway in
            let token = try await gateway.token()
            let other = RawRequest(text: "GET /@alice/dev/apps/other/hello HTTP/1.1\r\nHost: gateway.test\r\nCookie: \(token)\r\n\r\n")
            let answer = try await gateway.exchange([other])[0]
            #expect(answer.status == 303 && answer.headers.contains { $0.name == "location" && $0.value.hasPrefix("/login?redirect=") })
            #expect(gateway.observer.served == 0)
        }
    }

    /// RFC 9110's own example of an IMF-fixdate.
    @Test func datesAreIMFFixdates() {
        #expect(HTTPDate.format(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.format(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
    }

    @Test func requestsTheFastPathLeavesAlone() throws {
        func head(_ method: HTTPRequest.Method, _ fields: HTTPFields) -> HTTPRequest {
            HTTPRequest(method: method, scheme: "https", authority: "x", path: "/", headerFields: fields)
        }
        #expect(AppFastPath.changesTheConnection(head(.get, [.connection: "keep-alive, Close"])))
        #expect(AppFastPath.changesTheConnection(head(.get, [.upgrade: "websocket"])))
        #expect(!AppFastPath.changesTheConnection(head(.get, [.connection: "keep-alive"])))
    }
}

/// A request as bytes on the wire.
struct RawRequest {
    let text: String

    static func get(_ path: String, cookie: String) -> RawRequest {
        RawRequest(text: "GET \(FastPathGateway.base)\(path.dropFirst()) HTTP/1.1\r\nHost: gateway.test\r\nCookie: \(cookie)\r\n\r\n")
    }

    static func post(_ path: String, body: String, cookie: String) -> RawRequest {
        RawRequest(
            text: "POST \(FastPathGateway.base)\(path.dropFirst()) HTTP/1.1\r\nHost: gateway.test\r\nCookie: \(cookie)\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        )
    }
}

/// A response as read off the wire.
struct RawResponse {
    let status: Int
    /// Names lowercased, in order.
    let headers: [(name: String, value: String)]
    let body: String
    let bodyBytes: Int

    var setCookie: String? {
        headers.first { $0.name == "set-cookie" }.map { String($0.value.split(separator: ";")[0]) }
    }
}

extension [(name: String, value: String)] {
    static func == (lhs: Self, rhs: Self) -> Bool { lhs.map { "\($0.name): \($0.value)" } == rhs.map { "\($0.name): \($0.value)" } }
}

/// A Hummingbird server with the fast path after its HTTP/1.1 codec and the app proxy middleware in its router,
/// forwarding `/@alice/dev/apps/code/…` to the fixture's app.
struct FastPathGateway {
    static let base = "/@alice/dev/apps/code/"
    let fixture: ForwardingFixture
    let port: Int
    let observer: CountingObserver
    /// Begins the gateway server's graceful shutdown.
    let shutdown: ShutdownSwitch
    /// What the app's `/download` wrote.
    let meter: TransferMeter

    final class CountingObserver: AppFastPathObserver {
        private let finished = Atomic(0)
        var served: Int { finished.load(ordering: .relaxed) }
        func started(_ request: HTTPRequest) {}
        func finished(_ request: HTTPRequest, status: HTTPResponse.Status, nanoseconds: UInt64) { finished.add(1, ordering: .relaxed) }
    }

    struct OneApp: AppResolver {
        let agentID: UUID
        let appPort: UInt16
        func resolve(_ request: AppRequest) async throws -> Result<ResolvedApp, AppResolutionFailure> {
            .success(
                ResolvedApp(
                    request: request, ownerID: FastPathGateway.alice.userID, workspaceID: UUID(), agentID: agentID, agentName: "main",
                    agentConnected: true, port: appPort, https: false, pathPrefix: "", sharingLevel: .owner, displayName: "Code", health: nil
                )
            )
        }
    }

    struct Sessions: AppSessionAuthenticator {
        func requester(presenting credential: String) async throws -> AppRequester? { credential == "good-session" ? FastPathGateway.alice : nil }
    }

    struct StaticKeys<Feature: AppKeyFeature>: AppKeys {
        let ring = AppKeyring<Feature>(
            keys: [AppCryptoKey(sequence: 1, secret: (0..<Feature.secretLength).map { UInt8($0) }, startsAt: Date() - 60, expiresAt: Date() + 3600)],
            now: Date()
        )!
        func keyring() async throws -> AppKeyring<Feature> { ring }
        func keyring(including sequence: Int) async throws -> AppKeyring<Feature> { ring }
    }

    static let alice = AppRequester(userID: UUID(), username: "alice", isSiteOwner: false)

    /// `http2`: the server speaks HTTP/2 with prior knowledge (h2c), its fast path on the frames.
    static func with(
        responseHeadTimeout: Duration = AgentHTTPExchange.defaultResponseHeadTimeout, http2: Bool = false,
        _ body: @escaping @Sendable (FastPathGateway) async throws -> Void
    ) async throws {
        try await ForwardingFixture.with { fixture in
            let meter = TransferMeter()
            try await withTestApp(upstreamRouter(meter: meter)) { appPort in
                let gate = AppGate(
                    configuration: .init(accessURL: URL(string: "http://gateway.test")!, hostname: nil, pathAppsDisabled: false, pathAppSharing: false),
                    resolver: OneApp(agentID: fixture.agentID, appPort: UInt16(appPort)), sessions: Sessions(), tokens: StaticKeys<AppTokenSigning>(),
                    now: { Date() }
                )
                let observer = CountingObserver()
                let fastPath = AppFastPath(gate: gate, streams: fixture.streams, observer: observer, responseHeadTimeout: responseHeadTimeout)
                let router = Router(context: ConnectionContext.self)
                router.add(
                    middleware: AppProxyMiddleware(
                        gate: gate, forwarder: fixture.forwarder, connectKeys: StaticKeys<AppConnectEncryption>(), clientAddress: { _ in "127.0.0.1" }
                    )
                )
                let server =
                    http2
                    ? HTTPServerBuilder { responder in
                        AppHTTP2Channel(responder: responder, secure: false, connectionHandlers: { [fastPath.http2Handler(secure: false)] })
                    }
                    : HTTPServerBuilder.http1(configuration: .init(additionalChannelHandlers: [fastPath.handler(secure: false)]))
                let shutdown = ShutdownSwitch()
                try await withTestApp(router, server: server, shutdown: shutdown) { port in
                    try await body(FastPathGateway(fixture: fixture, port: port, observer: observer, shutdown: shutdown, meter: meter))
                }
            }
        }
    }

    /// A signed app token cookie (`name=value`), from a request through the full path.
    func token() async throws -> String {
        try #require(try await exchange([.get("/hello", cookie: "meshgate_session_token=good-session")])[0].setCookie)
    }

    /// Sends `requests` on one connection, one at a time or all in one write, and reads their responses.
    /// `halfClose`: the client shuts its side after its last request.
    func exchange(_ requests: [RawRequest], pipelined: Bool = false, halfClose: Bool = false) async throws -> [RawResponse] {
        try await exchange(batches: pipelined ? [requests] : requests.map { [$0] }, halfClose: halfClose).flatMap { $0 }
    }

    /// On one connection: each batch in one write, then its responses read.
    func exchange(batches: [[RawRequest]], halfClose: Bool = false) async throws -> [[RawResponse]] {
        try await withConnection { inbound, outbound in
            var reader = ResponseReader(inbound: inbound.makeAsyncIterator())
            var answers: [[RawResponse]] = []
            for (index, batch) in batches.enumerated() {
                try await outbound.write(ByteBuffer(string: batch.map(\.text).joined()))
                if halfClose, index == batches.count - 1 { outbound.finish() }
                var batchAnswers: [RawResponse] = []
                for _ in batch { batchAnswers.append(try await reader.next()) }
                answers.append(batchAnswers)
            }
            return answers
        }
    }

    /// Sends `request`, reads `bytes` of its answer and closes the connection.
    func readPartOfAResponse(_ request: RawRequest, bytes: Int) async throws {
        try await withConnection { inbound, outbound in
            try await outbound.write(ByteBuffer(string: request.text))
            var read = 0
            for try await chunk in inbound {
                read += chunk.readableBytes
                if read >= bytes { break }
            }
        }
    }

    func withConnection<T: Sendable>(
        _ body: (NIOAsyncChannelInboundStream<ByteBuffer>, NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> T
    ) async throws -> T {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
            }
        }
        return try await channel.executeThenClose { inbound, outbound in try await body(inbound, outbound) }
    }
}

/// Reads HTTP/1.1 responses (length-delimited or chunked) off a byte stream.
struct ResponseReader {
    var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    var buffer = ByteBuffer()

    struct Closed: Error {}

    private mutating func fill() async throws {
        guard var more = try await inbound.next() else { throw Closed() }
        buffer.writeBuffer(&more)
    }

    private mutating func line() async throws -> String {
        while true {
            if let end = buffer.readableBytesView.firstRange(of: "\r\n".utf8) {
                let length = end.lowerBound - buffer.readerIndex
                let text = buffer.readString(length: length)!
                buffer.moveReaderIndex(forwardBy: 2)
                return text
            }
            try await fill()
        }
    }

    private mutating func bytes(_ count: Int) async throws -> ByteBuffer {
        while buffer.readableBytes < count { try await fill() }
        return buffer.readSlice(length: count)!
    }

    mutating func next() async throws -> RawResponse {
        let statusLine = try await line()
        let status = Int(statusLine.split(separator: " ")[1])!
        var headers: [(name: String, value: String)] = []
        while case let text = try await line(), !text.isEmpty {
            let parts = text.split(separator: ":", maxSplits: 1)
            headers.append((parts[0].lowercased(), parts[1].trimmingCharacters(in: .whitespaces)))
        }
        var body = ByteBuffer()
        let value = { (name: String) in headers.first { $0.name == name }?.value }
        if status == 204 || status == 304 {
        } else if value("transfer-encoding") == "chunked" {
            while true {
                let size = Int(try await line(), radix: 16)!
                if size == 0 {
                    _ = try await line()
                    break
                }
                var chunk = try await bytes(size)
                body.writeBuffer(&chunk)
                _ = try await line()
            }
        } else if let length = value("content-length").flatMap(Int.init) {
            // Large bodies are counted, not kept.
            var remaining = length
            while remaining > 0 {
                if buffer.readableBytes == 0 { try await fill() }
                var slice = buffer.readSlice(length: min(remaining, buffer.readableBytes))!
                remaining -= slice.readableBytes
                if length <= 1 << 20 { body.writeBuffer(&slice) }
            }
            return RawResponse(status: status, headers: headers, body: String(buffer: body), bodyBytes: length)
        }
        return RawResponse(status: status, headers: headers, body: String(buffer: body), bodyBytes: body.readableBytes)
    }
}
