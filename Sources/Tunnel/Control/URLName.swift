/// Names that end up in URLs and host names (`{slug}--{agent}--{workspace}--{user}.apps…`): user, workspace
/// and agent names. ASCII letters, digits and single hyphens, 1-32 characters; "--" separates the parts of an
/// app host name, so it can never appear inside one. The gateway checks names with it when they are created,
/// and app routing when it parses them back out of a URL.
public enum URLName {
    public static let maximumLength = 32

    /// nil when valid, otherwise why not.
    public static func problem(with name: some StringProtocol) -> String? {
        if name.isEmpty || name.count > maximumLength { return "must be 1 to \(maximumLength) characters" }
        if !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) {
            return "may contain only ASCII letters, digits and hyphens"
        }
        if name.hasPrefix("-") || name.hasSuffix("-") || name.contains("--") {
            return "may not start or end with a hyphen or contain two in a row"
        }
        return nil
    }

    public static func isValid(_ name: some StringProtocol) -> Bool { problem(with: name) == nil }
}
