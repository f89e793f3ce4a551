import Foundation
import Gateway

/// `--dev`'s owner account. The generated password is kept in the dev data directory (mode 0600) so every
/// `make run` prints the same working credentials; a production deployment never writes a password down.
struct DevelopmentAccount: Codable {
    static let email = "admin@meshgate.dev"
    static let username = "admin"

    let email: String
    let password: String

    static func ensure(store: any Store, hasher: PasswordHasher, dataDirectory: String) async throws -> DevelopmentAccount {
        let path = dataDirectory + "/dev-credentials.json"
        if let data = FileManager.default.contents(atPath: path), let saved = try? JSONDecoder().decode(DevelopmentAccount.self, from: data),
            try await store.user(email: saved.email) != nil
        {
            return saved
        }
        let account = DevelopmentAccount(email: email, password: SecretToken.generate().secret)
        let user = User(email: account.email, username: username, role: .owner, passwordHash: try await hasher.hash(account.password), createdAt: Date())
        if try await store.userCount() == 0 {
            try await store.insertFirstUser(user)
        } else if try await store.user(email: account.email) == nil {
            try await store.insertUser(User(id: user.id, email: user.email, username: "dev-admin", role: .owner, passwordHash: user.passwordHash, createdAt: user.createdAt))
        }
        guard FileManager.default.createFile(atPath: path, contents: try JSONEncoder().encode(account), attributes: [.posixPermissions: 0o600]) else {
            throw StartupError("cannot write \(path)")
        }
        return account
    }

    func printBanner(accessURL: URL, fingerprint: String?, workspace: DevelopmentWorkspace?) {
        var base = accessURL.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        var lines = [
            "",
            "meshgate is running in development mode",
            "  URL:       \(accessURL.absoluteString)",
            "  Dashboard: \(base)/workspaces",
        ]
        if let fingerprint { lines.append("  TLS:       self-signed, SHA-256 \(fingerprint)") }
        lines += ["  Email:     \(email)", "  Password:  \(password)"]
        if let workspace {
            lines.append("  Workspace: \(DevelopmentWorkspace.workspaceName) (agent \(DevelopmentWorkspace.agentName) \(workspace.agentID), app \(DemoApp.slug))")
            lines.append("  Demo app:  \(base)\(workspace.appPath)")
            lines.append("  Terminal:  \(base)/terminal/\(workspace.agentID.uuidString.lowercased())")
        }
        lines.append("")
        // Straight to fd 1, unbuffered: this is for the person at the terminal, not the log.
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}
