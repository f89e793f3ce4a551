/// Where meshgate's own credentials travel, named once: the gateway reads them here and the app proxy strips
/// them here, so an app never sees a token that would let it act as its visitor.
public enum MeshgateCredentials {
    /// The session token's cookie (set by login).
    public static let sessionCookie = "meshgate_session_token"
    /// Every meshgate cookie starts with this: the session cookie and the signed app token cookies.
    public static let cookiePrefix = "meshgate_"
    /// The session token as a header (CLI, API clients).
    public static let sessionHeader = "Meshgate-Session-Token"
    /// An agent's token, on its own API calls.
    public static let agentTokenHeader = "Meshgate-Agent-Token"
    /// Every meshgate header starts with this (case-insensitive); none is meant for an app.
    public static let headerPrefix = "Meshgate-"

    /// Whether a cookie of this name is meshgate's (compared without case: stricter than browsers need). These
    /// are inlinable so that callers in other modules get them specialized: asked for every header and cookie.
    @inlinable
    public static func isMeshgateCookie(named name: some StringProtocol) -> Bool {
        // Leading whitespace of any kind is skipped, as cookie parsers (Hummingbird's among them) skip it: a
        // cookie named " meshgate_…" with a no-break space is still meshgate's to whoever reads it.
        hasPrefixIgnoringCase(name.drop { $0.isWhitespace }, cookiePrefix)
    }

    /// Whether a header of this name is meshgate's.
    @inlinable
    public static func isMeshgateHeader(named name: some StringProtocol) -> Bool {
        hasPrefixIgnoringCase(name, headerPrefix)
    }

    /// Over the bytes, ASCII letters folded: asked for every header and cookie of every app request, so nothing is
    /// lowercased into a new string. `prefix` is ASCII.
    @inlinable
    static func hasPrefixIgnoringCase(_ text: some StringProtocol, _ prefix: String) -> Bool {
        var bytes = text.utf8.makeIterator()
        for expected in prefix.utf8 {
            guard let byte = bytes.next() else { return false }
            let folded = byte | 0x20
            guard byte == expected || (folded == expected | 0x20 && (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(folded)) else { return false }
        }
        return true
    }
}
