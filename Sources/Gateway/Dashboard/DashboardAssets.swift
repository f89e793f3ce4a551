import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `/assets/dashboard/{file}`: the dashboard's own stylesheet and scripts, compiled in.
enum DashboardAssets {
    struct Asset: Sendable {
        let contentType: String
        let body: String
    }

    static let files: [String: Asset] = [
        "dashboard.css": Asset(contentType: "text/css; charset=utf-8", body: DashboardStylesheet.css),
        "workspaces.js": Asset(contentType: "text/javascript; charset=utf-8", body: DashboardScripts.workspaces),
        "terminal.js": Asset(contentType: "text/javascript; charset=utf-8", body: DashboardScripts.terminal),
        "commonjs-shim.js": Asset(contentType: "text/javascript; charset=utf-8", body: DashboardScripts.commonJSShim),
    ]

    /// A hash of every asset, in their URLs (`?v=`): browsers may keep them for a year and still never run a stale one.
    static let version: String = {
        var hash = SHA256()
        for name in files.keys.sorted() { hash.update(data: Data((name + "\u{0}" + files[name]!.body).utf8)) }
        return hash.finalize().prefix(6).map { String(format: "%02x", $0) }.joined()
    }()

    static func addRoutes(to router: Router<GatewayContext>) {
        router.get("assets/dashboard/:file") { _, context -> Response in
            guard let name = context.parameters.get("file"), let asset = files[name] else { throw HTTPError(.notFound) }
            var headers: HTTPFields = [.contentType: asset.contentType, .cacheControl: "public, max-age=31536000, immutable"]
            headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: asset.body)))
        }
    }
}
