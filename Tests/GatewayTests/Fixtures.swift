import Foundation
import Logging
import NIOCore
import NIOFoundationEssentialsCompat
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore

/// A gateway on a fresh SQLite file with a manual clock and cheap argon2 parameters.
struct Deployment {
    let clock = ManualWallClock()
    let store: SQLiteStore
    var environment: GatewayEnvironment
    let directory: URL

    init(loginRateLimit: Int = 10, sessionLifetime: TimeInterval = 3600) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshgate-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        store = try SQLiteStore(path: directory.appendingPathComponent("meshgate.db").path)
        environment = GatewayEnvironment(
            configuration: GatewayConfiguration(
                accessURL: URL(string: "https://meshgate.test")!, httpAddress: nil, tlsAddress: ListenAddress(host: "127.0.0.1", port: 0),
                dataDirectory: directory.path, sessionLifetime: sessionLifetime, loginRateLimit: loginRateLimit
            ),
            store: store, clock: clock, hasher: try PasswordHasher(cost: .minimal), pubsub: InMemoryPubSub()
        )
    }

    /// Runs `body` against the API router in-process (no sockets).
    func test(_ body: @escaping @Sendable (APIClient) async throws -> Void) async throws {
        let app = Application(router: GatewayRouter.http(environment, requestLogLevel: .trace))
        try await app.test(.router) { client in try await body(APIClient(client: client)) }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Thin JSON helpers over Hummingbird's test client.
struct APIClient: Sendable {
    let client: any TestClientProtocol

    static let owner = ["email": "owner@example.com", "username": "owner", "password": "correct horse battery"]

    @discardableResult
    func request(
        _ method: HTTPRequest.Method, _ path: String, json: Any? = nil, raw: String? = nil, token: String? = nil,
        headers extra: HTTPFields = [:]
    ) async throws -> TestResponse {
        var headers = extra
        if let token { headers[HTTPField.Name("Meshgate-Session-Token")!] = token }
        var body: ByteBuffer?
        if let json { body = ByteBuffer(data: try JSONSerialization.data(withJSONObject: json)) }
        if let raw { body = ByteBuffer(string: raw) }
        if body != nil { headers[.contentType] = "application/json" }
        return try await client.execute(uri: path, method: method, headers: headers, body: body)
    }

    /// Creates the owner and returns a session token for them.
    func signInOwner() async throws -> String {
        try await request(.post, "/api/v2/users/first", json: Self.owner)
        return try await login(Self.owner["email"]!, Self.owner["password"]!)
    }

    func login(_ email: String, _ password: String) async throws -> String {
        let response = try await request(.post, "/api/v2/users/login", json: ["email": email, "password": password])
        guard response.status == .created, let token = try response.object()["session_token"] as? String else {
            throw FixtureError("login failed: \(response.status) \(String(buffer: response.body))")
        }
        return token
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension TestResponse {
    func object() throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
            throw FixtureError("not a JSON object: \(String(buffer: body))")
        }
        return object
    }

    func array() throws -> [[String: Any]] {
        guard let array = try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [[String: Any]] else {
            throw FixtureError("not a JSON array: \(String(buffer: body))")
        }
        return array
    }

    var message: String? { (try? object())?["message"] as? String }
}
