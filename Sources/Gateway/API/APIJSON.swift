import Foundation
import Tunnel
import Hummingbird

/// The API's one JSON dialect: snake_case keys, ISO 8601 dates.
enum APIJSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}

extension Request {
    /// Reads at most `limit` bytes (413 beyond; by default `context.maxUploadSize`) and decodes them (400 with the
    /// cause if malformed).
    mutating func decodeJSON<T: Decodable>(
        _ type: T.Type, context: some RequestContext, upTo limit: Int? = nil, decoder: JSONDecoder = APIJSON.decoder
    ) async throws -> T {
        guard let value = try await decodeJSONIfPresent(type, context: context, upTo: limit, decoder: decoder) else {
            throw APIError.badRequest("Request body is empty.", detail: "this endpoint expects a JSON object")
        }
        return value
    }

    /// Like `decodeJSON`, but an empty body is nil (for endpoints whose every field is optional).
    mutating func decodeJSONIfPresent<T: Decodable>(
        _ type: T.Type, context: some RequestContext, upTo limit: Int? = nil, decoder: JSONDecoder = APIJSON.decoder
    ) async throws -> T? {
        let buffer = try await collectBody(upTo: limit ?? context.maxUploadSize)
        guard buffer.readableBytes > 0 else { return nil }
        do {
            return try decoder.decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw APIError.badRequest("Request body is not valid JSON for this endpoint.", detail: error.summary)
        }
    }
}
