import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
import Tunnel

@testable import AppProxy

/// An exchange's timers (the stream's response-head deadline, the wait for a small body), on an embedded loop whose
/// clock moves only when told.
@Suite struct ExchangeTimerTests {
    /// Takes streams back and forgets them.
    struct Keeps: AgentStreamSource {
        func checkout(agent: UUID, port: UInt16) async throws -> AgentStreamLease { throw ChannelError.ioOnClosedChannel }
        func checkin(_ lease: AgentStreamLease) async {}
        func checkinOnLoop(_ lease: AgentStreamLease) {}
    }

    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    func exchange(on channel: EmbeddedChannel, timeout: Duration) throws -> HTTPExchangeHandler {
        let lease = AgentStreamLease(channel: channel, agent: UUID(), port: 80, reused: true)
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        return try #require(try HTTPExchangeHandler.install(head, on: lease, returningTo: Keeps(), responseHeadTimeout: timeout, bodyless: true)?.exchange)
    }

    /// A stream as the pool sets it up, connected (its first exchange adds the response-head deadline).
    func pooledStream() throws -> (EmbeddedChannel, EmbeddedEventLoop) {
        let channel = EmbeddedChannel()
        try AppUpstreamHTTP.addCodec(to: channel)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
        return (channel, try #require(channel.eventLoop as? EmbeddedEventLoop))
    }

    /// How an exchange started, once it did.
    final class Started {
        var result: Result<HTTPExchangeHandler.Start, any Error>?
        init(_ exchange: HTTPExchangeHandler) { exchange.onStart { self.result = $0 } }
    }

    /// A second exchange on the stream keeps its own deadline: the timer the first one armed fires first, finds the
    /// second not yet due, and comes back for it.
    @Test func eachExchangeGetsItsOwnDeadline() throws {
        let (channel, loop) = try pooledStream()

        let first = try exchange(on: channel, timeout: .seconds(10))
        let firstStart = Started(first)
        try channel.writeInbound(ByteBuffer(string: ok))
        guard case .success? = firstStart.result else { Issue.record("the first exchange did not start"); return }
        #expect(first.completed)

        loop.advanceTime(by: .seconds(5))
        let second = Started(try exchange(on: channel, timeout: .seconds(10)))
        loop.advanceTime(by: .seconds(5))  // the first exchange's deadline
        #expect(second.result == nil && channel.isActive)
        loop.advanceTime(by: .seconds(5) - .milliseconds(1))
        #expect(second.result == nil && channel.isActive)
        loop.advanceTime(by: .milliseconds(1))
        guard case .failure(let error)? = second.result else { Issue.record("the second exchange did not time out"); return }
        #expect(error as? AppUpstreamError == .noResponse(within: .seconds(10)))
        #expect(!channel.isActive)
    }

    /// A shorter deadline than the running timer's moves the timer.
    @Test func aSoonerDeadlineMovesTheTimer() throws {
        let (channel, loop) = try pooledStream()

        let first = try exchange(on: channel, timeout: .seconds(60))
        try channel.writeInbound(ByteBuffer(string: ok))
        #expect(first.completed)
        let second = Started(try exchange(on: channel, timeout: .seconds(1)))
        loop.advanceTime(by: .seconds(1))
        guard case .failure? = second.result else { Issue.record("the second exchange did not time out at its own deadline"); return }
    }

    /// A small response goes to the caller whole when its body follows the head within the patience, in this read
    /// or a later one; a body slower than that leaves the head to go alone.
    @Test func aSmallBodyIsWaitedForBriefly() throws {
        let (channel, loop) = try pooledStream()
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"

        // All in one read: at once, whole.
        let together = Started(try exchange(on: channel, timeout: .seconds(10)))
        try channel.writeInbound(ByteBuffer(string: head + "hello"))
        guard case .success(let whole)? = together.result else { Issue.record("no start"); return }
        #expect(AgentHTTPExchange.wholeBody(whole.parts) == ByteBuffer(string: "hello"))

        // The body in a later read, within the patience: still whole.
        let later = Started(try exchange(on: channel, timeout: .seconds(10)))
        try channel.writeInbound(ByteBuffer(string: head))
        loop.advanceTime(by: HTTPExchangeHandler.wholeBodyPatience - .milliseconds(1))
        #expect(later.result == nil)
        try channel.writeInbound(ByteBuffer(string: "hello"))
        guard case .success(let joined)? = later.result else { Issue.record("no start"); return }
        #expect(AgentHTTPExchange.wholeBody(joined.parts) == ByteBuffer(string: "hello"))

        // A body slower than that: the head goes alone when the patience ends.
        let slow = Started(try exchange(on: channel, timeout: .seconds(10)))
        try channel.writeInbound(ByteBuffer(string: head))
        loop.advanceTime(by: HTTPExchangeHandler.wholeBodyPatience)
        guard case .success(let alone)? = slow.result else { Issue.record("the head waited past the patience"); return }
        #expect(alone.head.status == .ok && alone.parts.isEmpty)
    }
}
