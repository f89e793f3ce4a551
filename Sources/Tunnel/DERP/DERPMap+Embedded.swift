import Foundation

extension DERPMap {
    /// The built-in relay's region: self-hosted ids run 900-999, and a custom region 999 replaces it.
    public static let embeddedRegionID = 999
    public static let embeddedRegionCode = "meshgate"

    /// A map holding only the built-in relay at the access URL: region 999, one node `999a` whose host and
    /// port are the access URL's (the scheme's default when it names none, written out so no client guesses).
    ///
    /// An `http://` access URL marks the node `ForceHTTP` (as Coder's map does): a deployment behind a
    /// TLS-terminating proxy, or a plain-HTTP development one, then still relays. Stock Tailscale clients
    /// ignore the field and cannot use such a node.
    ///
    /// `stunPort` nil means no STUN server: `STUNPort` -1, so clients do not probe 3478 in vain.
    /// `certName` ("sha256-raw:<hex>") pins a self-signed certificate, which no client could verify otherwise.
    public static func embedded(accessURL: URL, stunPort: Int?, certName: String = "") -> DERPMap {
        let plainHTTP = accessURL.scheme?.lowercased() == "http"
        var host = accessURL.host ?? "localhost"
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let node = DERPNode(
            name: "\(embeddedRegionID)a", regionID: embeddedRegionID, hostName: host, certName: plainHTTP ? "" : certName, stunPort: stunPort ?? -1,
            derpPort: accessURL.port ?? (plainHTTP ? 80 : 443), forceHTTP: plainHTTP
        )
        let region = DERPRegion(regionID: embeddedRegionID, regionCode: embeddedRegionCode, regionName: "meshgate Embedded Relay", nodes: [node])
        return DERPMap(regions: [embeddedRegionID: region])
    }
}
