import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import ServiceLifecycle

/// `--dev`'s demo web app, on 127.0.0.1 at a port the OS picks, reached only through the local agent: a page,
/// a health check and a WebSocket echo, so a fresh `make run` shows a real workspace app end to end.
enum DemoApp {
    static let slug = "demo"

    /// The app as a service; `onRunning` learns its port once it listens.
    static func service(logger: Logger, onRunning: @escaping @Sendable (Int) async -> Void) -> some Service {
        let router = Router()
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: page)))
        }
        router.get("/healthz") { _, _ in "ok" }
        let webSocket = Router(context: BasicWebSocketRequestContext.self)
        webSocket.ws("/ws") { inbound, outbound, _ in
            for try await message in inbound.messages(maxSize: 1 << 20) {
                switch message {
                case .text(let text): try await outbound.write(.text(text))
                case .binary(let bytes): try await outbound.write(.binary(bytes))
                }
            }
        }
        return Application(
            router: router,
            server: .http1WebSocketUpgrade(webSocketRouter: webSocket),
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0), serverName: nil),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
            logger: logger
        )
    }

    /// Plain HTML and a few lines of script: the page proves the WebSocket round trip by itself.
    static let page = """
        <!doctype html>
        <html lang="en">
        <head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>meshgate demo app</title>
        <style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
        code{background:#eee;padding:0 .2em}#log{white-space:pre-wrap;background:#f6f6f6;padding:.5rem;min-height:3rem}</style>
        </head>
        <body>
        <h1>Hello from your workspace</h1>
        <p>This page is served by a demo app on <code>127.0.0.1</code> inside the workspace, reached through the
        meshgate agent over the mesh.</p>
        <p>WebSocket echo: <span id="status" role="status">connecting…</span></p>
        <form id="form"><label for="message">Message</label> <input id="message" value="hello"> <button>Send</button></form>
        <div id="log" aria-live="polite"></div>
        <script>
        const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
        const url = new URL("ws", location.href); url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
        const socket = new WebSocket(url);
        socket.onopen = () => { document.getElementById("status").textContent = "connected"; socket.send("ping"); };
        socket.onclose = () => { document.getElementById("status").textContent = "closed"; };
        socket.onmessage = (event) => log("echo: " + event.data);
        document.getElementById("form").onsubmit = (event) => {
          event.preventDefault(); socket.send(document.getElementById("message").value);
        };
        </script>
        </body>
        </html>
        """
}
