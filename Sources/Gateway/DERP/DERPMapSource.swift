import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import Tunnel

/// Where `GET /api/v2/derp-map` gets its map: the route does not care whether it is fixed or refreshed.
public protocol DERPMapProvider: Sendable {
    var current: DERPMap { get }
}

/// A fixed map is its own provider (tests, and deployments with nothing to refresh).
extension DERPMap: DERPMapProvider {
    public var current: DERPMap { self }
}

/// A DERP map from `--derp-config-path` or `--derp-config-url` that cannot be used. The message names the
/// option, the file or URL, and the problem.
public struct DERPMapSourceError: Error, CustomStringConvertible {
    public let option: String
    public let location: String
    public let reason: String

    public var description: String { "--\(option) \(location): \(reason)" }
}

/// The effective DERP map, in layers: the embedded region (when the relay runs), then the map at
/// `--derp-config-url`, then the file at `--derp-config-path` (the operator's local word wins). Each layer
/// replaces regions with the same id, so a custom region 999 replaces the embedded one, and removes the
/// regions it sets to null; a custom map with `OmitDefaultRegions` leaves the embedded region out.
///
/// `load` reads the file and fetches the URL once, and fails start-up if either is unusable. `run()` (a
/// `Service`) fetches the URL again every `refreshInterval`; a failed refresh keeps the last good map and logs
/// a warning. The file is read only at start-up.
public final class DERPMapSource: DERPMapProvider, Service {
    public static let pathOption = "derp-config-path"
    public static let urlOption = "derp-config-url"

    public struct Configuration: Sendable {
        /// The built-in relay's region (`DERPMap.embedded`), or nil when the relay is disabled.
        public var embedded: DERPMap?
        public var path: String?
        public var url: URL?
        public var refreshInterval: Duration = .seconds(300)
        /// For the whole fetch, body included.
        public var fetchTimeout: TimeAmount = .seconds(10)
        /// Tailscale's public map is about 30 KiB; anything near this is not a DERP map.
        public var maximumSize = 1 << 20

        public init(embedded: DERPMap?, path: String? = nil, url: URL? = nil) { (self.embedded, self.path, self.url) = (embedded, path, url) }
    }

    private let configuration: Configuration
    private let httpClient: HTTPClient
    private let logger: Logger
    /// The file's map, read once at start-up.
    private let file: DERPMap?
    /// Replaced whole by each successful refresh; readers never wait on a fetch.
    private let effective: Mutex<DERPMap>

    private init(configuration: Configuration, httpClient: HTTPClient, logger: Logger, file: DERPMap?, effective: DERPMap) {
        (self.configuration, self.httpClient, self.logger, self.file) = (configuration, httpClient, logger, file)
        self.effective = Mutex(effective)
    }

    /// Reads `--derp-config-path` and fetches `--derp-config-url`; throws `DERPMapSourceError` when either
    /// cannot be read or is not a valid map, or when the merged map is invalid.
    public static func load(_ configuration: Configuration, httpClient: HTTPClient = .shared, logger: Logger) async throws -> DERPMapSource {
        var file: DERPMap?
        if let path = configuration.path {
            file = try await attempt(option: pathOption, location: path) {
                let data: Data
                do {
                    data = try Data(contentsOf: URL(fileURLWithPath: path))
                } catch {
                    throw Problem("cannot read the file (\(error.localizedDescription))")
                }
                return try decode(data)
            }
        }
        var remote: DERPMap?
        if let url = configuration.url {
            remote = try await attempt(option: urlOption, location: loggable(url)) {
                try await fetch(url, configuration: configuration, httpClient: httpClient)
            }
        }
        let effective = try merge(configuration.embedded, remote: remote, file: file, configuration: configuration)
        return DERPMapSource(configuration: configuration, httpClient: httpClient, logger: logger, file: file, effective: effective)
    }

    public var current: DERPMap { effective.withLock { $0 } }

    /// Fetches `--derp-config-url` again. On failure the last good map stays in use and the error is thrown.
    public func refresh() async throws {
        guard let url = configuration.url else { return }
        let remote = try await Self.attempt(option: Self.urlOption, location: Self.loggable(url)) {
            try await Self.fetch(url, configuration: configuration, httpClient: httpClient)
        }
        let merged = try Self.merge(configuration.embedded, remote: remote, file: file, configuration: configuration)
        let previous = effective.withLock { current in
            let previous = current
            current = merged
            return previous
        }
        if previous != merged {
            logger.info("DERP map changed", metadata: ["derp.config_url": "\(Self.loggable(url))", "derp.region_ids": "\(merged.regionIDs)"])
        }
    }

    /// Refreshes every `refreshInterval` until graceful shutdown; without `--derp-config-url` it only waits.
    public func run() async throws {
        guard let url = configuration.url else { return try await gracefulShutdown() }
        do {
            try await cancelWhenGracefulShutdown {
                while true {
                    try await Task.sleep(for: self.configuration.refreshInterval)
                    do {
                        try await self.refresh()
                    } catch {
                        try Task.checkCancellation()
                        self.logger.warning(
                            "DERP map refresh failed; keeping the last good map",
                            metadata: ["derp.config_url": "\(Self.loggable(url))", "error": "\(error)"]
                        )
                    }
                }
            }
        } catch {
            return  // cancelled or shutting down
        }
    }

    // MARK: Loading

    /// Scheme, host, port and path: a private map's URL may carry a token in its query or user info.
    static func loggable(_ url: URL) -> String {
        guard var components = URLComponents(url: url, resolvingAgainstBaseURL: false) else { return "(unprintable URL)" }
        (components.user, components.password, components.query, components.fragment) = (nil, nil, nil, nil)
        return components.string ?? "(unprintable URL)"
    }

    /// A problem with one source, before it is tagged with the option and location.
    struct Problem: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    private static func attempt<T>(option: String, location: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let problem as Problem {
            throw DERPMapSourceError(option: option, location: location, reason: problem.description)
        } catch {
            throw DERPMapSourceError(option: option, location: location, reason: "\(error)")
        }
    }

    private static func fetch(_ url: URL, configuration: Configuration, httpClient: HTTPClient) async throws -> DERPMap {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.headers.add(name: "Accept", value: "application/json")
        let deadline = NIODeadline.now() + configuration.fetchTimeout
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await httpClient.execute(request, deadline: deadline)
            guard response.status == .ok else { throw Problem("answered HTTP \(response.status.code), expected 200") }
            body = try await response.body.collect(upTo: configuration.maximumSize)
        } catch is NIOTooManyBytesError {
            throw Problem("the response is larger than \(configuration.maximumSize) bytes")
        } catch let problem as Problem {
            throw problem
        } catch {
            throw Problem("cannot fetch (\(error))")
        }
        return try decode(Data(body.readableBytesView))
    }

    /// JSON in Tailscale's format that passes `DERPMap.validate()`.
    static func decode(_ data: Data) throws -> DERPMap {
        let map: DERPMap
        do {
            map = try JSONDecoder().decode(DERPMap.self, from: data)
        } catch let error as DecodingError {
            throw Problem("not a DERP map in Tailscale's JSON format: \(error.summary)")
        }
        do {
            try map.validate()
        } catch {
            throw Problem("invalid DERP map: \(error)")
        }
        return map
    }

    /// The layers merged; each is valid alone, so only clashes between them (a node name used in two) can fail.
    private static func merge(_ embedded: DERPMap?, remote: DERPMap?, file: DERPMap?, configuration: Configuration) throws -> DERPMap {
        let custom = [remote, file].compactMap { $0 }
        var merged = custom.contains(where: \.omitDefaultRegions) ? DERPMap() : embedded ?? DERPMap()
        for layer in custom { merged = merged.merging(layer) }
        merged.omitDefaultRegions = false  // resolved above; nodes have no defaults of their own to omit
        guard !merged.regions.isEmpty else { return merged }
        do {
            try merged.validate()
        } catch {
            // Blame the topmost custom layer: it is the one that added the clash.
            let (option, location) = configuration.path.map { (pathOption, $0) } ?? (urlOption, configuration.url.map(loggable) ?? "")
            throw DERPMapSourceError(option: option, location: location, reason: "clashes with the other DERP regions: \(error)")
        }
        return merged
    }
}
