/// A mode's `--name value` arguments, parsed once; each mode reads and converts its own.
struct Flags {
    private let values: [String: String]

    init(_ arguments: ArraySlice<String>) throws {
        var values: [String: String] = [:]
        var rest = arguments
        while let name = rest.popFirst() {
            guard name.hasPrefix("--"), let value = rest.popFirst() else { throw BenchError("expected --name value, got \(name)") }
            values[String(name.dropFirst(2))] = value
        }
        self.values = values
    }

    subscript(_ name: String) -> String? { values[name] }

    func required(_ name: String) throws -> String {
        guard let value = values[name] else { throw BenchError("missing --\(name)") }
        return value
    }

    /// Converts `--name` with `parse`, naming the flag when the value does not parse; nil when absent.
    func parsed<T>(_ name: String, _ parse: (String) -> T?) throws -> T? {
        guard let text = values[name] else { return nil }
        guard let value = parse(text) else { throw BenchError("bad --\(name) \(text)") }
        return value
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
