import AppProxy
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import Synchronization

/// The log line and metrics of a request the app proxy's fast path serves, the same as `RequestLogMiddleware` and
/// Hummingbird's `MetricsMiddleware` give every other request (app requests match no route, so theirs is
/// "Unknown" on both paths), plus a count of the fast path's share.
final class AppFastPathLog: AppFastPathObserver {
    private struct Key: Hashable {
        let method: HTTPRequest.Method
        let status: HTTPResponse.Status
    }

    private let logger: Logger
    private let level: Logger.Level
    /// Metric handles by method and status: making one looks it up in the metrics registry under a lock.
    private let metrics = Mutex<[Key: (requests: Counter, duration: Metrics.Timer)]>([:])
    private let served = Counter(label: "meshgate_app_fast_path_requests_total")

    init(logger: Logger, level: Logger.Level) { (self.logger, self.level) = (logger, level) }

    func started(_ request: HTTPRequest) {
        logger.log(level: level, "Request", metadata: [
            "hb.request.path": .string(Self.redacted(request.path ?? "/")),
            "hb.request.method": .string(request.method.rawValue),
        ])
    }

    func finished(_ request: HTTPRequest, status: HTTPResponse.Status, nanoseconds: UInt64) {
        served.increment()
        let key = Key(method: request.method, status: status)
        let handles = metrics.withLock { metrics in
            if let handles = metrics[key] { return handles }
            let dimensions = [("http.route", "Unknown"), ("http.request.method", key.method.rawValue), ("http.response.status_code", String(key.status.code))]
            let handles = (
                Counter(label: "hb.requests", dimensions: dimensions),
                Metrics.Timer(label: "http.server.request.duration", dimensions: dimensions, preferredDisplayUnit: .seconds)
            )
            metrics[key] = handles
            return handles
        }
        handles.requests.increment()
        handles.duration.recordNanoseconds(Int64(clamping: nanoseconds))
    }

    private static func redacted(_ target: String) -> String {
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        return RequestLogMiddleware<GatewayContext>.redacted(path: String(parts[0]), query: parts.count > 1 ? String(parts[1]) : nil)
    }
}
