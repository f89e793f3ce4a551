import AppProxy
import Foundation
import Hummingbird
import Logging

/// One log line per request, like Hummingbird's `LogRequestsMiddleware`, but with secrets that travel in a query
/// redacted: the sealed app-connect key rides in the URL for one redirect, and a log is no place for it.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let level: Logger.Level

    /// Query items whose values never reach the log.
    static var secretQueryItems: Set<String> { [AppConnectKey.queryItemName] }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        context.logger.log(level: level, "Request", metadata: [
            "hb.request.path": .string(Self.redacted(path: request.uri.path, query: request.uri.query)),
            "hb.request.method": .string(request.method.rawValue),
        ])
        return try await next(request, context)
    }

    static func redacted(path: String, query: String?) -> String {
        guard let query, !query.isEmpty else { return path }
        let items = query.split(separator: "&", omittingEmptySubsequences: false).map { item -> Substring in
            let name = item.split(separator: "=", maxSplits: 1).first.map { $0.removingPercentEncoding ?? String($0) } ?? ""
            return secretQueryItems.contains(name) ? Substring("\(name)=REDACTED") : item
        }
        return path + "?" + items.joined(separator: "&")
    }
}
