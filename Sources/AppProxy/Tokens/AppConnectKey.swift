import Crypto
import Foundation

/// The cross-domain login of subdomain apps. An app host has no session cookie (it lives on the dashboard's host),
/// so it sends the browser to the primary's `/api/v2/applications/auth-redirect?redirect_uri=…`; the primary mints
/// an app credential for the signed-in user, seals it in one of these, and 303s back with it in the query item
/// `meshgate_app_key`. The app host opens it, sets its own HttpOnly cookie and redirects once more to drop the item.
///
/// Sealed with AES-256-GCM under a rotating server key, so the credential is unreadable in browser history, logs
/// and `Referer`, and bound to one app host and one minute: a key lifted from one app's URL opens nowhere else.
public struct AppConnectKey: Sendable, Equatable {
    /// What the app host turns into its cookie: an API key of login type `app_connect`, `{id}-{secret}`.
    public var credential: String
    /// The app host it may be opened on, normalized (lower case, no port, no trailing dot).
    public var host: String
    /// Whole seconds.
    public var expiry: Date

    public static let lifetime: TimeInterval = 60
    public static let queryItemName = "meshgate_app_key"
    /// Far above a real sealed key (~250 characters); anything longer is refused unread.
    public static let maximumLength = 2048
    private static let version: UInt8 = 1

    public init(credential: String, host: String, now: Date) {
        (self.credential, self.host) = (credential, Self.normalizedHost(host))
        expiry = Date(timeIntervalSince1970: now.addingTimeInterval(Self.lifetime).timeIntervalSince1970.rounded(.down))
    }

    private struct Payload: Codable {
        var credential: String
        var host: String
        var exp: Int64
    }

    /// `version (1) ‖ key sequence (u32 BE) ‖ nonce ‖ ciphertext ‖ tag`, base64url. The first five bytes are
    /// authenticated too, so the key sequence cannot be swapped.
    public func seal(with keyring: AppConnectKeyring) throws -> String {
        let seconds = expiry.timeIntervalSince1970
        let payload = Payload(credential: credential, host: host, exp: seconds.isFinite ? Int64(max(min(seconds, 1e15), -1e15)) : 0)
        let header = Self.header(sequence: keyring.current.sequence)
        let box = try AES.GCM.seal(JSONEncoder().encode(payload), using: SymmetricKey(data: keyring.current.secret), authenticating: header)
        guard let combined = box.combined else { throw CryptoKitError.incorrectParameterSize }
        return Base64URL.encode(header + Array(combined))
    }

    /// The credential sealed in `sealed`, if a key of `keys` valid at `now` opens it, it has not expired, and it was
    /// minted for `expectedHost` (the `Host` the request came to, any case, port or trailing dot); otherwise nil.
    /// Never throws or traps on any input.
    public static func open(_ sealed: String, keys: AppConnectKeyring, now: Date, expectedHost: String) -> String? {
        guard sealed.utf8.count <= maximumLength, let bytes = Base64URL.decode(sealed), bytes.count > 5 + 12 + 16,
            bytes[0] == version
        else { return nil }
        let header = Array(bytes[0..<5])
        let sequence = Int(bytes[1]) << 24 | Int(bytes[2]) << 16 | Int(bytes[3]) << 8 | Int(bytes[4])
        guard let key = keys.key(sequence: sequence, now: now),
            let box = try? AES.GCM.SealedBox(combined: bytes[5...]),
            let plaintext = try? AES.GCM.open(box, using: SymmetricKey(data: key.secret), authenticating: header),
            let payload = try? JSONDecoder().decode(Payload.self, from: plaintext),
            now < Date(timeIntervalSince1970: TimeInterval(payload.exp)),
            payload.host == normalizedHost(expectedHost), !payload.host.isEmpty
        else { return nil }
        return payload.credential
    }

    private static func header(sequence: Int) -> [UInt8] {
        let value = UInt32(truncatingIfNeeded: sequence)
        return [version, UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    /// `Code--Main--Dev--Alice.Apps.Example.com.:443` → `code--main--dev--alice.apps.example.com`.
    public static func normalizedHost(_ host: String) -> String {
        var name = Substring(host.lowercased())
        if let colon = name.lastIndex(of: ":"), !name.contains("]") { name = name[..<colon] }
        if name.hasSuffix(".") { name = name.dropLast() }
        return String(name)
    }

    // MARK: The query item

    /// `url` with `name=value` added to its query, before any fragment; both are percent-encoded where needed.
    public static func appendingQueryItem(name: String, value: String, to url: String) -> String {
        let (beforeFragment, fragment) = split(url, at: "#")
        let item = encode(name) + "=" + encode(value)
        let separator = !beforeFragment.contains("?") ? "?" : (beforeFragment.hasSuffix("?") || beforeFragment.hasSuffix("&") ? "" : "&")
        return beforeFragment + separator + item + (fragment.map { "#" + $0 } ?? "")
    }

    /// `target` (a request target `/path?query` or a whole URL) without any query item named `name` (compared
    /// after percent-decoding, as query parsers read it), other items untouched and in order; no `?` when none is left.
    public static func removingQueryItem(_ name: String = queryItemName, from target: String) -> String {
        let (beforeFragment, fragment) = split(target, at: "#")
        let (path, query) = split(beforeFragment, at: "?")
        guard let query else { return target }
        let kept = query.split(separator: "&", omittingEmptySubsequences: false).filter { item in
            let itemName = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
            return (String(itemName).removingPercentEncoding ?? String(itemName)) != name
        }
        let remaining = kept.joined(separator: "&")
        return path + (remaining.isEmpty ? "" : "?" + remaining) + (fragment.map { "#" + $0 } ?? "")
    }

    private static func split(_ text: String, at separator: Character) -> (String, String?) {
        guard let index = text.firstIndex(of: separator) else { return (text, nil) }
        return (String(text[..<index]), String(text[text.index(after: index)...]))
    }

    /// RFC 3986 unreserved characters stay; everything else is percent-encoded.
    private static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }

    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
}
