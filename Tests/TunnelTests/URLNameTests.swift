import MeshgateTesting
import Testing
import Tunnel

/// Names in URLs (users, workspaces, agents, app slugs): the byte-level fast path must decide exactly as the rule
/// reads, character by character.
@Suite struct URLNameTests {
    /// The rule as written: 1…32 ASCII letters, digits and single inner hyphens.
    static func reference(_ name: String) -> Bool {
        !name.isEmpty && name.count <= URLName.maximumLength && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
            && !name.hasPrefix("-") && !name.hasSuffix("-") && !name.contains("--")
    }

    @Test func examples() {
        for valid in ["a", "dev", "Code-Server", "a1-b2-c3", String(repeating: "x", count: 32)] { #expect(URLName.isValid(valid), "\(valid)") }
        for invalid in ["", "-a", "a-", "a--b", "a_b", "a b", "é", "a.b", "@", "[", "`", "{", String(repeating: "x", count: 33)] {
            #expect(!URLName.isValid(invalid), "\(invalid)")
        }
        #expect(URLName.problem(with: "a--b") == "may not start or end with a hyphen or contain two in a row")
        #expect(URLName.problem(with: "naïve") == "may contain only ASCII letters, digits and hyphens")
        #expect(URLName.problem(with: String(repeating: "x", count: 33)) == "must be 1 to 32 characters")
    }

    @Test func agreesWithTheRuleOnRandomNames() {
        var random = SplitMix64(seed: 11)
        let alphabet: [Character] = ["a", "Z", "0", "9", "-", "-", "_", ".", "é", " ", "@", "[", "`", "{", "/"]
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...35, using: &random)
            let name = String((0..<length).map { _ in alphabet.randomElement(using: &random)! })
            #expect(URLName.isValid(name) == Self.reference(name), "\(name)")
            #expect(URLName.isValid(Substring(name)) == Self.reference(name))
        }
    }
}
