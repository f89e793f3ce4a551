import Gateway
import Logging

/// Log output as `--log-format` and `--log-level` say, for every command that runs for a while.
enum LogSetup {
    enum Format: String, CaseIterable { case text, json }

    static func bootstrap(format: Format, level: Logger.Level, label: String = "meshgate") -> Logger {
        switch format {
        case .text:
            LoggingSystem.bootstrap { label in
                TextLogHandler(label: label, logLevel: level)
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

/// `StreamLogHandler`'s lines, without its cost on every metadata change: it formats the whole metadata each time
/// a key is set (Hummingbird sets one on every request, at any log level), this only when a line is written.
struct TextLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    private let label: String

    init(label: String, logLevel: Logger.Level) { (self.label, self.logLevel) = (label, logLevel) }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var stream = StreamLogHandler.standardError(label: label, metadataProvider: metadataProvider)
        stream.logLevel = logLevel
        stream.metadata = metadata
        stream.log(event: event)
    }
}
