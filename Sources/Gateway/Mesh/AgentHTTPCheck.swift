import AppProxy
import Foundation
import NIOCore
import NIOHTTP1
import Tunnel

/// One `GET` to 127.0.0.1:PORT inside a workspace, through an agent's `tcp:PORT` and the stream pool: what the
/// http-check endpoint reports, so operators (and the end-to-end tests) can see that the gateway reaches a port.
public enum AgentHTTPCheck {
    /// How much of the body is returned.
    public static let bodyPreviewLimit = 64 << 10
    /// How much of the body is read at most; the stream is closed there rather than drained.
    public static let bodyReadLimit = 1 << 20
    public static let defaultTimeout: Duration = .seconds(10)

    public struct Result: Sendable {
        public var status: Int
        public var headers: [(name: String, value: String)]
        /// The first `bodyPreviewLimit` bytes.
        public var body: ByteBuffer
        /// Bytes of body read, at most `bodyReadLimit`.
        public var bodyBytes: Int
        public var reusedStream: Bool
        public var elapsed: Duration
    }

    /// Sends `GET path` with `Host: 127.0.0.1:port` and reads the response, within `timeout` in all (finding
    /// the agent included). A reused stream that fails before any response byte is retried on another: the
    /// server may have closed that idle connection just as the request went out.
    public static func run(
        agent: UUID, port: UInt16, path: String, through streams: any AgentStreamSource, timeout: Duration = defaultTimeout
    ) async throws -> Result {
        let started = ContinuousClock.now
        return try await withThrowingTaskGroup(of: Result.self) { group in
            group.addTask {
                let exchange: AgentHTTPExchange
                var preview = ByteBuffer()
                var bodyBytes = 0
                do {
                    exchange = try await AgentHTTPExchange.begin(
                        request(path: path, port: port), agent: agent, port: port, through: streams, retryingStaleStreams: true
                    )
                } catch let failure as AgentHTTPExchangeFailure {
                    throw failure.cause
                }
                do {
                    while case .bytes(var chunk) = try await exchange.nextBodyPart() {
                        bodyBytes += chunk.readableBytes
                        let room = bodyPreviewLimit - preview.readableBytes
                        if room > 0, let bytes = chunk.readSlice(length: min(chunk.readableBytes, room)) { preview.writeImmutableBuffer(bytes) }
                        // Reading on would only drain what nobody looks at: the stream is closed instead.
                        if bodyBytes >= bodyReadLimit {
                            bodyBytes = bodyReadLimit
                            exchange.abort()
                            break
                        }
                    }
                } catch let failure as AgentHTTPExchangeFailure {
                    // A body cut short or not HTTP leaves the stream in no state to reuse.
                    exchange.abort()
                    throw failure.cause
                }
                if bodyBytes < bodyReadLimit { await exchange.finish() }
                return Result(
                    status: Int(exchange.response.status.code), headers: exchange.response.headers.map { (name: $0.name, value: $0.value) },
                    body: preview, bodyBytes: bodyBytes, reusedStream: exchange.lease.reused, elapsed: .now - started
                )
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw AgentHTTPCheckError.timedOut(timeout)
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    static func request(path: String, port: UInt16) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "Host", value: "127.0.0.1:\(port)")
        head.headers.add(name: "User-Agent", value: "meshgate-http-check/\(BuildInfo.version)")
        head.headers.add(name: "Accept", value: "*/*")
        return head
    }
}

public enum AgentHTTPCheckError: Error, CustomStringConvertible {
    case timedOut(Duration)

    public var description: String {
        switch self {
        case .timedOut(let limit): "no complete response within \(limit)"
        }
    }
}
