"""A one-port app for the browser tests: GET / is a page that opens a WebSocket to ./ws (relative, so it works
under a path app's base path and on a subdomain) and shows each echo; /ws echoes. Run by /usr/bin/python3 with
the port as argv[1]."""
import asyncio
import http
import sys

import websockets

PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>ws page</title></head><body>
<p id="status">connecting</p>
<script>
const url = new URL("ws", location.href); url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(url);
socket.onopen = () => socket.send("hello from " + location.host);
socket.onmessage = (event) => { document.getElementById("status").textContent = "echo: " + event.data; };
socket.onerror = () => { document.getElementById("status").textContent = "error"; };
</script></body></html>"""


async def page(path, headers):
    if path.split("?")[0].endswith("/ws"):
        return None  # the WebSocket handshake goes on
    return http.HTTPStatus.OK, [("Content-Type", "text/html; charset=utf-8")], PAGE


async def echo(socket, path=None):
    async for message in socket:
        await socket.send(message)


async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]), process_request=page):
        print("ready", flush=True)
        await asyncio.Future()

asyncio.run(main())
