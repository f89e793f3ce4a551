import Foundation

/// The DERP relays a node may use, in Tailscale's JSON (`tailcfg/derpmap.go`): Go field names, regions keyed
/// by their id as a string, `omitempty` fields left out when zero, unknown fields ignored. Tailscale's public
/// map decodes as is:
///
///     {"Regions": {"900": {"RegionID": 900, "RegionCode": "…", "RegionName": "…",
///                          "Nodes": [{"Name": "900a", "RegionID": 900, "HostName": "…", "DERPPort": 443}]}}}
///
/// A region set to `null` removes that region from the maps layered below (Tailscale's ACL `derpMap`
/// convention); such ids are kept in `removedRegionIDs` and written back as `null`.
public struct DERPMap: Codable, Sendable, Equatable {
    /// Keyed by `DERPRegion.regionID`; ids need not be contiguous.
    public var regions: [Int: DERPRegion]
    public var removedRegionIDs: Set<Int>
    /// "Only use the regions in this map": a custom map that sets it drops the embedded region.
    public var omitDefaultRegions: Bool
    public var homeParams: DERPHomeParams?

    public init(regions: [Int: DERPRegion] = [:], removedRegionIDs: Set<Int> = [], omitDefaultRegions: Bool = false, homeParams: DERPHomeParams? = nil) {
        (self.regions, self.removedRegionIDs, self.omitDefaultRegions, self.homeParams) = (regions, removedRegionIDs, omitDefaultRegions, homeParams)
    }

    public var regionIDs: [Int] { regions.keys.sorted() }

    /// `overlay` layered on top: its regions replace those with the same id, its `null` regions remove them.
    public func merging(_ overlay: DERPMap) -> DERPMap {
        var merged = self
        for id in overlay.removedRegionIDs { merged.regions[id] = nil }
        merged.regions.merge(overlay.regions) { _, replacement in replacement }
        merged.removedRegionIDs = []
        merged.omitDefaultRegions = omitDefaultRegions || overlay.omitDefaultRegions
        merged.homeParams = overlay.homeParams ?? homeParams
        return merged
    }

    enum CodingKeys: String, CodingKey {
        case regions = "Regions"
        // Go writes this one field in lower camel case (`json:"omitDefaultRegions"`); its decoder is
        // case-insensitive, so hand-written maps use either spelling.
        case omitDefaultRegions
        case omitDefaultRegionsCapitalized = "OmitDefaultRegions"
        case homeParams = "HomeParams"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        regions = [:]
        removedRegionIDs = []
        for (key, region) in try container.decodeIfPresent([String: DERPRegion?].self, forKey: .regions) ?? [:] {
            guard let id = Int(key) else {
                throw DecodingError.dataCorruptedError(forKey: .regions, in: container, debugDescription: "region key \"\(key)\" is not a number")
            }
            if let region { regions[id] = region } else { removedRegionIDs.insert(id) }
        }
        omitDefaultRegions = try container.decode(Bool.self, forKey: .omitDefaultRegions, default: false)
            || container.decode(Bool.self, forKey: .omitDefaultRegionsCapitalized, default: false)
        homeParams = try container.decodeIfPresent(DERPHomeParams.self, forKey: .homeParams)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        var byKey: [String: DERPRegion?] = [:]
        for (id, region) in regions { byKey[String(id)] = region }
        for id in removedRegionIDs { byKey[String(id)] = .some(nil) }
        try container.encode(byKey, forKey: .regions)
        try container.encode(omitDefaultRegions, forKey: .omitDefaultRegions, omitting: false)
        try container.encodeIfPresent(homeParams, forKey: .homeParams)
    }
}

/// Hints the control plane gives clients for choosing a home region.
public struct DERPHomeParams: Codable, Sendable, Equatable {
    /// Multiplies a region's measured latency; below 1 favours it, above 1 disfavours it.
    public var regionScore: [Int: Double]

    public init(regionScore: [Int: Double] = [:]) { self.regionScore = regionScore }

    enum CodingKeys: String, CodingKey { case regionScore = "RegionScore" }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        regionScore = try container.decode([Int: Double].self, forKey: .regionScore, default: [:])
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if !regionScore.isEmpty { try container.encode(regionScore, forKey: .regionScore) }
    }
}

/// A geographic region running one or more DERP nodes; clients pick the closest as their home.
public struct DERPRegion: Codable, Sendable, Equatable {
    /// Positive and JavaScript-safe; 900-999 are left to self-hosted relays.
    public var regionID: Int
    /// Short name, usually a city or airport code ("nyc", "fra").
    public var regionCode: String
    public var regionName: String
    public var latitude: Double
    public var longitude: Double
    /// Do not pick as home; use only to reach peers homed here.
    public var avoid: Bool
    /// Neither measure latency to nor home here (a region that only carries traffic for peers homed in it).
    public var noMeasureNoHome: Bool
    /// In priority order: clients dial the first and fall back to the next.
    public var nodes: [DERPNode]

    public init(
        regionID: Int, regionCode: String, regionName: String, latitude: Double = 0, longitude: Double = 0, avoid: Bool = false,
        noMeasureNoHome: Bool = false, nodes: [DERPNode]
    ) {
        (self.regionID, self.regionCode, self.regionName, self.latitude, self.longitude) = (regionID, regionCode, regionName, latitude, longitude)
        (self.avoid, self.noMeasureNoHome, self.nodes) = (avoid, noMeasureNoHome, nodes)
    }

    enum CodingKeys: String, CodingKey {
        case regionID = "RegionID", regionCode = "RegionCode", regionName = "RegionName", latitude = "Latitude"
        case longitude = "Longitude", avoid = "Avoid", noMeasureNoHome = "NoMeasureNoHome", nodes = "Nodes"
    }

    // Missing fields take Go's zero values; `validate()` then names what is wrong, which a decoding error cannot.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        regionID = try container.decode(Int.self, forKey: .regionID, default: 0)
        regionCode = try container.decode(String.self, forKey: .regionCode, default: "")
        regionName = try container.decode(String.self, forKey: .regionName, default: "")
        latitude = try container.decode(Double.self, forKey: .latitude, default: 0)
        longitude = try container.decode(Double.self, forKey: .longitude, default: 0)
        avoid = try container.decode(Bool.self, forKey: .avoid, default: false)
        noMeasureNoHome = try container.decode(Bool.self, forKey: .noMeasureNoHome, default: false)
        nodes = try container.decode([DERPNode].self, forKey: .nodes, default: [])
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(regionID, forKey: .regionID)
        try container.encode(regionCode, forKey: .regionCode)
        try container.encode(regionName, forKey: .regionName)
        try container.encode(latitude, forKey: .latitude, omitting: 0)
        try container.encode(longitude, forKey: .longitude, omitting: 0)
        try container.encode(avoid, forKey: .avoid, omitting: false)
        try container.encode(noMeasureNoHome, forKey: .noMeasureNoHome, omitting: false)
        try container.encode(nodes, forKey: .nodes)
    }
}

/// One DERP (and usually STUN) server in a region.
public struct DERPNode: Codable, Sendable, Equatable {
    /// Unique across all regions, not a host name: region id + letter ("1a", "900b").
    public var name: String
    public var regionID: Int
    /// Required; dialled (unless IPv4/IPv6 say otherwise) and sent as TLS SNI.
    public var hostName: String
    /// Expected certificate name when it differs from `hostName`; "sha256-raw:<hex>" pins a self-signed one.
    public var certName: String
    /// Forces an address instead of DNS; "none" disables that family.
    public var ipv4: String
    public var ipv6: String
    /// 0 means 3478; -1 disables STUN on this node.
    public var stunPort: Int
    /// A STUN server only, not a relay.
    public var stunOnly: Bool
    /// 0 means 443.
    public var derpPort: Int
    /// Tailscale: skip TLS verification (tests only). Kept for round trips; meshgate does not honour it.
    public var insecureForTests: Bool
    /// Dial plain `http://` (Coder's extension of the map, `ForceHTTP`): how the embedded region reaches a
    /// deployment whose access URL is http, behind a TLS-terminating proxy or in local development.
    public var forceHTTP: Bool
    public var stunTestIP: String
    /// The node also answers on port 80, for captive-portal and latency checks.
    public var canPort80: Bool

    public init(
        name: String, regionID: Int, hostName: String, certName: String = "", ipv4: String = "", ipv6: String = "", stunPort: Int = 0,
        stunOnly: Bool = false, derpPort: Int = 0, insecureForTests: Bool = false, forceHTTP: Bool = false, stunTestIP: String = "", canPort80: Bool = false
    ) {
        (self.name, self.regionID, self.hostName, self.certName, self.ipv4, self.ipv6) = (name, regionID, hostName, certName, ipv4, ipv6)
        (self.stunPort, self.stunOnly, self.derpPort, self.insecureForTests) = (stunPort, stunOnly, derpPort, insecureForTests)
        (self.forceHTTP, self.stunTestIP, self.canPort80) = (forceHTTP, stunTestIP, canPort80)
    }

    /// The relay's URL, as Tailscale's `derphttp.Client.urlString` builds it: `https://HostName[:DERPPort]/derp`,
    /// the port left out when it is the scheme's default. `http://` (default port 80) when `forceHTTP`.
    /// Nil only for a host name that `DERPMap.validate()` refuses.
    public var url: URL? {
        let (scheme, defaultPort) = forceHTTP ? ("http", 80) : ("https", 443)
        let host = hostName.contains(":") ? "[\(hostName)]" : hostName
        let port = derpPort != 0 && derpPort != defaultPort ? ":\(derpPort)" : ""
        return URL(string: "\(scheme)://\(host)\(port)/derp")
    }

    enum CodingKeys: String, CodingKey {
        case name = "Name", regionID = "RegionID", hostName = "HostName", certName = "CertName", ipv4 = "IPv4", ipv6 = "IPv6"
        case stunPort = "STUNPort", stunOnly = "STUNOnly", derpPort = "DERPPort", insecureForTests = "InsecureForTests"
        case forceHTTP = "ForceHTTP", stunTestIP = "STUNTestIP", canPort80 = "CanPort80"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name, default: "")
        regionID = try container.decode(Int.self, forKey: .regionID, default: 0)
        hostName = try container.decode(String.self, forKey: .hostName, default: "")
        certName = try container.decode(String.self, forKey: .certName, default: "")
        ipv4 = try container.decode(String.self, forKey: .ipv4, default: "")
        ipv6 = try container.decode(String.self, forKey: .ipv6, default: "")
        stunPort = try container.decode(Int.self, forKey: .stunPort, default: 0)
        stunOnly = try container.decode(Bool.self, forKey: .stunOnly, default: false)
        derpPort = try container.decode(Int.self, forKey: .derpPort, default: 0)
        insecureForTests = try container.decode(Bool.self, forKey: .insecureForTests, default: false)
        forceHTTP = try container.decode(Bool.self, forKey: .forceHTTP, default: false)
        stunTestIP = try container.decode(String.self, forKey: .stunTestIP, default: "")
        canPort80 = try container.decode(Bool.self, forKey: .canPort80, default: false)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(regionID, forKey: .regionID)
        try container.encode(hostName, forKey: .hostName)
        try container.encode(certName, forKey: .certName, omitting: "")
        try container.encode(ipv4, forKey: .ipv4, omitting: "")
        try container.encode(ipv6, forKey: .ipv6, omitting: "")
        try container.encode(stunPort, forKey: .stunPort, omitting: 0)
        try container.encode(stunOnly, forKey: .stunOnly, omitting: false)
        try container.encode(derpPort, forKey: .derpPort, omitting: 0)
        try container.encode(insecureForTests, forKey: .insecureForTests, omitting: false)
        try container.encode(forceHTTP, forKey: .forceHTTP, omitting: false)
        try container.encode(stunTestIP, forKey: .stunTestIP, omitting: "")
        try container.encode(canPort80, forKey: .canPort80, omitting: false)
    }
}

// Go's encoding/json conventions: a missing or null field is the zero value; `omitempty` leaves zero values out.
extension KeyedDecodingContainer {
    fileprivate func decode<T: Decodable>(_ type: T.Type, forKey key: Key, default zero: T) throws -> T {
        try decodeIfPresent(type, forKey: key) ?? zero
    }
}

extension KeyedEncodingContainer {
    fileprivate mutating func encode<T: Encodable & Equatable>(_ value: T, forKey key: Key, omitting zero: T) throws {
        if value != zero { try encode(value, forKey: key) }
    }
}
