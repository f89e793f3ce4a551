import HTTPTypes
import NIOHPACK

/// HTTP/2 header blocks to and from HTTPTypes for the frame-level fast path (`AppHTTP2FastStreams`). NIO's own
/// conversions (in NIOHTTPTypesHTTP2) are package-internal to swift-nio-extras; these follow RFC 9113 §8.3 the same
/// way, and lean on `NIOHTTP2Handler`, which has already validated every block that reaches them (pseudo-header
/// fields first and each once, lowercase names, no connection-specific fields).
extension HTTPRequest {
    /// The request of a validated header block; nil for what the fast path never serves (CONNECT and extended
    /// CONNECT, a name HTTPTypes refuses), which then goes the full way and meets its errors there.
    init?(http2Headers block: HPACKHeaders) {
        var method: Method?
        var scheme: String?
        var authority: String?
        var path: String?
        var fields = HTTPFields()
        fields.reserveCapacity(block.count)
        for (name, value, indexing) in block {
            guard name.utf8.first == UInt8(ascii: ":") else {
                guard let fieldName = HTTPField.Name(name) else { return nil }
                var field = HTTPField(name: fieldName, value: value)
                field.indexingStrategy = .init(indexing)
                fields.append(field)
                continue
            }
            switch name {
            case ":method": method = Method(value)
            case ":scheme": scheme = value
            case ":authority": authority = value
            case ":path": path = value
            default: return nil
            }
        }
        guard let method, method != .connect else { return nil }
        self.init(method: method, scheme: scheme, authority: authority, path: path, headerFields: fields)
    }
}

extension HPACKHeaders {
    /// A response head's block: `:status` first.
    init(http2Response response: HTTPResponse) {
        self.init()
        reserveCapacity(response.headerFields.count + 1)
        add(name: ":status", value: String(response.status.code))
        append(response.headerFields)
    }

    /// A trailers block.
    init(http2Trailers trailers: HTTPFields) {
        self.init()
        append(trailers)
    }

    private mutating func append(_ fields: HTTPFields) {
        for field in fields { add(name: field.name.canonicalName, value: field.value, indexing: HPACKIndexing(field.indexingStrategy)) }
    }
}

extension HPACKIndexing {
    fileprivate init(_ strategy: HTTPField.DynamicTableIndexingStrategy) {
        switch strategy {
        case .avoid: self = .nonIndexable
        case .disallow: self = .neverIndexed
        default: self = .indexable
        }
    }
}

extension HTTPField.DynamicTableIndexingStrategy {
    fileprivate init(_ indexing: HPACKIndexing) {
        switch indexing {
        case .indexable: self = .automatic
        case .nonIndexable: self = .avoid
        case .neverIndexed: self = .disallow
        }
    }
}
