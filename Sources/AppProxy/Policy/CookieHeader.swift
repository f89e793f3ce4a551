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
        var header = header
        let spans = header.withUTF8 { bytes in
            var spans: [Span] = []
            scan(bytes) { spans.append($0) }
            return spans
        }
        return spans.map { span in
            Pair(name: slice(header, span.name), value: span.value.map { slice(header, $0) }, text: slice(header, span.text))
        }
    }

    /// The first non-empty value of cookie `name` in `headers`: an empty one names nothing, so it must not hide a
    /// later cookie of the same name (the rule `AppGate.Credentials` reads by, names compared as Strings).
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

    /// Byte offsets of one pair: all of it, its name and its value (nil without `=`), each trimmed.
    private struct Span {
        var text: Range<Int>
        var name: Range<Int>
        var value: Range<Int>?
    }

    /// Calls `visit` with each non-empty pair of `bytes`, in order.
    private static func scan(_ bytes: UnsafeBufferPointer<UInt8>, _ visit: (Span) -> Void) {
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: ";") { end += 1 }
            let text = trimmed(bytes, start..<end)
            if !text.isEmpty {
                var equals = text.lowerBound
                while equals < text.upperBound, bytes[equals] != UInt8(ascii: "=") { equals += 1 }
                let span =
                    equals < text.upperBound
                    ? Span(text: text, name: trimmed(bytes, text.lowerBound..<equals), value: trimmed(bytes, (equals + 1)..<text.upperBound))
                    : Span(text: text, name: text, value: nil)
                visit(span)
            }
            start = end + 1
        }
    }

    /// `range` without leading and trailing spaces and tabs.
    private static func trimmed(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int> {
        var (start, end) = (range.lowerBound, range.upperBound)
        while start < end, isBlank(bytes[start]) { start += 1 }
        while end > start, isBlank(bytes[end - 1]) { end -= 1 }
        return start..<end
    }

    /// `text`'s bytes at `range` (offsets into its UTF-8, which for a native string is O(1) to index).
    private static func slice(_ text: String, _ range: Range<Int>) -> Substring {
        let utf8 = text.utf8
        return text[utf8.index(utf8.startIndex, offsetBy: range.lowerBound)..<utf8.index(utf8.startIndex, offsetBy: range.upperBound)]
    }

    private static func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
}
