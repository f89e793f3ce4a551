import Foundation
import Testing

@testable import Tunnel

@Suite struct DERPMapTests {
    static func fixture(_ name: String) throws -> Data {
        try Data(contentsOf: try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures")))
    }

    static func decode(_ json: String) throws -> DERPMap { try JSONDecoder().decode(DERPMap.self, from: Data(json.utf8)) }

    static func jsonObject(_ map: DERPMap) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(map)) as? [String: Any])
    }

    /// A map shaped like Tailscale's public one (several regions, IPv4/IPv6, STUNPort, CanPort80, Avoid)
    /// decodes, validates, and encodes back to the same JSON: Go field names, nothing added, nothing lost.
    @Test func tailscalePublicMapRoundTrip() throws {
        let data = try Self.fixture("tailscale-derpmap")
        let map = try JSONDecoder().decode(DERPMap.self, from: data)
        try map.validate()
        #expect(map.regionIDs == [1, 2, 3, 4, 5, 8, 11, 24])
        let nyc = try #require(map.regions[1])
        #expect(nyc.regionCode == "nyc" && nyc.regionName == "New York City" && nyc.latitude == 40.7128 && nyc.longitude == -74.006)
        #expect(nyc.nodes.map(\.name) == ["1f", "1g"])
        #expect(nyc.nodes[0].ipv4 == "199.38.181.104" && nyc.nodes[0].ipv6 == "2607:f740:f::bc")
        #expect(nyc.nodes[0].stunPort == 3478 && nyc.nodes[0].canPort80 && nyc.nodes[0].derpPort == 0)
        #expect(map.regions[24]?.avoid == true && map.regions[24]?.noMeasureNoHome == true)
        #expect(map.regions[3]?.nodes[0].canPort80 == false)

        let original = try #require(try JSONSerialization.jsonObject(with: data) as? NSDictionary)
        #expect(try NSDictionary(dictionary: Self.jsonObject(map)).isEqual(original))
        #expect(try JSONDecoder().decode(DERPMap.self, from: JSONEncoder().encode(map)) == map)
    }

    /// Go's encoding/json conventions: zero `omitempty` fields are left out, required ones always written;
    /// missing fields are zero, unknown ones ignored; a null region is a removal, written back as null.
    @Test func goJSONConventions() throws {
        let map = try Self.decode("""
            {"Regions": {"900": {"RegionID": 900, "RegionCode": "home", "Future": [1],
                                 "Nodes": [{"Name": "900a", "RegionID": 900, "HostName": "derp.example.com", "Unknown": {"x": 1}}]},
                         "1": null},
             "OmitDefaultRegions": true, "SomethingNew": "ignored"}
            """)
        #expect(map.regionIDs == [900] && map.removedRegionIDs == [1] && map.omitDefaultRegions)
        #expect(map.regions[900]?.regionName == "" && map.regions[900]?.nodes[0].stunPort == 0)

        let object = try Self.jsonObject(map)
        #expect(Set(object.keys) == ["Regions", "omitDefaultRegions"])  // Go's spelling of this one field
        let regions = try #require(object["Regions"] as? [String: Any])
        #expect(regions["1"] is NSNull)
        let region = try #require(regions["900"] as? [String: Any])
        #expect(Set(region.keys) == ["RegionID", "RegionCode", "RegionName", "Nodes"])
        let node = try #require((region["Nodes"] as? [[String: Any]])?.first)
        #expect(Set(node.keys) == ["Name", "RegionID", "HostName"])

        // Region keys are numbers, as Go's map[DERPRegionID] requires; wrong types are decoding errors.
        #expect(throws: DecodingError.self) { try Self.decode(#"{"Regions": {"x": {"RegionID": 1}}}"#) }
        #expect(throws: DecodingError.self) { try Self.decode(#"{"Regions": {"1": {"RegionID": "1"}}}"#) }
    }

    /// Each problem names its region or node.
    @Test func validationNamesTheProblem() throws {
        let node = DERPNode(name: "900a", regionID: 900, hostName: "derp.example.com")
        let valid = DERPMap(regions: [900: DERPRegion(regionID: 900, regionCode: "a", regionName: "A", nodes: [node])])
        try valid.validate()

        func broken(_ change: (inout DERPMap) -> Void) -> DERPMap {
            var map = valid
            change(&map)
            return map
        }
        func editNode(_ change: @escaping (inout DERPNode) -> Void) -> DERPMap {
            broken { change(&$0.regions[900]!.nodes[0]) }
        }
        let cases: [(DERPMap, DERPMapError, String)] = [
            (DERPMap(), .noRegions, "the map has no regions"),
            (broken { $0.regions[901] = $0.regions[900] }, .regionKeyMismatch(key: 901, regionID: 900), "region \"901\": key does not match its RegionID 900"),
            (broken { $0.regions = [0: DERPRegion(regionID: 0, regionCode: "", regionName: "", nodes: [])] }, .invalidRegionID(0), "region 0: RegionID must be"),
            (broken { $0.regions[900]!.nodes = [] }, .noNodes(regionID: 900), "region 900: Nodes is empty"),
            (editNode { $0.name = "" }, .emptyNodeName(regionID: 900, index: 0), "region 900: node #1 has no Name"),
            (editNode { $0.regionID = 1 }, .nodeRegionMismatch(node: "900a", regionID: 900, nodeRegionID: 1), "node 900a: RegionID 1 does not match"),
            (editNode { $0.hostName = "" }, .invalidHostName(node: "900a", hostName: ""), "node 900a: HostName is required"),
            (editNode { $0.hostName = "a b/c" }, .invalidHostName(node: "900a", hostName: "a b/c"), "node 900a: HostName \"a b/c\" is not"),
            (editNode { $0.derpPort = 70000 }, .portOutOfRange(node: "900a", field: "DERPPort", port: 70000), "node 900a: DERPPort 70000 is out of range"),
            (editNode { $0.stunPort = -2 }, .portOutOfRange(node: "900a", field: "STUNPort", port: -2), "node 900a: STUNPort -2 is out of range"),
            (broken { $0.regions[900]!.nodes.append(node) }, .duplicateNodeName("900a"), "node 900a: Name is used more than once"),
        ]
        for (map, expected, message) in cases {
            let error = #expect(throws: DERPMapError.self) { try map.validate() }
            #expect(error == expected)
            #expect(error?.description.hasPrefix(message) == true, "\(error?.description ?? "no error")")
        }
        // Tailscale's own escapes are valid: STUNPort -1 disables STUN, 0 means the defaults; a map that only
        // removes regions is a valid layer.
        try editNode { $0.stunPort = -1 }.validate()
        try editNode { $0.hostName = "2001:db8::1" }.validate()
        try DERPMap(removedRegionIDs: [1]).validate()
    }

    /// Tailscale's `urlString`: https, the port only when it is not the scheme's default; http for
    /// `ForceHTTP`; IPv6 literals in brackets.
    @Test func nodeURL() {
        var node = DERPNode(name: "1a", regionID: 1, hostName: "derp.example.com")
        #expect(node.url?.absoluteString == "https://derp.example.com/derp")
        node.derpPort = 443
        #expect(node.url?.absoluteString == "https://derp.example.com/derp")
        node.derpPort = 8443
        #expect(node.url?.absoluteString == "https://derp.example.com:8443/derp")
        node.forceHTTP = true
        #expect(node.url?.absoluteString == "http://derp.example.com:8443/derp")
        node.derpPort = 80
        #expect(node.url?.absoluteString == "http://derp.example.com/derp")
        node.hostName = "::1"
        #expect(node.url?.absoluteString == "http://[::1]/derp")
    }

    /// The embedded region sits at the access URL: host, port (explicit or the scheme's), and plain HTTP for an
    /// http access URL. Without STUN, STUNPort is -1.
    @Test func embeddedRegionFollowsAccessURL() throws {
        func embeddedNode(_ accessURL: String) throws -> DERPNode {
            let map = DERPMap.embedded(accessURL: URL(string: accessURL)!, stunPort: nil)
            try map.validate()
            let region = try #require(map.regions[999])
            #expect(map.regionIDs == [999] && region.regionCode == "meshgate" && region.regionName == "meshgate Embedded Relay")
            return try #require(region.nodes.count == 1 ? region.nodes.first : nil)
        }
        let https = try embeddedNode("https://meshgate.example.com")
        #expect(https.name == "999a" && https.regionID == 999 && https.hostName == "meshgate.example.com")
        #expect(https.derpPort == 443 && !https.forceHTTP && https.stunPort == -1)
        #expect(https.url?.absoluteString == "https://meshgate.example.com/derp")

        let httpsPort = try embeddedNode("https://meshgate.example.com:8443")
        #expect(httpsPort.derpPort == 8443 && httpsPort.url?.absoluteString == "https://meshgate.example.com:8443/derp")

        let http = try embeddedNode("http://localhost:3000")
        #expect(http.hostName == "localhost" && http.derpPort == 3000 && http.forceHTTP)
        #expect(http.url?.absoluteString == "http://localhost:3000/derp")

        let httpDefault = try embeddedNode("http://10.0.0.5")
        #expect(httpDefault.derpPort == 80 && httpDefault.url?.absoluteString == "http://10.0.0.5/derp")

        let v6 = try embeddedNode("https://[2001:db8::1]:3443")
        #expect(v6.hostName == "2001:db8::1" && v6.url?.absoluteString == "https://[2001:db8::1]:3443/derp")

        #expect(DERPMap.embedded(accessURL: URL(string: "https://x.example")!, stunPort: 3478).regions[999]?.nodes[0].stunPort == 3478)
    }

    /// Layers: an overlay replaces regions by id and removes those it sets to null.
    @Test func merging() throws {
        let embedded = DERPMap.embedded(accessURL: URL(string: "https://meshgate.example.com")!, stunPort: nil)
        let tailscale = try JSONDecoder().decode(DERPMap.self, from: Self.fixture("tailscale-derpmap"))
        let merged = embedded.merging(tailscale)
        #expect(merged.regionIDs == [1, 2, 3, 4, 5, 8, 11, 24, 999])

        let custom999 = DERPRegion(regionID: 999, regionCode: "own", regionName: "Own", nodes: [DERPNode(name: "own", regionID: 999, hostName: "own.example.com")])
        let replaced = merged.merging(DERPMap(regions: [999: custom999], removedRegionIDs: [1, 2]))
        #expect(replaced.regionIDs == [3, 4, 5, 8, 11, 24, 999] && replaced.regions[999] == custom999 && replaced.removedRegionIDs.isEmpty)
    }
}
