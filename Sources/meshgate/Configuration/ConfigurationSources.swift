import Foundation
import Yams

/// Where a setting's value came from; named in error messages so a bad value is easy to find.
enum ConfigurationOrigin: Equatable, CustomStringConvertible {
    case flag(String)
    case environment(String)
    case file(path: String, key: String)
    case defaultValue

    var description: String {
        switch self {
        case .flag(let name): "flag --\(name)"
        case .environment(let name): "environment variable \(name)"
        case .file(let path, let key): "key '\(key)' in \(path)"
        case .defaultValue: "default"
        }
    }
}

/// A setting that could not be used. The message names the option, the value and where it came from.
struct ConfigurationError: Error, CustomStringConvertible {
    let option: String
    let value: String
    let origin: ConfigurationOrigin
    let reason: String

    var description: String { "invalid value \"\(value)\" for --\(option) (from \(origin)): \(reason)" }
}

/// Flag > environment (`MESHGATE_<NAME>`) > YAML file > default, for options named in kebab case.
/// Each value is a string here; typed parsing happens once per option in `ServerOptions`.
struct ConfigurationSources {
    let flags: [String: String]
    let environment: [String: String]
    let file: [String: String]
    let filePath: String?
    /// `MESHGATE_` for the server; `MESHGATE_AGENT_` for the agent, which often shares an environment with it.
    var environmentPrefix = "MESHGATE_"

    func environmentName(_ option: String) -> String {
        environmentPrefix + option.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// The winning value and its origin, or nil when only the default applies.
    func value(_ option: String) -> (value: String, origin: ConfigurationOrigin)? {
        if let value = flags[option] { return (value, .flag(option)) }
        let environmentName = self.environmentName(option)
        if let value = environment[environmentName] { return (value, .environment(environmentName)) }
        if let value = file[option], let filePath { return (value, .file(path: filePath, key: option)) }
        return nil
    }

    /// Reads a flat YAML mapping of option names to scalars. Unknown keys are an error, not silently ignored:
    /// a typo in a config file should stop start-up, not quietly run with a default.
    /// `structured` keys (the agent's `apps:` list) are known but left for their own decoder.
    static func loadFile(_ path: String, knownOptions: Set<String>, structured: Set<String> = []) throws -> [String: String] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationFileError(path: path, reason: "cannot read file (\(error.localizedDescription))")
        }
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch {
            throw ConfigurationFileError(path: path, reason: "not valid YAML: \(error)")
        }
        guard let document else { return [:] }
        guard let mapping = document as? [String: Any] else {
            throw ConfigurationFileError(path: path, reason: "expected a mapping of option names to values")
        }
        var values: [String: String] = [:]
        for (key, raw) in mapping where !structured.contains(key) {
            guard knownOptions.contains(key) else {
                throw ConfigurationFileError(path: path, reason: "unknown option '\(key)'")
            }
            switch raw {
            case let string as String: values[key] = string
            case let bool as Bool: values[key] = bool ? "true" : "false"
            case let int as Int: values[key] = String(int)
            case let double as Double: values[key] = String(double)
            case is NSNull: continue
            default: throw ConfigurationFileError(path: path, reason: "option '\(key)' must be a single value")
            }
        }
        return values
    }
}

/// Parses options one at a time, turning a parser's `Reason` into an error that names the option and origin.
struct ConfigurationReader {
    let sources: ConfigurationSources
    /// Options whose values never appear in an error.
    let secrets: Set<String>

    func origin(_ option: String) -> ConfigurationOrigin { sources.value(option)?.origin ?? .defaultValue }

    mutating func parse<T>(_ option: String, default fallback: T, _ parser: (String) throws -> T) throws -> T {
        guard let (value, origin) = sources.value(option) else { return fallback }
        do {
            return try parser(value.trimmingCharacters(in: .whitespaces))
        } catch let reason as ServerSettings.Reason {
            // A secret's value never reaches the log, even a malformed one.
            let shown = secrets.contains(option) ? "(hidden)" : value
            throw ConfigurationError(option: option, value: shown, origin: origin, reason: reason.text)
        }
    }
}

struct ConfigurationFileError: Error, CustomStringConvertible {
    let path: String
    let reason: String
    var description: String { "config file \(path): \(reason)" }
}
