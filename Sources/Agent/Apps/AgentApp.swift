import Foundation
import Tunnel

/// One app an agent offers: a local HTTP service the gateway proxies to, by path or by subdomain.
///
/// Only valid values exist: every initializer goes through `init(declaration:)`, so the flag form, the config file
/// and code share one set of rules, and every error names the app and the field (`AgentAppError`).
public struct AgentApp: Sendable, Equatable {
    /// Lowercase letters, digits and single hyphens, 1–32 characters: one DNS label inside
    /// `{slug}--{agent}--{workspace}--{user}`.
    public let slug: String
    public let displayName: String
    /// Where the agent reaches the app, usually on 127.0.0.1.
    public let url: URL
    public let sharingLevel: SharingLevel
    /// Served at `{slug}--{agent}--…` under the wildcard access URL; otherwise at `/@user/workspace/apps/{slug}/`.
    public let subdomain: Bool
    public let healthCheck: HealthCheck?
    /// Who answers cross-origin requests: meshgate's same-user rule, or the app itself (`cors=passthru`).
    public let cors: AppCORSBehavior

    /// GET `url` every `interval`; < 500 is healthy, `threshold` failures in a row unhealthy.
    public struct HealthCheck: Sendable, Equatable {
        public let url: URL
        /// Whole seconds, as reported to the server; also each check's timeout, so checks never overlap.
        public let interval: Duration
        public let threshold: Int

        public static let defaultInterval: Duration = .seconds(5)
        public static let defaultThreshold = 3
        static let intervalRange: ClosedRange<Int64> = 1...3600
        static let thresholdRange: ClosedRange<Int> = 1...1000
    }

    static let slugLengths: ClosedRange<Int> = 1...32
    static let displayNameLimit = 64

    /// Validates a declaration; `AgentAppError` names the app (its slug, or `where` when the slug itself is bad).
    public init(declaration: Declaration) throws(AgentAppError) {
        let app = declaration.slug.isEmpty ? declaration.source : declaration.slug
        func fail(_ field: AgentAppError.Field, _ value: String, _ reason: String) -> AgentAppError {
            AgentAppError(app: app, field: field, value: value, reason: reason)
        }
        if let reason = Self.slugProblem(declaration.slug) { throw fail(.slug, declaration.slug, reason) }
        guard let url = Self.localURL(declaration.url) else {
            throw fail(.url, declaration.url, "must be an absolute http:// or https:// URL with a host and no user or password, e.g. http://127.0.0.1:8080")
        }
        let displayName = (declaration.name ?? declaration.slug).trimmingCharacters(in: .whitespaces)
        guard !displayName.isEmpty, displayName.count <= Self.displayNameLimit,
            !displayName.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { throw fail(.name, declaration.name ?? "", "must be 1–\(Self.displayNameLimit) printable characters") }
        let sharingLevel = try declaration.share.map { text throws(AgentAppError) in
            guard let level = SharingLevel(rawValue: text.lowercased()) else {
                throw fail(.share, text, "must be one of: \(SharingLevel.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return level
        } ?? .owner
        let subdomain = try declaration.subdomain.map { text throws(AgentAppError) in
            switch text.lowercased() {
            case "", "true", "yes", "1": return true
            case "false", "no", "0": return false
            default: throw fail(.subdomain, text, "must be true or false")
            }
        } ?? false
        let cors = try declaration.cors.map { text throws(AgentAppError) in
            guard let behavior = AppCORSBehavior(rawValue: text.lowercased()) else {
                throw fail(.cors, text, "must be one of: \(AppCORSBehavior.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return behavior
        } ?? .simple

        var healthCheck: HealthCheck?
        if let health = declaration.health {
            guard !health.isEmpty, let healthURL = URL(string: health, relativeTo: url).flatMap({ Self.localURL($0.absoluteString) }) else {
                throw fail(.health, health, "must be a path on the app (/healthz) or an absolute http(s) URL without user or password")
            }
            let interval = try declaration.interval.map { text throws(AgentAppError) in
                guard let seconds = Self.wholeSeconds(text), HealthCheck.intervalRange.contains(seconds) else {
                    throw fail(.interval, text, "must be whole seconds from 1s to 1h, e.g. 10s, 2m or 1m30s")
                }
                return Duration.seconds(seconds)
            } ?? HealthCheck.defaultInterval
            let threshold = try declaration.threshold.map { text throws(AgentAppError) in
                guard let count = Int(text), HealthCheck.thresholdRange.contains(count) else {
                    throw fail(.threshold, text, "must be a whole number from 1 to \(HealthCheck.thresholdRange.upperBound)")
                }
                return count
            } ?? HealthCheck.defaultThreshold
            healthCheck = HealthCheck(url: healthURL, interval: interval, threshold: threshold)
        } else if let orphan = declaration.interval.map({ (AgentAppError.Field.interval, $0) })
            ?? declaration.threshold.map({ (AgentAppError.Field.threshold, $0) })
        {
            // Silently ignoring these would look like a health check that never runs.
            throw fail(orphan.0, orphan.1, "needs a health check URL (health=/path)")
        }

        self.slug = declaration.slug
        self.displayName = displayName
        self.url = url
        self.sharingLevel = sharingLevel
        self.subdomain = subdomain
        self.healthCheck = healthCheck
        self.cors = cors
    }

    /// Why a slug is not valid, or nil when it is.
    static func slugProblem(_ slug: String) -> String? {
        let rule = "must be 1–32 lowercase letters, digits and hyphens, not starting or ending with a hyphen"
        guard slugLengths.contains(slug.count),
            slug.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }),
            slug.first != "-", slug.last != "-"
        else { return rule }
        // "--" separates slug, agent, workspace and user in subdomain hosts.
        if slug.contains("--") { return "must not contain two hyphens in a row (\"--\" separates the parts of an app host name)" }
        // "8080" or "8080s" would read as a port URL in a subdomain host.
        if slug.dropLast(slug.hasSuffix("s") ? 1 : 0).allSatisfy(\.isNumber) {
            return "must not be a number with an optional trailing s: that names a port in app host names"
        }
        return nil
    }

    /// http(s), a host, and no credentials: the URL is reported to the server and shown to users.
    static func localURL(_ text: String) -> URL? {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty, url.user == nil, url.password == nil
        else { return nil }
        return url
    }

    /// "90", "90s", "2m", "1h", "1m30s" as whole seconds; nil for anything else.
    static func wholeSeconds(_ text: String) -> Int64? {
        if let plain = Int64(text) { return plain }
        guard !text.isEmpty else { return nil }
        var total: Int64 = 0
        var digits = ""
        for character in text {
            if character.isASCII, character.isNumber {
                digits.append(character)
                continue
            }
            let unit: Int64
            switch character {
            case "h": unit = 3600
            case "m": unit = 60
            case "s": unit = 1
            default: return nil
            }
            guard let value = Int64(digits), value <= 86_400 else { return nil }
            total += value * unit
            digits = ""
        }
        return digits.isEmpty ? total : nil
    }
}

/// An app declaration that could not be used: which app, which field, the value and what a valid one looks like.
public struct AgentAppError: Error, Equatable, CustomStringConvertible {
    /// The fields, named as in the flag form and the config file.
    public enum Field: String, Sendable, CaseIterable {
        case app, slug, url, name, share, subdomain, health, interval, threshold, cors
    }

    /// The slug, or where the declaration came from when the slug is missing or invalid.
    public let app: String
    public let field: Field
    public let value: String
    public let reason: String

    /// The app error inside a decoder's error (Yams wraps what `init(from:)` throws), for a clear start-up message.
    public static func unwrapping(_ error: any Error) -> AgentAppError? {
        switch error {
        case let error as AgentAppError: return error
        case DecodingError.dataCorrupted(let context): return context.underlyingError.flatMap(unwrapping)
        default: return nil
        }
    }

    public var description: String {
        field == .app
            ? "app \"\(app)\": \(reason)"
            : "app \"\(app)\": invalid \(field.rawValue) \"\(value)\": \(reason)"
    }
}
