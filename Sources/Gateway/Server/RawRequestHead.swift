import Foundation
import NIOHTTP1

/// A request head as the client sent it, header names in their original case: connections taken over below
/// Hummingbird (a DERP upgrade, an app's WebSocket upgrade) are decided, and forwarded, from it.
struct RawRequestHead: Sendable {
    let method: String
    /// As on the request line: path and query.
    let target: String
    let version: HTTPVersion
    let headers: [(name: String, value: String)]

    /// Parses the head up to (not including) the blank line; nil for anything that is not an HTTP/1.x request.
    init?(_ text: some StringProtocol) {
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: true)
        guard let requestLine = lines.first else { return nil }
        let parts = requestLine.split(separator: " ")
        guard parts.count == 3 else { return nil }
        switch parts[2] {
        case "HTTP/1.1": version = .http1_1
        case "HTTP/1.0": version = .http1_0
        default: return nil
        }
        (method, target) = (String(parts[0]), String(parts[1]))
        headers = lines.dropFirst().compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]).trimmingCharacters(in: .whitespaces), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
        }
    }

    /// The path without the query.
    var path: Substring { target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "" }

    /// Every value of the header `name` (any case), in order.
    func values(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name }.map(\.value)
    }

    /// The comma-separated tokens of header `name`, lowercased (`Connection`, `Upgrade`).
    func tokens(_ name: String) -> [String] {
        values(name).flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
    }

    /// The host the request was for, without a port.
    var host: String? { values("host").first }

    /// NIO's form, header case kept.
    var nioHead: HTTPRequestHead {
        HTTPRequestHead(version: version, method: HTTPMethod(rawValue: method), uri: target, headers: HTTPHeaders(headers.map { ($0.name, $0.value) }))
    }
}
