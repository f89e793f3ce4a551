/// Names that end up in URLs and host names (`{slug}--{agent}--{workspace}--{user}.apps…`): user, workspace
/// and agent names. ASCII letters, digits and single hyphens, 1-32 characters; "--" separates the parts of an
/// app host name, so it can never appear inside one. The gateway checks names with it when they are created,
/// and app routing when it parses them back out of a URL.
public enum URLName {
    public static let maximumLength = 32

    /// nil when valid, otherwise why not. Inlinable: specialized where it is called (apps check names per request).
    @inlinable
    public static func problem(with name: some StringProtocol) -> String? {
        // Every app request checks three or four names: valid ones are decided over the bytes, without grapheme
        // breaking or substring search; anything else takes the path below for its exact reason.
        var count = 0
        var previous: UInt8 = 0
        var doubleHyphen = false
        var plain = true
        for byte in name.utf8 {
            let isHyphen = byte == UInt8(ascii: "-")
            guard isHyphen || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
            else {
                plain = false
                break
            }
            doubleHyphen = doubleHyphen || (isHyphen && previous == UInt8(ascii: "-"))
            previous = byte
            count += 1
        }
        if plain, count > 0, count <= maximumLength, name.utf8.first != UInt8(ascii: "-"), previous != UInt8(ascii: "-"), !doubleHyphen { return nil }
        if name.isEmpty || name.count > maximumLength { return "must be 1 to \(maximumLength) characters" }
        if !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) {
            return "may contain only ASCII letters, digits and hyphens"
        }
        if name.hasPrefix("-") || name.hasSuffix("-") || name.contains("--") {
            return "may not start or end with a hyphen or contain two in a row"
        }
        return nil
    }

    @inlinable
    public static func isValid(_ name: some StringProtocol) -> Bool { problem(with: name) == nil }
}
