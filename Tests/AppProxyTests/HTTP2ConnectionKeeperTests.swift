import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import AppProxy

/// The connection keeper alone, fed frames and events on an embedded channel.
@Suite struct HTTP2ConnectionKeeperTests {
    func connection() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(HTTP2ConnectionKeeper())
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        return channel
    }

    /// The events NIO's HTTP/2 handler sends up the pipeline as streams open and close.
    func opened(_ id: Int, on channel: EmbeddedChannel) {
        channel.pipeline.fireUserInboundEventTriggered(NIOHTTP2StreamCreatedEvent(streamID: HTTP2StreamID(id), localInitialWindowSize: nil, remoteInitialWindowSize: nil))
    }

    func closed(_ id: Int, on channel: EmbeddedChannel) {
        channel.pipeline.fireUserInboundEventTriggered(StreamClosedEvent(streamID: HTTP2StreamID(id), reason: nil))
    }

    func goAways(_ channel: EmbeddedChannel) throws -> [(HTTP2StreamID, HTTP2ErrorCode)] {
        var found: [(HTTP2StreamID, HTTP2ErrorCode)] = []
        while let frame = try channel.readOutbound(as: HTTP2Frame.self) {
            if case .goAway(let last, let code, _) = frame.payload { found.append((last, code)) }
        }
        return found
    }

    func ping(_ data: UInt64 = 1, ack: Bool = false) -> HTTP2Frame {
        HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: data), ack: ack))
    }

    @Test func aPingFloodIsToldToCalmDownAndKeepalivesAreNot() throws {
        let channel = try connection()
        let loop = try #require(channel.eventLoop as? EmbeddedEventLoop)
        // Keepalive pings a second apart, with a stream open or not, never strike.
        opened(1, on: channel)
        for _ in 0..<30 {
            try channel.writeInbound(ping())
            loop.advanceTime(by: HTTP2ConnectionKeeper.minimumPingInterval)
        }
        #expect(try goAways(channel).isEmpty && channel.isActive)
        // Back to back: the first is not a strike (a second passed), then each one is.
        for _ in 0...HTTP2ConnectionKeeper.pingStrikesAllowed { try channel.writeInbound(ping()) }
        #expect(channel.isActive)
        try channel.writeInbound(ping())
        let sent = try goAways(channel)
        #expect(sent.count == 1 && sent.first?.0 == HTTP2StreamID(1) && sent.first?.1 == .enhanceYourCalm)
        #expect(!channel.isActive)
    }

    @Test func aGracefulShutdownWaitsForThePingAndTheLastStream() throws {
        let channel = try connection()
        opened(3, on: channel)
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(try goAways(channel).map(\.0) == [.maxID])
        // Another client's ping is not the one that ends the first phase.
        try channel.writeInbound(ping(7, ack: true))
        #expect(try goAways(channel).isEmpty)
        opened(5, on: channel)
        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2ConnectionKeeper.shutdownPing, ack: true)))
        #expect(try goAways(channel).map(\.0) == [HTTP2StreamID(5)])
        closed(3, on: channel)
        #expect(channel.isActive)
        closed(5, on: channel)
        #expect(!channel.isActive)
    }

    /// A stream's error (a wrong content-length on it, say) ends that stream only; a connection error ends it all.
    @Test func aStreamErrorEndsOnlyItsStream() throws {
        let channel = try connection()
        opened(1, on: channel)
        opened(3, on: channel)
        channel.pipeline.fireErrorCaught(NIOHTTP2Errors.streamError(streamID: HTTP2StreamID(3), baseError: NIOHTTP2Errors.contentLengthViolated()))
        #expect(channel.isActive)
        #expect(throws: NIOHTTP2Errors.StreamError.self) { try channel.throwIfErrorCaught() }
        channel.pipeline.fireErrorCaught(NIOHTTP2Errors.unableToParseFrame())
        #expect(!channel.isActive)
    }

    /// Nothing more can come: a stream waiting for its request could never finish.
    @Test func aClientThatStoppedSendingIsClosedAtOnce() throws {
        let channel = try connection()
        opened(1, on: channel)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(!channel.isActive)
    }
}
