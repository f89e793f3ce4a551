import Foundation
import HTTPTypes
import Hummingbird

/// `GET /login?redirect=/path`: the sign-in form apps send browsers to. It posts to the login API (which sets
/// the session cookie) and then goes to `redirect` — a path on this host only, never another origin.
struct LoginPage {
    func addRoutes(to router: Router<GatewayContext>) {
        router.get("login") { request, _ -> Response in
            let target = Self.safeRedirect(request.uri.queryParameters.get("redirect"))
            var headers: HTTPFields = [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"]
            // The page's one script is inline; nothing else may run or be framed.
            headers[HTTPField.Name("Content-Security-Policy")!] = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: Self.page(redirect: target))))
        }
    }

    /// A local path, or "/" for anything that could leave this origin (`//host`, `/\host`, schemes, controls).
    static func safeRedirect(_ value: String?) -> String {
        guard let value, value.hasPrefix("/"), !value.hasPrefix("//"), !value.hasPrefix("/\\"),
            !value.contains(where: { $0.isNewline || $0 == "\\" || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7f } ?? false })
        else { return "/" }
        return value
    }

    static func page(redirect: String) -> String {
        let target = String(decoding: (try? JSONEncoder().encode(redirect)) ?? Data("\"/\"".utf8), as: UTF8.self)
            .replacingOccurrences(of: "<", with: "\\u003c")
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Sign in · meshgate</title>
            <style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:3rem auto;padding:0 1rem;line-height:1.5}
            label{display:block;margin-top:.75rem}input{width:100%;padding:.4rem;box-sizing:border-box;font-size:1rem}
            button{margin-top:1rem;padding:.5rem 1rem;font-size:1rem}#error{color:#b00020}</style>
            </head><body><main>
            <h1>Sign in to meshgate</h1>
            <form id="login">
            <label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required>
            <label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
            <button type="submit">Sign in</button>
            <p id="error" role="alert"></p>
            </form>
            </main>
            <script>
            const target = \(target);
            document.getElementById("login").addEventListener("submit", async (event) => {
              event.preventDefault();
              const error = document.getElementById("error");
              error.textContent = "";
              const response = await fetch("/api/v2/users/login", {method: "POST", headers: {"Content-Type": "application/json"},
                body: JSON.stringify({email: document.getElementById("email").value, password: document.getElementById("password").value})});
              if (response.ok) { location.assign(target); return; }
              const body = await response.json().catch(() => ({}));
              error.textContent = body.message || ("Sign-in failed (" + response.status + ")");
            });
            </script>
            </body></html>
            """
    }
}
