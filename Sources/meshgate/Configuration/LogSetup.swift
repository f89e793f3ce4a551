import Gateway
import Logging

/// Log output as `--log-format` and `--log-level` say, for every command that runs for a while.
enum LogSetup {
    enum Format: String, CaseIterable { case text, json }

    static func bootstrap(format: Format, level: Logger.Level, label: String = "meshgate") -> Logger {
        switch format {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
        return Logger(label: label)
    }

    static func parseFormat(_ text: String) throws -> Format {
        guard let format = Format(rawValue: text.lowercased()) else { throw ServerSettings.Reason("must be one of: text, json") }
        return format
    }

    static func parseLevel(_ text: String) throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            throw ServerSettings.Reason("must be one of: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return level
    }
}
