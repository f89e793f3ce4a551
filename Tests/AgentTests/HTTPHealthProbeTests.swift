import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing
import Tunnel

@testable import Agent

/// Answers each request with the next status of a script; `nil` never answers. Records the paths asked for.
final class StatusScript: Sendable {
    private let statuses: Mutex<[Int?]>
    private let paths = Mutex<[String]>([])

    init(_ statuses: [Int?]) { self.statuses = Mutex(statuses) }

    var requested: [String] { paths.withLock { $0 } }

    func next(path: String) -> Int? {
        paths.withLock { $0.append(path) }
        return statuses.withLock { $0.isEmpty ? nil : $0.removeFirst() }
    }
}

final class ScriptedHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let script: StatusScript
    private var path = ""

    init(script: StatusScript) { self.script = script }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): path = head.uri
        case .body: break
        case .end:
            guard let status = script.next(path: path) else { return }  // hang: the client's timeout must end it
            let body = context.channel.allocator.buffer(string: "a body nobody reads\n")
            var headers = HTTPHeaders([("Content-Length", "\(body.readableBytes)")])
            if (300..<400).contains(status) { headers.add(name: "Location", value: "/elsewhere") }
            let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

@Suite struct HTTPHealthProbeTests {
    static func startServer(_ script: StatusScript) async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(ScriptedHTTPHandler(script: script))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    /// The real AsyncHTTPClient probe against a server on 127.0.0.1:0: 200, then 503, a redirect reported rather
    /// than followed, a hanging server cut off by the timeout, and a closed port refused.
    @Test(.timeLimit(.minutes(1))) func realProbe() async throws {
        let script = StatusScript([200, 503, 302, nil])
        let server = try await Self.startServer(script)
        let port = try #require(server.localAddress?.port)
        let closed = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let closedPort = try #require(closed.localAddress?.port)
        try await closed.close()

        try await HTTPHealthProbe.withProbe { probe in
            let url = URL(string: "http://127.0.0.1:\(port)/healthz")!
            var statuses: [Int] = []
            for _ in 0..<3 { statuses.append(try await probe.check(url: url, timeout: .seconds(5)).get()) }
            #expect(statuses == [200, 503, 302])
            #expect(script.requested == ["/healthz", "/healthz", "/healthz"], "the redirect was not followed")

            let started = ContinuousClock.now
            let hung = await probe.check(url: URL(string: "http://127.0.0.1:\(port)/hang")!, timeout: .milliseconds(300))
            #expect(throws: (any Error).self) { try hung.get() }
            // Bounds are loose on purpose: under a loaded CI the test itself may wait seconds for a thread.
            #expect(ContinuousClock.now - started < .seconds(30), "the timeout ended the check")

            let knocked = ContinuousClock.now
            let refused = await probe.check(url: URL(string: "http://127.0.0.1:\(closedPort)/healthz")!, timeout: .seconds(120))
            #expect(throws: (any Error).self) { try refused.get() }
            #expect(ContinuousClock.now - knocked < .seconds(30), "refused at once, not retried until the timeout")
        }
        try await server.close()
    }
}
