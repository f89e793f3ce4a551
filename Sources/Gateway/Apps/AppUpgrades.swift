import AppProxy
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Tunnel

/// WebSocket upgrades to workspace apps, taken over below Hummingbird (`UpgradePeek`) so the app's handshake and
/// frames pass byte for byte: the same gate as plain requests, then `AppWebSocketSplice`.
struct AppUpgrades: Sendable {
    let gate: AppGate
    let dialer: any AgentStreamDialer

    func isAppUpgrade(_ head: RawRequestHead) -> Bool {
        AppAddress.match(host: head.host, target: head.target, hostname: gate.configuration.hostname) != nil
    }

    /// Serves one upgrade on `channel` (raw bytes from here on); closes it when done.
    func serve(_ head: RawRequestHead, on channel: any Channel, secure: Bool, logger: Logger) async {
        let scheme = secure ? "https" : "http"
        guard case .app(let app, let upstreamPath) = AppAddress.match(host: head.host, target: head.target, hostname: gate.configuration.hostname) else {
            await answer(.page(.notFound()), on: channel)
            return
        }
        let credentials = AppGate.Credentials(cookieHeaders: head.values("cookie"), sessionHeader: head.values(MeshgateCredentials.sessionHeader.lowercased()).first)
        let originalURL = app.accessMethod == .path ? head.target : "\(scheme)://\(head.host ?? "")\(head.target)"
        switch await gate.admit(app, credentials: credentials, secure: secure, originalURL: originalURL) {
        case .respond(let response):
            await answer(response, on: channel)
        case .proxy(let resolved, _):
            let origin = ForwardingOrigin(clientAddress: channel.remoteAddress?.ipAddress ?? "", scheme: scheme, host: head.host ?? "")
            do {
                _ = try await AppWebSocketSplice.splice(client: channel, head: head.nioHead, to: resolved, path: upstreamPath, origin: origin, dialer: dialer)
            } catch {
                logger.debug("app WebSocket upgrade failed", metadata: ["error": "\(error)"])
                await answer(.page(AppErrorPage.forwarding(error, app: resolved)), on: channel)
            }
        }
    }

    /// A plain HTTP/1.1 answer on the taken-over connection, then close (the browser's WebSocket reports it).
    private func answer(_ response: AppGateResponse, on channel: any Channel) async {
        var lines: [String]
        var body = ""
        switch response {
        case .redirect(let location, let status):
            lines = ["HTTP/1.1 \(status) \(HTTPResponseStatus(statusCode: status).reasonPhrase)", "Location: \(location)"]
        case .page(let page):
            body = page.html
            lines = ["HTTP/1.1 \(page.status) \(HTTPResponseStatus(statusCode: page.status).reasonPhrase)", "Content-Type: text/html; charset=utf-8"]
        }
        lines += ["Content-Length: \(body.utf8.count)", "Cache-Control: no-store", "Connection: close", "", body]
        try? await channel.writeAndFlush(channel.allocator.buffer(string: lines.joined(separator: "\r\n")))
        try? await channel.close()
    }
}
