import Tunnel

/// `Cookie` request header values (RFC 6265 §4.2.1: `name=value` pairs joined by `;`), read over their UTF-8
/// bytes. Every app request goes through this twice (the gate looks for meshgate's cookies, the forwarder removes
/// them), so it slices the header instead of splitting and trimming through Foundation, which cost the gateway a
/// quarter of its CPU under load.
public enum CookieHeader {
    /// One `name=value` pair of a header, trimmed of spaces and tabs; `value` is nil for a pair without `=`.
    public struct Pair {
        public let name: Substring
        public let value: Substring?
        /// The whole pair, trimmed: what is passed on when the pair is kept.
        public let text: Substring
    }

    /// The non-empty pairs of `header`, in order.
    public static func pairs(_ header: String) -> [Pair] {
        var pairs: [Pair] = []
        let bytes = header.utf8
        var start = bytes.startIndex
        while start < bytes.endIndex {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: ";")) ?? bytes.endIndex
            let text = trimmed(header[start..<end])
            if !text.isEmpty {
                if let equals = text.utf8.firstIndex(of: UInt8(ascii: "=")) {
                    let valueStart = text.utf8.index(after: equals)
                    pairs.append(Pair(name: trimmed(text[..<equals]), value: trimmed(text[valueStart...]), text: text))
                } else {
                    pairs.append(Pair(name: text, value: nil, text: text))
                }
            }
            start = end < bytes.endIndex ? bytes.index(after: end) : end
        }
        return pairs
    }

    /// The first non-empty value of cookie `name` in `headers`: an empty one names nothing, so it must not hide a
    /// later cookie of the same name (the rule `AppGate.Credentials` reads by).
    public static func firstValue(named name: String, in headers: [String]) -> Substring? {
        for header in headers {
            for pair in pairs(header) where pair.name == name {
                if let value = pair.value, !value.isEmpty { return value }
            }
        }
        return nil
    }

    /// The app's own cookies in `headers` (each a `Cookie` header's value), joined with "; ", or nil when none is
    /// left once meshgate's are gone.
    public static func appCookies(_ headers: [String]) -> String? {
        var kept: [Substring] = []
        var removedAny = false
        for header in headers {
            for pair in pairs(header) {
                if MeshgateCredentials.isMeshgateCookie(named: pair.name) { removedAny = true } else { kept.append(pair.text) }
            }
        }
        if kept.isEmpty { return nil }
        // The common case of a single header with nothing taken out goes on as it came (trimmed).
        if !removedAny, headers.count == 1, kept.count == 1 { return String(kept[0]) }
        return kept.joined(separator: "; ")
    }

    /// `text` without leading and trailing spaces and tabs (the only whitespace a cookie header has).
    static func trimmed(_ text: Substring) -> Substring {
        let bytes = text.utf8
        var start = bytes.startIndex
        var end = bytes.endIndex
        while start < end, isBlank(bytes[start]) { start = bytes.index(after: start) }
        while end > start, isBlank(bytes[bytes.index(before: end)]) { end = bytes.index(before: end) }
        return text[start..<end]
    }

    private static func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
}
