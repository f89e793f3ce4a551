import Tunnel

/// API checks of names that end up in URLs (`URLName`).
enum NameRules {
    static let maximumLength = URLName.maximumLength

    /// nil when valid, otherwise why not.
    static func problem(with name: String) -> String? { URLName.problem(with: name) }

    static func validate(_ name: String, field: String) throws {
        if let problem = problem(with: name) {
            throw APIError.badRequest("Invalid \(field).", detail: "\(field) \"\(name.prefix(64))\" \(problem)")
        }
    }
}
