/// Names that end up in URLs and hostnames (`{slug}--{agent}--{workspace}--{user}.apps…`): usernames,
/// workspace and agent names. ASCII letters, digits and single hyphens, 1-32 characters; "--" is the
/// subdomain separator, so it can never appear inside a name.
enum NameRules {
    static let maximumLength = 32

    /// nil when valid, otherwise why not.
    static func problem(with name: String) -> String? {
        if name.isEmpty || name.count > maximumLength { return "must be 1 to \(maximumLength) characters" }
        if !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) {
            return "may contain only ASCII letters, digits and hyphens"
        }
        if name.hasPrefix("-") || name.hasSuffix("-") || name.contains("--") {
            return "may not start or end with a hyphen or contain two in a row"
        }
        return nil
    }

    static func validate(_ name: String, field: String) throws {
        if let problem = problem(with: name) {
            throw APIError.badRequest("Invalid \(field).", detail: "\(field) \"\(name.prefix(64))\" \(problem)")
        }
    }
}
