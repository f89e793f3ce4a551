import Foundation

extension DecodingError {
    /// Where decoding failed, in words a client or operator can act on, e.g. "wrong type at Regions.1.Nodes".
    public var summary: String {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.isEmpty ? "body" : codingPath.map(\.stringValue).joined(separator: ".")
        }
        switch self {
        case .keyNotFound(let key, let context): return "missing field \(path(context.codingPath + [key]))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "wrong type at \(path(context.codingPath))"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "malformed JSON" : "invalid value at \(path(context.codingPath)): \(context.debugDescription)"
        @unknown default: return "undecodable body"
        }
    }
}
