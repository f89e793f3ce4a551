import AppProxy
import Foundation
import Testing
import Tunnel

@Suite struct AppErrorPageTests {
    @Test func htmlEscapesEverythingItShows() {
        let page = AppErrorPage.badGateway(cause: "<script>alert(1)</script>", hint: ("Switch to HTTPS", "https://x/\"><b>"), health: .unhealthy)
        #expect(page.status == 502)
        #expect(!page.html.contains("<script>"))
        #expect(page.html.contains("&lt;script&gt;") && page.html.contains("&quot;&gt;&lt;b&gt;"))
        #expect(page.html.contains("unhealthy") && page.html.contains("Retry"))
        #expect(!AppErrorPage.notFound().html.contains("Retry"))
    }

    @Test func jsonForAPIClients() throws {
        let object = try JSONSerialization.jsonObject(with: Data(AppErrorPage.workspaceOffline(agent: "main").json.utf8)) as? [String: String]
        #expect(object?["message"]?.hasPrefix("Workspace offline") == true)
        #expect(AppErrorPage.prefersJSON(accept: "application/json"))
        #expect(!AppErrorPage.prefersJSON(accept: "text/html,application/xhtml+xml,application/json;q=0.9"))
        #expect(!AppErrorPage.prefersJSON(accept: nil))
    }
}
