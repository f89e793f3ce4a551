import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@testable import Gateway

@Suite struct LoginPageTests {
    @Test func redirectsStayOnThisOrigin() {
        #expect(LoginPage.safeRedirect("/api/v2/applications/auth-redirect?redirect_uri=https%3A%2F%2Fa") == "/api/v2/applications/auth-redirect?redirect_uri=https%3A%2F%2Fa")
        for bad in [nil, "", "https://evil.example", "//evil.example", "/\\evil.example", "/\\/evil", "javascript:alert(1)", "/ok\r\nSet-Cookie: x", "evil"] {
            #expect(LoginPage.safeRedirect(bad) == "/", "\(bad ?? "nil")")
        }
    }

    @Test func servesTheFormWithoutInjection() async throws {
        try await Deployment().test { api in
            let response = try await api.request(.get, "/login?redirect=/x%3C/script%3E%3Cscript%3Ealert(1)")
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/html; charset=utf-8")
            let html = String(buffer: response.body)
            // The form posts to the same-origin login route; the redirect is an HTML-escaped hidden field.
            #expect(html.contains("action=\"/login\""))
            #expect(!html.contains("</script><script>alert"))
            #expect(html.contains("/x&lt;/script&gt;&lt;script&gt;alert(1)"))
        }
    }
}
