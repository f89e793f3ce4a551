import Foundation
import Gateway
import NIOCore
import Testing
import Tunnel

/// The pool over real mesh streams (two `MeshNode`s on loopback UDP) to a real HTTP/1.1 server behind the
/// agent's `tcp:PORT` forward: what the server sees is what keep-alive through the mesh means.
@Suite(.timeLimit(.minutes(1))) struct AgentStreamPoolTests {
    let agentID = UUID()

    /// A pool (idle timeouts by hand) to an agent node answering for `agentID`, and the HTTP server behind it.
    func withPool(
        maxIdle: Int = 8, maxIdlePerAgent: Int = 128, _ body: @escaping @Sendable (AgentStreamPool, ManualIdleTimer, KeepAliveTestServer, LoopbackAgent) async throws -> Void
    ) async throws {
        let mesh = try await LoopbackAgent.start()
        mesh.dialer.connect(agentID)
        let server = try await KeepAliveTestServer.start()
        let timer = ManualIdleTimer()
        var configuration = AgentStreamPool.Configuration()
        (configuration.timer, configuration.maxIdlePerKey, configuration.maxIdlePerAgent) = (timer, maxIdle, maxIdlePerAgent)
        let pool = AgentStreamPool(dialer: mesh.dialer, configuration: configuration)
        do {
            try await body(pool, timer, server, mesh)
        } catch {
            pool.closeIdle()
            try? await server.close()
            await mesh.close()
            throw error
        }
        pool.closeIdle()
        try await server.close()
        await mesh.close()
    }

    func check(_ path: String, _ pool: AgentStreamPool, _ server: KeepAliveTestServer) async throws -> AgentHTTPCheck.Result {
        try await AgentHTTPCheck.run(agent: agentID, port: server.port, path: path, through: pool)
    }

    /// Two checks in a row share one stream, so the server sees one TCP connection.
    @Test func reusesAStreamForSequentialExchanges() async throws {
        try await withPool { pool, _, server, mesh in
            let first = try await check("/one", pool, server)
            let second = try await check("/two", pool, server)
            #expect(first.status == 200 && String(buffer: first.body) == "hello from /one" && !first.reusedStream)
            #expect(second.status == 200 && String(buffer: second.body) == "hello from /two" && second.reusedStream)
            #expect(second.headers.contains { $0.name == "X-Test" && $0.value == "yes" })
            #expect(server.accepted == 1)
            #expect(mesh.dialer.streamsOpened == 1)
            #expect(pool.idleCount(agent: agentID, port: server.port) == 1)
        }
    }

    /// A stream whose server closed it is never handed out again: not after `Connection: close`, and not when
    /// the server drops its idle connection (the pool sees the FIN while the stream is idle).
    @Test func aStreamTheServerClosedIsNotReused() async throws {
        try await withPool { pool, _, server, _ in
            let closing = try await check("/close", pool, server)
            #expect(closing.status == 200 && String(buffer: closing.body) == "bye")
            #expect(pool.idleCount(agent: agentID, port: server.port) == 0)

            _ = try await check("/a", pool, server)
            #expect(pool.idleCount(agent: agentID, port: server.port) == 1)
            server.closeConnections()
            try await eventually("the idle stream dropped") { pool.idleCount(agent: agentID, port: server.port) == 0 }
            let after = try await check("/b", pool, server)
            #expect(!after.reusedStream && String(buffer: after.body) == "hello from /b")
            #expect(server.accepted == 3)
        }
    }

    /// A reused stream that fails before any response byte (the server dropped the connection as the request
    /// arrived) is retried once on a fresh stream.
    @Test func retriesWhenTheServerDropsAReusedConnection() async throws {
        try await withPool { pool, _, server, mesh in
            _ = try await check("/drop-next", pool, server)
            let retried = try await check("/after", pool, server)
            #expect(retried.status == 200 && String(buffer: retried.body) == "hello from /after" && !retried.reusedStream)
            #expect(server.accepted == 2 && mesh.dialer.streamsOpened == 2)
        }
    }

    /// The idle timeout closes an idle stream, and with it the server's connection; a stream checked in later, or
    /// leased when the sweep runs, lives its own full timeout.
    @Test func idleTimeoutClosesTheStream() async throws {
        try await withPool { pool, timer, server, _ in
            let timeout = AgentStreamPool.Configuration().idleTimeout
            _ = try await check("/a", pool, server)
            #expect(timer.count == 1 && server.open == 1)
            timer.advance(by: timeout - .seconds(1))
            #expect(pool.idleCount(agent: agentID, port: server.port) == 1)
            timer.advance(by: .seconds(1))
            #expect(pool.idleCount(agent: agentID, port: server.port) == 0 && timer.count == 0)
            try await eventually("the server's connection closed") { server.open == 0 }
            // One stream parked now, one checked out: the sweep due for the first leaves the leased one alone.
            _ = try await check("/b", pool, server)
            timer.advance(by: timeout / 2)
            let lease = try await pool.checkout(agent: agentID, port: server.port)
            #expect(lease.reused && timer.count == 1)
            timer.advance(by: timeout)
            #expect(timer.count == 0 && lease.channel.isActive)
            // Parked again, it is swept a full timeout later.
            await pool.checkin(lease)
            #expect(timer.count == 1)
            timer.advance(by: timeout - .seconds(1))
            #expect(pool.idleCount(agent: agentID, port: server.port) == 1)
            timer.advance(by: .seconds(1))
            #expect(pool.idleCount(agent: agentID, port: server.port) == 0)
            try await lease.channel.closeFuture.get()
        }
    }

    /// Streams parked at different times expire in turn: the sweep comes back for the oldest left.
    @Test func theSweepComesBackForTheOthers() async throws {
        try await withPool { pool, timer, server, _ in
            let timeout = AgentStreamPool.Configuration().idleTimeout
            let first = try await pool.checkout(agent: agentID, port: server.port)
            let second = try await pool.checkout(agent: agentID, port: server.port)
            await pool.checkin(first)
            timer.advance(by: .seconds(10))
            await pool.checkin(second)
            #expect(timer.count == 1)
            timer.advance(by: timeout - .seconds(10))
            #expect(pool.idleCount(agent: agentID, port: server.port) == 1 && timer.count == 1)
            try await first.channel.closeFuture.get()
            #expect(second.channel.isActive)
            timer.advance(by: .seconds(10))
            #expect(pool.idleCount(agent: agentID, port: server.port) == 0 && timer.count == 0)
            try await second.channel.closeFuture.get()
        }
    }

    /// At most `maxIdlePerKey` idle streams per (agent, port): checking in one more closes the oldest.
    @Test func keepsAtMostMaxIdlePerKey() async throws {
        try await withPool(maxIdle: 2) { pool, timer, server, mesh in
            var leases: [AgentStreamLease] = []
            for _ in 0..<3 { leases.append(try await pool.checkout(agent: agentID, port: server.port)) }
            #expect(mesh.dialer.streamsOpened == 3)
            for lease in leases { await pool.checkin(lease) }
            #expect(pool.idleCount(agent: agentID, port: server.port) == 2 && timer.count == 1)
            try await leases[0].channel.closeFuture.get()
            // Newest first.
            let next = try await pool.checkout(agent: agentID, port: server.port)
            #expect(next.reused && next.channel === leases[2].channel)
            next.channel.close(promise: nil)
            try await eventually("the closed lease is not listed") { pool.idleCount(agent: agentID, port: server.port) == 1 }
            // Another port is another key.
            let other = try await KeepAliveTestServer.start()
            let elsewhere = try await pool.checkout(agent: agentID, port: other.port)
            #expect(!elsewhere.reused)
            try await elsewhere.channel.close()
            try await other.close()
        }
    }

    /// Across an agent's ports at most `maxIdlePerAgent` idle streams (they count against the mesh connection's
    /// open streams): listing one more closes the oldest of the port being listed.
    @Test func keepsAtMostMaxIdlePerAgent() async throws {
        try await withPool(maxIdle: 2, maxIdlePerAgent: 3) { pool, timer, server, _ in
            let other = try await KeepAliveTestServer.start()
            var first: [AgentStreamLease] = [], second: [AgentStreamLease] = []
            for _ in 0..<2 { first.append(try await pool.checkout(agent: agentID, port: server.port)) }
            for _ in 0..<2 { second.append(try await pool.checkout(agent: agentID, port: other.port)) }
            for lease in first + second { await pool.checkin(lease) }
            #expect(pool.idleCount(agent: agentID, port: server.port) == 2 && pool.idleCount(agent: agentID, port: other.port) == 1)
            try await second[0].channel.closeFuture.get()
            #expect(timer.count == 1)
            pool.closeIdle()
            try await other.close()
        }
    }

    /// The body is read up to 1 MiB and returned up to 64 KiB; a stream cut short is not kept.
    @Test func readsAtMostOneMebibyte() async throws {
        try await withPool { pool, _, server, _ in
            let big = try await check("/big", pool, server)
            #expect(big.bodyBytes == AgentHTTPCheck.bodyReadLimit)
            #expect(big.body.readableBytes == AgentHTTPCheck.bodyPreviewLimit)
            #expect(pool.idleCount(agent: agentID, port: server.port) == 0)
        }
    }

    /// Refusals carry the agent's reason; a server that never answers runs into the timeout; an unknown agent
    /// fails with the mesh's error.
    @Test func failures() async throws {
        try await withPool { pool, _, server, _ in
            let closedPort = try await unusedLocalPort()
            for (port, reason) in [(UInt16(9), "port 9 is not forwarded"), (closedPort, "connect to 127.0.0.1:\(closedPort) failed")] {
                do {
                    _ = try await AgentHTTPCheck.run(agent: agentID, port: port, path: "/", through: pool)
                    Issue.record("expected a refusal of port \(port)")
                } catch MeshStreamError.refused(let service, let text) {
                    #expect(service == "tcp:\(port)" && text.contains(reason))
                }
            }
            let started = ContinuousClock.now
            await #expect(throws: AgentHTTPCheckError.self) {
                _ = try await AgentHTTPCheck.run(agent: agentID, port: server.port, path: "/hang", through: pool, timeout: .milliseconds(300))
            }
            #expect(ContinuousClock.now - started < .seconds(5))
            await #expect(throws: GatewayMeshError.self) {
                _ = try await AgentHTTPCheck.run(agent: UUID(), port: server.port, path: "/", through: pool)
            }
        }
    }
}
