"""A workspace app for the end-to-end tests, run by /usr/bin/python3 on 127.0.0.1:PORT.

HTTP (http.server, HTTP/1.1 keep-alive): GET /headers → the request headers as JSON (and each request's headers
are appended to the file given as argv[2], so a test can check what ever arrived); GET /bytes?n=N → N bytes of
a fixed pattern, streamed; POST /sha256 → the SHA-256 of the body, read in chunks; GET /cors → a body with the
app's own Access-Control-Allow-Origin; OPTIONS → the app's own answer to a CORS preflight; anything else → a small
page. A WebSocket server (websockets) on PORT+1 echoes every message.
"""
import asyncio
import hashlib
import http.server
import json
import sys
import threading
import urllib.parse

import websockets

PORT = int(sys.argv[1])
LOG = sys.argv[2]
PATTERN = bytes(range(256)) * 256  # 64 KiB


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self):
        with open(LOG, "a") as log:
            log.write(json.dumps({"path": self.path, "headers": [[k, v] for k, v in self.headers.items()]}) + "\n")

    def send(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.record()
        url = urllib.parse.urlparse(self.path)
        if url.path.endswith("/headers"):
            self.send(200, json.dumps(dict(self.headers.items())).encode(), "application/json")
        elif url.path.endswith("/cors"):
            self.send_response(200)
            self.send_header("Access-Control-Allow-Origin", "https://elsewhere.example")
            self.send_header("Content-Length", "8")
            self.end_headers()
            self.wfile.write(b"app cors")
        elif url.path.endswith("/bytes"):
            n = int(urllib.parse.parse_qs(url.query)["n"][0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                chunk = PATTERN[: min(n, len(PATTERN))]
                self.wfile.write(chunk)
                n -= len(chunk)
        else:
            self.send(200, f"<p>echo app at {url.path}</p>".encode(), "text/html")

    def do_OPTIONS(self):
        self.record()
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", "https://elsewhere.example")
        self.send_header("Access-Control-Allow-Methods", "PUT")
        self.send_header("X-Preflight-Answered-By", "app")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        self.record()
        digest = hashlib.sha256()
        remaining = int(self.headers.get("Content-Length", "0"))
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
        self.send(200, json.dumps({"sha256": digest.hexdigest()}).encode(), "application/json")


async def echo(socket, path=None):
    async for message in socket:
        await socket.send(message)


def websocket_server():
    async def main():
        async with websockets.serve(echo, "127.0.0.1", PORT + 1, max_size=1 << 22):
            await asyncio.Future()
    asyncio.run(main())


threading.Thread(target=websocket_server, daemon=True).start()
server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
