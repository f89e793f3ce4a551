import Foundation

extension AgentApp {
    /// An app as written by a person, every field still text, before `AgentApp(declaration:)` checks it.
    ///
    /// The flag form and the config file use the same field names:
    ///
    ///     --app SLUG=URL[,OPTION]...        (repeat --app for more apps)
    ///
    ///     OPTION      meaning                                          default
    ///     name=TEXT   display name (no commas in the flag form)        the slug
    ///     share=LEVEL owner | authenticated | public                   owner
    ///     subdomain   serve at {slug}--{agent}--… (also =true/false)   path app
    ///     health=URL  GET this path on the app (/healthz) or full URL  no health check (health: disabled)
    ///     interval=D  seconds between checks: 10, 10s, 2m, 1m30s       5s
    ///     threshold=N failures in a row before unhealthy               3
    ///     cors=MODE   simple (meshgate's same-user rule) | passthru    simple
    ///                 (the app's own CORS headers and preflights)
    ///
    ///     --app code=http://127.0.0.1:8080,name=VS Code,share=authenticated,subdomain,health=/healthz,interval=10s
    ///
    /// In the agent's YAML config the same keys, plus `slug` and `url`, form one mapping per app; unknown keys are
    /// an error, as a typo there should stop start-up rather than drop a setting:
    ///
    ///     apps:
    ///       - slug: code
    ///         url: http://127.0.0.1:8080
    ///         name: VS Code
    ///         share: authenticated
    ///         subdomain: true
    ///         health: /healthz
    ///         interval: 10s
    ///         threshold: 5
    public struct Declaration: Sendable, Equatable {
        public var slug: String
        public var url: String
        public var name: String?
        public var share: String?
        /// "" (the bare flag) means true.
        public var subdomain: String?
        public var health: String?
        public var interval: String?
        public var threshold: String?
        public var cors: String?
        /// Names the app in errors while its slug is missing or invalid: the flag value or `apps[N]`.
        public var source: String

        public init(
            slug: String, url: String, name: String? = nil, share: String? = nil, subdomain: String? = nil,
            health: String? = nil, interval: String? = nil, threshold: String? = nil, cors: String? = nil, source: String? = nil
        ) {
            (self.slug, self.url, self.name, self.share, self.subdomain) = (slug, url, name, share, subdomain)
            (self.health, self.interval, self.threshold, self.cors) = (health, interval, threshold, cors)
            self.source = source ?? slug
        }

        /// The options after SLUG=URL; `slug` and `url` are only keys in the config file.
        static let optionFields: [AgentAppError.Field] = [.name, .share, .subdomain, .health, .interval, .threshold, .cors]

        mutating func set(_ field: AgentAppError.Field, _ value: String) {
            switch field {
            case .slug: slug = value
            case .url: url = value
            case .name: name = value
            case .share: share = value
            case .subdomain: subdomain = value
            case .health: health = value
            case .interval: interval = value
            case .threshold: threshold = value
            case .cors: cors = value
            case .app: assertionFailure("not a declaration field")
            }
        }
    }

    /// Parses one `--app` value (grammar on `Declaration`) and validates it.
    public init(flag: String) throws(AgentAppError) {
        try self.init(declaration: Declaration(flag: flag))
    }

    /// Several apps, refusing two with one slug: the gateway addresses apps by slug.
    public static func unique(_ apps: [AgentApp]) throws(AgentAppError) -> [AgentApp] {
        var seen = Set<String>()
        for app in apps where !seen.insert(app.slug).inserted {
            throw AgentAppError(app: app.slug, field: .slug, value: app.slug, reason: "declared twice: slugs must be unique within an agent")
        }
        return apps
    }
}

extension AgentApp.Declaration {
    public init(flag: String) throws(AgentAppError) {
        let source = flag
        func fail(_ reason: String) -> AgentAppError {
            AgentAppError(app: source, field: .app, value: flag, reason: reason)
        }
        guard let equals = flag.firstIndex(of: "=") else { throw fail("expected SLUG=URL[,OPTION]..., e.g. code=http://127.0.0.1:8080") }
        var parts = flag[flag.index(after: equals)...].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        self.init(slug: String(flag[..<equals]).trimmingCharacters(in: .whitespaces), url: parts.removeFirst().trimmingCharacters(in: .whitespaces), source: source)
        let app = slug.isEmpty ? source : slug
        var given = Set<AgentAppError.Field>()
        for option in parts {
            let pair = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = pair[0].trimmingCharacters(in: .whitespaces)
            guard let field = Self.optionFields.first(where: { $0.rawValue == key }) else {
                throw AgentAppError(
                    app: app, field: .app, value: option,
                    reason: "unknown option \"\(key)\" (options: \(Self.optionFields.map(\.rawValue).joined(separator: ", ")))"
                )
            }
            guard given.insert(field).inserted else {
                throw AgentAppError(app: app, field: field, value: option, reason: "given twice")
            }
            guard pair.count == 2 || field == .subdomain else {
                throw AgentAppError(app: app, field: field, value: "", reason: "needs a value: \(key)=…")
            }
            set(field, pair.count == 2 ? pair[1].trimmingCharacters(in: .whitespaces) : "")
        }
    }
}

// MARK: The config file form (YAML through any Decoder, e.g. Yams' YAMLDecoder)

extension AgentApp: Decodable {
    public init(from decoder: any Decoder) throws {
        try self.init(declaration: Declaration(from: decoder))
    }
}

extension AgentApp.Declaration: Decodable {
    private struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    private static let fileFields: [AgentAppError.Field] = [.slug, .url] + optionFields

    public init(from decoder: any Decoder) throws {
        let source = decoder.codingPath.last?.intValue.map { "apps[\($0)]" } ?? "app"
        let container = try decoder.container(keyedBy: Key.self)
        self.init(slug: "", url: "", source: source)
        // The slug first, so errors in other fields name the app by it.
        let isSlug = { (key: Key) in key.stringValue == AgentAppError.Field.slug.rawValue }
        for key in container.allKeys.filter(isSlug) + container.allKeys.filter({ !isSlug($0) }) {
            let app = slug.isEmpty ? source : slug
            guard let field = Self.fileFields.first(where: { $0.rawValue == key.stringValue }) else {
                throw AgentAppError(
                    app: app, field: .app, value: key.stringValue,
                    reason: "unknown key \"\(key.stringValue)\" (keys: \(Self.fileFields.map(\.rawValue).joined(separator: ", ")))"
                )
            }
            if try container.decodeNil(forKey: key) { continue }  // `name:` with nothing after it: not given
            guard let text = Self.scalar(container, key) else {
                throw AgentAppError(app: app, field: field, value: "", reason: "must be a single value, not a list or mapping")
            }
            set(field, text)
        }
        if !slug.isEmpty { self.source = slug }
    }

    /// Any scalar as text, so the file and the flag form share one set of value parsers and messages.
    private static func scalar(_ container: KeyedDecodingContainer<Key>, _ key: Key) -> String? {
        if let text = try? container.decode(String.self, forKey: key) { return text }
        if let flag = try? container.decode(Bool.self, forKey: key) { return flag ? "true" : "false" }
        if let number = try? container.decode(Int.self, forKey: key) { return String(number) }
        if let number = try? container.decode(Double.self, forKey: key) { return String(number) }
        return nil
    }
}
