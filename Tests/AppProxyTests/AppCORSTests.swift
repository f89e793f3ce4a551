import AppProxy
import Testing

@Suite struct AppCORSTests {
    let hostname = AppHostname(pattern: "*.apps.example.com")!

    @Test func sameUsersAppOriginsOnly() {
        #expect(AppCORS.allows(origin: "https://web--main--dev--alice.apps.example.com", user: "alice", hostname: hostname, scheme: "https"))
        #expect(AppCORS.allows(origin: "https://3000--main--dev--Alice.apps.example.com:443", user: "alice", hostname: hostname, scheme: "https"))
        for origin in [
            "https://web--main--dev--bob.apps.example.com", "http://web--main--dev--alice.apps.example.com", "https://evil.example",
            "https://web--main--dev--alice.apps.example.com.evil.example", "null", "", "https://apps.example.com",
            "https://x@web--main--dev--alice.apps.example.com",
        ] {
            #expect(!AppCORS.allows(origin: origin, user: "alice", hostname: hostname, scheme: "https"), "\(origin)")
        }
        #expect(!AppCORS.allows(origin: nil, user: "alice", hostname: hostname, scheme: "https"))
    }
}
