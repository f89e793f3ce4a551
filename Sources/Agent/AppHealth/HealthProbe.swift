import AsyncHTTPClient
import Foundation
import Tunnel
import NIOCore
import NIOHTTP1
import NIOPosix

/// One health check: GET `url`, the status code or why there is none. The seam `AppHealthMonitor` tests replace.
public protocol HealthProbe: Sendable {
    func check(url: URL, timeout: Duration) async -> Result<Int, any Error>
}

/// The real probe: AsyncHTTPClient, redirects not followed (a 3xx is an answer, and so healthy), the body dropped
/// unread (AsyncHTTPClient then ends that request), each check bounded by its timeout.
///
/// Owns an `HTTPClient`, which must be shut down: use `withProbe`, which does so however its body ends.
public final class HTTPHealthProbe: HealthProbe {
    private let client: HTTPClient

    public init(eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, decompression: .disabled)
        // A refused connection is this check's answer, not something to retry until the timeout: the next
        // interval is the retry.
        configuration.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: configuration)
    }

    /// A probe for the duration of `body`, shut down afterwards (also when `body` throws or is cancelled).
    public static func withProbe<Value>(
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (HTTPHealthProbe) async throws -> Value
    ) async throws -> Value {
        let probe = HTTPHealthProbe(eventLoopGroup: eventLoopGroup)
        let result: Result<Value, any Error>
        do { result = .success(try await body(probe)) } catch { result = .failure(error) }
        try await probe.shutdown()
        return try result.get()
    }

    public func check(url: URL, timeout: Duration) async -> Result<Int, any Error> {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.headers.add(name: "User-Agent", value: "meshgate-agent health check")
        do {
            let response = try await client.execute(request, timeout: TimeAmount(timeout))
            return .success(Int(response.status.code))
        } catch {
            return .failure(error)
        }
    }

    /// Closes idle connections; checks still running fail.
    public func shutdown() async throws {
        try await client.shutdown()
    }
}
