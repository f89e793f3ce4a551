import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Synchronization
import Tunnel

/// The gateway's DERP relay: one `DERPServer`, reached over `Upgrade: DERP` or a WebSocket with subprotocol
/// `derp` at `/derp`, on every listener, plus the mesh links to sibling relays.
public final class DERPService: Sendable {
    public let server: DERPServer
    let meshPeers: [DERPMeshPeer]

    public init(server: DERPServer, meshPeers: [DERPMeshPeer] = []) { (self.server, self.meshPeers) = (server, meshPeers) }

    /// The 101 reply to `GET /derp` with `Upgrade: DERP` (Tailscale's headers).
    func upgradeResponse() -> String {
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"
            + "Derp-Version: \(DERPLimits.protocolVersion)\r\nDerp-Public-Key: \(server.publicKey.hex)\r\n\r\n"
    }

    /// The reply when the accept-rate limit refuses an upgrade.
    static let tooManyConnectionsResponse: String = {
        let body = #"{"message":"Too many new DERP connections.","detail":"retry in a second"}"#
        return "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
    }()

    /// Runs a raw-TCP (upgraded) DERP connection until it ends.
    func serve(_ connection: NIOAsyncChannel<DERPFrame, DERPFrame>, logger: Logger) async {
        let channel = connection.channel
        do {
            try await connection.executeThenClose { inbound, outbound in
                try await server.serve(frames: inbound, write: { try await outbound.write(contentsOf: $0) }, close: { channel.close(promise: nil) })
            }
        } catch {
            // A client breaking the protocol loses its own connection only.
            logger.debug("DERP connection ended", metadata: ["error": "\(error)"])
        }
    }
}

/// The relay's background work: mesh links, metrics, and Restarting to every client at graceful shutdown.
struct DERPRelayService: Service {
    let derp: DERPService
    let logger: Logger
    /// How often relay counters are copied into swift-metrics.
    static let metricsInterval: Duration = .seconds(5)

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            for peer in derp.meshPeers { group.addTask { await peer.run() } }
            group.addTask { await exportMetrics() }
            try? await gracefulShutdown()
            derp.server.shutdown()
            group.cancelAll()
        }
    }

    private func exportMetrics() async {
        let counters = derp.server.counters
        let clients = Gauge(label: "meshgate_derp_clients")
        let refused = Counter(label: "meshgate_derp_accepts_refused_total")
        let packetsIn = Counter(label: "meshgate_derp_packets_received_total")
        let bytesIn = Counter(label: "meshgate_derp_bytes_received_total")
        let packetsOut = Counter(label: "meshgate_derp_packets_sent_total")
        let bytesOut = Counter(label: "meshgate_derp_bytes_sent_total")
        // Every drop reason is a series from the start, so rate() works before the first drop.
        let drops = Dictionary(uniqueKeysWithValues: DERPDropReason.allCases.map {
            ($0, Counter(label: "meshgate_derp_packets_dropped_total", dimensions: [("reason", $0.rawValue)]))
        })
        var last = [String: Int]()
        func export(_ counter: Counter, _ name: String, _ value: Int) {
            counter.increment(by: max(0, value - last[name, default: 0]))
            last[name] = value
        }
        while !Task.isCancelled {
            clients.record(counters.clients.load(ordering: .relaxed))
            export(refused, "refused", counters.acceptsRefused.load(ordering: .relaxed))
            export(packetsIn, "packetsIn", counters.packetsReceived.load(ordering: .relaxed))
            export(bytesIn, "bytesIn", counters.bytesReceived.load(ordering: .relaxed))
            export(packetsOut, "packetsOut", counters.packetsSent.load(ordering: .relaxed))
            export(bytesOut, "bytesOut", counters.bytesSent.load(ordering: .relaxed))
            for (reason, counter) in drops { export(counter, reason.rawValue, counters.dropped(reason)) }
            do { try await Task.sleep(for: Self.metricsInterval) } catch { return }
        }
    }
}
