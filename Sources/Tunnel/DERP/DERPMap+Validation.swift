/// Why a DERP map cannot be used. Each case names the region or node and the problem.
public enum DERPMapError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The map has no regions and removes none: nothing to use (often a JSON object that is not a DERP map).
    case noRegions
    case regionKeyMismatch(key: Int, regionID: Int)
    case invalidRegionID(Int)
    case noNodes(regionID: Int)
    case emptyNodeName(regionID: Int, index: Int)
    case nodeRegionMismatch(node: String, regionID: Int, nodeRegionID: Int)
    case invalidHostName(node: String, hostName: String)
    case portOutOfRange(node: String, field: String, port: Int)
    case duplicateNodeName(String)

    public var description: String {
        switch self {
        case .noRegions: "the map has no regions (expected {\"Regions\": {\"<id>\": {…}}})"
        case .regionKeyMismatch(let key, let regionID): "region \"\(key)\": key does not match its RegionID \(regionID)"
        case .invalidRegionID(let id): "region \(id): RegionID must be between 1 and 2^53-1"
        case .noNodes(let id): "region \(id): Nodes is empty (set the region to null to remove it)"
        case .emptyNodeName(let id, let index): "region \(id): node #\(index + 1) has no Name"
        case .nodeRegionMismatch(let node, let regionID, let nodeRegionID):
            "node \(node): RegionID \(nodeRegionID) does not match its region \(regionID)"
        case .invalidHostName(let node, let hostName):
            hostName.isEmpty ? "node \(node): HostName is required" : "node \(node): HostName \"\(hostName)\" is not a host name or IP address"
        case .portOutOfRange(let node, let field, let port):
            field == "STUNPort"
                ? "node \(node): STUNPort \(port) is out of range (0 for 3478, -1 to disable, else 1-65535)"
                : "node \(node): \(field) \(port) is out of range (0 for the default, else 1-65535)"
        case .duplicateNodeName(let name): "node \(name): Name is used more than once (names are unique across regions)"
        }
    }
}

extension DERPMap {
    /// Tailscale's bound on region ids: they must survive a round trip through a JavaScript number.
    static let maximumRegionID = (1 << 53) - 1

    /// Checks what clients rely on. Throws the first problem, in region-id order so the report is stable.
    public func validate() throws(DERPMapError) {
        guard !regions.isEmpty || !removedRegionIDs.isEmpty else { throw .noRegions }
        var names: Set<String> = []
        for key in regionIDs {
            let region = regions[key]!
            guard (1...Self.maximumRegionID).contains(region.regionID) else { throw .invalidRegionID(region.regionID) }
            guard key == region.regionID else { throw .regionKeyMismatch(key: key, regionID: region.regionID) }
            guard !region.nodes.isEmpty else { throw .noNodes(regionID: key) }
            for (index, node) in region.nodes.enumerated() {
                guard !node.name.isEmpty else { throw .emptyNodeName(regionID: key, index: index) }
                guard names.insert(node.name).inserted else { throw .duplicateNodeName(node.name) }
                guard node.regionID == key else { throw .nodeRegionMismatch(node: node.name, regionID: key, nodeRegionID: node.regionID) }
                guard Self.isHostName(node.hostName) else { throw .invalidHostName(node: node.name, hostName: node.hostName) }
                guard (0...65535).contains(node.derpPort) else { throw .portOutOfRange(node: node.name, field: "DERPPort", port: node.derpPort) }
                guard (-1...65535).contains(node.stunPort) else { throw .portOutOfRange(node: node.name, field: "STUNPort", port: node.stunPort) }
            }
        }
    }

    /// A DNS name or an IP literal (IPv6 without brackets): what can stand between `://` and the port.
    static func isHostName(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 253
            && text.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || ".-_:".unicodeScalars.contains($0) }
    }
}
