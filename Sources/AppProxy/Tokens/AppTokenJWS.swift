import Crypto
import Foundation

/// `SignedAppToken`s as compact JWS (RFC 7515) with HS512: `base64url(header).base64url(payload).base64url(mac)`,
/// header `{"alg":"HS512","kid":"<key sequence>","typ":"JWT"}`.
///
/// Written on swift-crypto directly rather than jwt-kit: one algorithm, one header shape, and the verifier must
/// refuse everything else anyway (`alg` other than HS512, `none`, unknown `kid`); fifty lines we can read beat a
/// library whose algorithm negotiation we would have to switch off.
public enum AppTokenJWS {
    /// Far above a real token (~600 bytes) and small enough that parsing junk costs little.
    public static let maximumLength = 4096

    static func header(sequence: Int) -> String { #"{"alg":"HS512","kid":"\#(sequence)","typ":"JWT"}"# }

    private struct Header: Decodable {
        let alg: String
        let kid: String
        let typ: String?
    }

    /// The key sequence a token's header names; nil when the text is not an HS512 JWS of ours. The header is read
    /// before the signature is checked (it says which key to check with), so it is parsed with care and bounded.
    public static func keySequence(of text: String) -> Int? { parse(text)?.sequence }

    fileprivate struct Parts {
        let sequence: Int
        let signingInput: Substring.UTF8View
        let payload: Substring
        let signature: Substring
    }

    fileprivate static func parse(_ text: String) -> Parts? {
        guard text.utf8.count <= maximumLength else { return nil }
        let parts = text.split(separator: ".", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Base64URL.decode(parts[0]),
            let header = try? JSONDecoder().decode(Header.self, from: Data(headerBytes)),
            header.alg == "HS512", header.typ == nil || header.typ == "JWT",
            (1...18).contains(header.kid.utf8.count), header.kid.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            let sequence = Int(header.kid)
        else { return nil }
        let signingInput = text[parts[0].startIndex..<parts[1].endIndex].utf8
        return Parts(sequence: sequence, signingInput: signingInput, payload: parts[1], signature: parts[2])
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        // Stable bytes: the same claims always sign to the same token (the test vector relies on it).
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}

extension AppKeyring where Feature == AppTokenSigning {
    /// `token` as a compact JWS, signed with the current key.
    public func sign(_ token: SignedAppToken) throws -> String {
        let header = Base64URL.encode(AppTokenJWS.header(sequence: current.sequence).utf8)
        let payload = Base64URL.encode(try AppTokenJWS.encoder.encode(token))
        let signingInput = "\(header).\(payload)"
        let mac = HMAC<SHA512>.authenticationCode(for: Data(signingInput.utf8), using: SymmetricKey(data: current.secret))
        return "\(signingInput).\(Base64URL.encode(mac))"
    }

    /// The token `text` carries if it is one of ours, signed with a key valid at `now` (checked in constant time),
    /// unexpired, and issued for exactly `request`; otherwise nil. Never throws or traps on any input.
    public func verify(_ text: String, now: Date, for request: AppRequest) -> SignedAppToken? {
        guard let (token, _) = verifiedToken(text, now: now), token.request == request else { return nil }
        return token
    }

    /// `verify` before the request is compared, with the key that signed the token.
    func verifiedToken(_ text: String, now: Date) -> (SignedAppToken, AppCryptoKey)? {
        guard let parts = AppTokenJWS.parse(text), let key = key(sequence: parts.sequence, now: now),
            let signature = Base64URL.decode(parts.signature), signature.count == SHA512.byteCount,
            HMAC<SHA512>.isValidAuthenticationCode(signature, authenticating: Data(parts.signingInput), using: SymmetricKey(data: key.secret)),
            // The payload is parsed only once the signature proved we wrote it.
            let payload = Base64URL.decode(parts.payload),
            let token = try? JSONDecoder().decode(SignedAppToken.self, from: Data(payload)),
            now < token.expiry
        else { return nil }
        return (token, key)
    }
}
