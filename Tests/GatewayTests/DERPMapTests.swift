import Foundation
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOFoundationEssentialsCompat
import Synchronization
import Testing
import Tunnel

/// A map with one custom region, as an operator would write it.
func customMap(_ id: Int, code: String, host: String) -> DERPMap {
    DERPMap(regions: [id: DERPRegion(regionID: id, regionCode: code, regionName: code.uppercased(), nodes: [DERPNode(name: "\(id)a", regionID: id, hostName: host)])])
}

func quietLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .warning
    return logger
}

func json(_ map: DERPMap) throws -> String { String(decoding: try JSONEncoder().encode(map), as: UTF8.self) }

/// A local HTTP server on port 0 whose one route, `/derpmap.json`, answers whatever the test last set.
final class MapServer: Sendable {
    let response = Mutex<(status: HTTPResponse.Status, body: String)>((.ok, "{}"))

    func serve(_ body: String, status: HTTPResponse.Status = .ok) { response.withLock { $0 = (status, body) } }

    func run(_ body: @escaping @Sendable (URL) async throws -> Void) async throws {
        let router = Router()
        router.get("derpmap.json") { _, _ -> Response in
            let (status, text) = self.response.withLock { $0 }
            return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: quietLogger("map-server"))
        try await app.test(.live) { client in
            try await body(URL(string: "http://127.0.0.1:\(try #require(client.port))/derpmap.json")!)
        }
    }
}

@Suite struct DERPMapAPITests {
    /// `GET /api/v2/derp-map` answers signed-in users and agents with the map in Go field names; anyone else
    /// gets 401, and a refused credential says which.
    @Test func servedToUsersAndAgents() async throws {
        var deployment = try Deployment()
        let map = DERPMap.embedded(accessURL: URL(string: "https://meshgate.test")!, stunPort: nil)
        deployment.environment.derpMap = map
        try await deployment.test { api in
            let anonymous = try await api.request(.get, "/api/v2/derp-map")
            #expect(anonymous.status == .unauthorized && anonymous.message == "You are not signed in.")
            #expect(try await api.request(.get, "/api/v2/derp-map", token: "bogus").status == .unauthorized)

            let token = try await api.signInOwner()
            let user = try await api.request(.get, "/api/v2/derp-map", token: token)
            #expect(user.status == .ok && user.headers[.contentType] == "application/json")
            #expect(try JSONDecoder().decode(DERPMap.self, from: Data(buffer: user.body)) == map)
            #expect(String(buffer: user.body).contains(#""Regions":{"999":{"Nodes":[{"DERPPort":443,"HostName":"meshgate.test","Name":"999a""#))

            let workspace = try #require(try await api.request(.post, "/api/v2/workspaces", json: ["name": "dev"], token: token).object()["id"] as? String)
            let agent = try await api.request(.post, "/api/v2/workspaces/\(workspace)/agents", json: ["name": "main"], token: token)
            let agentToken = try #require(try agent.object()["token"] as? String)
            let header = HTTPField.Name("Meshgate-Agent-Token")!
            let asAgent = try await api.request(.get, "/api/v2/derp-map", headers: [header: agentToken])
            #expect(asAgent.status == .ok && asAgent.body == user.body)
            let tampered = String(agentToken.dropLast()) + (agentToken.hasSuffix("a") ? "b" : "a")
            let refused = try await api.request(.get, "/api/v2/derp-map", headers: [header: tampered])
            #expect(refused.status == .unauthorized && refused.message == "Invalid agent token.")
        }
    }
}

@Suite struct DERPMapSourceTests {
    static let embedded = DERPMap.embedded(accessURL: URL(string: "https://meshgate.test")!, stunPort: nil)
    static let logger = quietLogger("derp-map-test")

    static func load(
        path: String? = nil, url: URL? = nil, embedded: DERPMap? = Self.embedded, timeout: TimeAmount = .seconds(10)
    ) async throws -> DERPMapSource {
        var configuration = DERPMapSource.Configuration(embedded: embedded, path: path, url: url)
        configuration.maximumSize = 4096
        configuration.fetchTimeout = timeout
        return try await DERPMapSource.load(configuration, logger: logger)
    }

    static func temporaryFile(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("derpmap-\(UUID().uuidString).json").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Without options the map is the embedded region alone, or empty when the relay is disabled.
    @Test func embeddedByDefault() async throws {
        #expect(try await Self.load().current == Self.embedded)
        #expect(try await Self.load(embedded: nil).current == DERPMap())
    }

    /// The URL's map is layered over the embedded region and refreshed: a changed map replaces it, and garbage,
    /// an error status, an invalid or oversized map keep the last good one.
    @Test func urlRefreshKeepsLastGoodMap() async throws {
        let server = MapServer()
        try server.serve(json(customMap(900, code: "first", host: "first.example.com")))
        try await server.run { url in
            let source = try await Self.load(url: url)
            #expect(source.current.regionIDs == [900, 999] && source.current.regions[900]?.regionCode == "first")

            var replacing999 = customMap(901, code: "second", host: "second.example.com")
            replacing999.regions[999] = customMap(999, code: "own", host: "own.example.com").regions[999]
            try server.serve(json(replacing999))
            try await source.refresh()
            #expect(source.current.regionIDs == [901, 999] && source.current.regions[999]?.regionCode == "own")
            let good = source.current

            let failures: [(HTTPResponse.Status, String, String)] = [
                (.ok, "garbage", "not a DERP map in Tailscale's JSON format: malformed JSON"),
                (.internalServerError, "{}", "answered HTTP 500, expected 200"),
                (.ok, #"{"error": "not found"}"#, #"invalid DERP map: the map has no regions (expected {"Regions": {"<id>": {…}}})"#),
                (.ok, try json(customMap(902, code: "x", host: "")), "invalid DERP map: node 902a: HostName is required"),
                (.ok, String(repeating: " ", count: 5000) + "{}", "the response is larger than 4096 bytes"),
            ]
            for (status, body, reason) in failures {
                server.serve(body, status: status)
                let error = await #expect(throws: DERPMapSourceError.self) { try await source.refresh() }
                #expect(error?.option == "derp-config-url" && error?.location == url.absoluteString)
                #expect(error?.reason == reason)
                #expect(source.current == good)
            }
        }
    }

    /// `run()` refreshes on its own at the injected interval.
    @Test func runRefreshesPeriodically() async throws {
        let server = MapServer()
        try server.serve(json(customMap(900, code: "first", host: "first.example.com")))
        try await server.run { url in
            var configuration = DERPMapSource.Configuration(embedded: nil, url: url)
            configuration.refreshInterval = .milliseconds(10)
            let source = try await DERPMapSource.load(configuration, logger: Self.logger)
            try server.serve(json(customMap(900, code: "second", host: "second.example.com")))
            let refresher = Task { try await source.run() }
            defer { refresher.cancel() }
            let deadline = ContinuousClock.now + .seconds(10)
            while source.current.regions[900]?.regionCode != "second", ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(source.current.regions[900]?.regionCode == "second")
        }
    }

    /// A first fetch that fails, or a file that cannot be used, stops start-up naming the option and the problem.
    @Test func unusableMapsFailStartUp() async throws {
        let server = MapServer()
        server.serve("<html>")
        try await server.run { url in
            // The query stays out of the message: a private map's URL may carry a token there.
            let withToken = URL(string: url.absoluteString + "?token=secret")!
            let error = await #expect(throws: DERPMapSourceError.self) { try await Self.load(url: withToken) }
            #expect(error?.description == "--derp-config-url \(url.absoluteString): not a DERP map in Tailscale's JSON format: malformed JSON")
        }
        let refused = await #expect(throws: DERPMapSourceError.self) { try await Self.load(url: URL(string: "http://127.0.0.1:1/map.json")!, timeout: .milliseconds(300)) }
        #expect(refused?.reason.hasPrefix("cannot fetch") == true, "\(refused?.reason ?? "")")

        let missing = await #expect(throws: DERPMapSourceError.self) { try await Self.load(path: "/nonexistent/derpmap.json") }
        #expect(missing?.description.hasPrefix("--derp-config-path /nonexistent/derpmap.json: cannot read the file") == true)

        let wrongKey = try Self.temporaryFile(#"{"Regions": {"900": {"RegionID": 901, "Nodes": [{"Name": "a", "RegionID": 901, "HostName": "h"}]}}}"#)
        let mismatch = await #expect(throws: DERPMapSourceError.self) { try await Self.load(path: wrongKey) }
        #expect(mismatch?.description == "--derp-config-path \(wrongKey): invalid DERP map: region \"900\": key does not match its RegionID 901")

        let wrongType = try Self.temporaryFile(#"{"Regions": {"900": {"RegionID": 900, "Nodes": [{"Name": "a", "RegionID": 900, "HostName": "h", "DERPPort": "443"}]}}}"#)
        let typed = await #expect(throws: DERPMapSourceError.self) { try await Self.load(path: wrongType) }
        #expect(typed?.reason == "not a DERP map in Tailscale's JSON format: wrong type at Regions.900.Nodes.Index 0.DERPPort")

        // Valid alone, but its node name clashes with the embedded region's.
        let clash = try Self.temporaryFile(#"{"Regions": {"900": {"RegionID": 900, "Nodes": [{"Name": "999a", "RegionID": 900, "HostName": "h"}]}}}"#)
        let clashing = await #expect(throws: DERPMapSourceError.self) { try await Self.load(path: clash) }
        #expect(clashing?.reason == "clashes with the other DERP regions: node 999a: Name is used more than once (names are unique across regions)")
    }

    /// The file wins over the URL for the same region; null removes a region; OmitDefaultRegions drops the
    /// embedded one.
    @Test func fileLayersOverURL() async throws {
        let server = MapServer()
        var remote = customMap(900, code: "remote", host: "remote.example.com")
        remote.regions[901] = customMap(901, code: "other", host: "other.example.com").regions[901]
        try server.serve(json(remote))
        try await server.run { url in
            let file = try Self.temporaryFile(
                #"{"Regions": {"900": {"RegionID": 900, "RegionCode": "local", "Nodes": [{"Name": "900x", "RegionID": 900, "HostName": "local.example.com"}]}, "901": null}}"#
            )
            let layered = try await Self.load(path: file, url: url).current
            #expect(layered.regionIDs == [900, 999] && layered.regions[900]?.regionCode == "local")

            let only = try Self.temporaryFile(#"{"omitDefaultRegions": true, "Regions": {"5": {"RegionID": 5, "Nodes": [{"Name": "5a", "RegionID": 5, "HostName": "h"}]}}}"#)
            let omitted = try await Self.load(path: only).current
            #expect(omitted.regionIDs == [5] && !omitted.omitDefaultRegions)
        }
    }
}
