import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import Testing
import Tunnel

@Suite struct DERPFallbackTests {
    /// A server (or a proxy in front of it) that answers `Upgrade: DERP` with a 4xx gets a WebSocket attempt
    /// next; `.webSocket` skips the first attempt. Here both are refused, and the requests are recorded.
    @Test func fourHundredFallsBackToWebSocket() async throws {
        let seen = Mutex<[String]>([])
        let router = Router()
        router.get("derp") { request, _ -> Response in
            let kind = request.headers[.upgrade]?.lowercased() ?? "none"
            let subprotocol = request.headers[.secWebSocketProtocol] ?? ""
            seen.withLock { $0.append("\(kind) \(subprotocol)".trimmingCharacters(in: .whitespaces)) }
            return Response(status: .badRequest)
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: Logger(label: "fallback"))
        try await app.test(.live) { client in
            let url = URL(string: "http://127.0.0.1:\(client.port!)/derp")!
            await #expect(throws: DERPConnection.DialError.upgradeRefused(status: 400)) {
                _ = try await DERPConnection.dial(url: url, privateKey: .generate())
            }
            #expect(seen.withLock { $0 } == ["derp", "websocket derp"])
            await #expect(throws: DERPConnection.DialError.upgradeRefused(status: 400)) {
                _ = try await DERPConnection.dial(url: url, privateKey: .generate(), transport: .webSocket)
            }
            #expect(seen.withLock { $0 } == ["derp", "websocket derp", "websocket derp"])
        }
    }
}
