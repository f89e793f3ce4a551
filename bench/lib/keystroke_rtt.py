"""Keystroke echo round trips through a terminal, one keystroke at a time. Used by bench/terminal.sh.

  keystroke_rtt.py ssh HOST PORT --identity KEY [--user root]
  keystroke_rtt.py meshgate HOST PORT --credentials DATA_DIR/dev-credentials.json --origin ACCESS_URL
  keystroke_rtt.py browser HOST PORT --credentials DATA_DIR/dev-credentials.json --origin ACCESS_URL

Every mode runs COMMAND in a terminal of 80×24 cells: the PTY's line discipline echoes each byte typed (echo on,
canonical mode off so a 4095-byte line buffer never fills) and `cat` swallows the input, so the only bytes that
come back are the echoes. The loop is the same for all: send one printable byte, wait until that byte comes back,
take the time on a monotonic clock, next byte. Successive keystrokes are distinct bytes of ALPHABET, and a
keystroke is only sent once the previous one's echo is in, so a late echo cannot pass for the next one; any other
byte received while timing is counted as stray.

- ssh: `ssh -tt` to the anchor sshd, run on a local pseudo-terminal as a person's terminal would: the time runs
  from writing the byte to the ssh client's PTY to reading its echo back from there.
- meshgate: the web terminal's WebSocket (`/api/v2/workspaceagents/{id}/pty`) of `meshgate server --dev`'s demo
  agent, over TLS, with the session cookie and the access URL's Origin as the dashboard page sends them; the
  byte goes out as the page's text message `{"data": "a"}`, the echo comes back in a binary message.
- browser: the same socket and loop in headless Chromium (Selenium), timed by the page with performance.now().

Prints `result name=MODE_p50 value=… unit=ms` (also _p90, _p99, _max, _mean, _keystrokes, _stray_bytes), and
for meshgate the gateway's path to the agent and the connection's TLS version and WebSocket extensions.
"""

import asyncio
import fcntl
import http.client
import json
import os
import pty
import signal
import ssl
import struct
import sys
import termios
import time
import urllib.parse
import uuid

from bench_cli import run
from results import percentile

ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"
# Upper case: never one of the keystrokes. Sent once the terminal is set up, so typing starts after it.
MARKER = b"KEYSTROKE-BENCH-READY"
COMMAND = f"stty -icanon && echo {MARKER.decode()} && exec cat >/dev/null"
COLUMNS, ROWS = 80, 24
TIMEOUT = 10  # seconds for one echo, and for the terminal to come up


def log(message: str) -> None:
    print(f"keystroke_rtt: {message}", file=sys.stderr, flush=True)


def report(name: str, samples_ms: list, stray: int, open_ms: float) -> None:
    samples = sorted(samples_ms)
    print(f"result name={name}_open value={open_ms:.1f} unit=ms", flush=True)
    for label, value in [("p50", percentile(samples, 0.50)), ("p90", percentile(samples, 0.90)),
                         ("p99", percentile(samples, 0.99)), ("max", samples[-1]), ("mean", sum(samples) / len(samples))]:
        print(f"result name={name}_{label} value={value:.3f} unit=ms", flush=True)
    print(f"result name={name}_keystrokes value={len(samples)} unit=count", flush=True)
    print(f"result name={name}_stray_bytes value={stray} unit=bytes", flush=True)


async def wait_for_marker(chunks: asyncio.Queue) -> None:
    seen = b""
    try:
        async with asyncio.timeout(TIMEOUT):
            while MARKER not in seen:
                seen = seen[-len(MARKER):] + await chunks.get()
    except TimeoutError:
        sys.exit(f"keystroke_rtt: the terminal did not start within {TIMEOUT} s; it printed {seen[-200:]!r}")


async def measure(send, chunks: asyncio.Queue, count: int, warmup: int, opened: int, ready=lambda: None) -> tuple:
    """The loop every mode runs: `await send(byte)` writes one keystroke, `chunks` yields what comes back;
    `ready()` is called once the terminal is up, before the first keystroke. Returns the samples (ms), the stray
    bytes and the time (ms) from `opened` (perf_counter_ns as the client began to connect) to the ready line."""
    await wait_for_marker(chunks)
    open_ms = (time.perf_counter_ns() - opened) / 1e6
    ready()
    samples, stray = [], 0
    for index in range(warmup + count):
        key = ALPHABET[index % len(ALPHABET)]
        start = time.perf_counter_ns()
        await send(bytes([key]))
        try:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    chunk = await chunks.get()
                    if key in chunk:
                        end = time.perf_counter_ns()
                        break
                    if index >= warmup:
                        stray += len(chunk)
        except TimeoutError:
            sys.exit(f"keystroke_rtt: no echo of keystroke {index} ({chr(key)!r}) within {TIMEOUT} s")
        if index >= warmup:
            samples.append((end - start) / 1e6)
            stray += len(chunk) - 1
    return samples, stray, open_ms


def measure_ssh(arguments) -> None:
    argv = ["ssh", "-tt", "-F", "/dev/null", "-e", "none", "-p", str(arguments.port), "-i", arguments.identity,
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"{arguments.user}@{arguments.host}", COMMAND]
    # Forked before the event loop exists; the child gets the PTY as its controlling terminal, like a shell's.
    opened = time.perf_counter_ns()
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))  # ssh passes it on
        os.execvp(argv[0], argv)

    async def drive() -> tuple:
        chunks: asyncio.Queue = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the ssh client exited
                data = b""
            if data:
                chunks.put_nowait(data)
            else:
                asyncio.get_running_loop().remove_reader(fd)

        async def send(key: bytes) -> None:
            os.write(fd, key)

        asyncio.get_running_loop().add_reader(fd, readable)
        return await measure(send, chunks, arguments.count, arguments.warmup, opened)

    try:
        samples, stray, open_ms = asyncio.run(drive())
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.close(fd)
    report("ssh", samples, stray, open_ms)


class Gateway:
    """`meshgate server --dev` at https://HOST:PORT: its demo account's session and its demo agent. Its access URL
    (`--origin`, https://localhost:PORT for --dev) is the origin the terminal socket accepts."""

    def __init__(self, arguments):
        self.base = f"https://{arguments.host}:{arguments.port}"
        self.origin = arguments.origin.rstrip("/")
        # --dev's certificate is self-signed; this is loopback to a server this run started.
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE
        self.connection = http.client.HTTPSConnection(arguments.host, arguments.port, context=self.context, timeout=15)
        account = json.load(open(arguments.credentials))  # never printed
        self.token = self.call("POST", "/api/v2/users/login", {"email": account["email"], "password": account["password"]})["session_token"]
        workspace = next(w for w in self.call("GET", "/api/v2/workspaces") if w["name"] == "demo")
        self.agent_id = workspace["agents"][0]["id"]
        deadline = time.monotonic() + 60
        while (agent := self.agent())["status"] != "connected":
            if time.monotonic() > deadline:
                sys.exit(f"keystroke_rtt: the demo agent did not connect: {agent}")
            time.sleep(0.2)

    def call(self, method: str, path: str, body=None):
        headers = {"Meshgate-Session-Token": self.token} if getattr(self, "token", None) else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status >= 300:
            sys.exit(f"keystroke_rtt: {method} {path} answered {response.status}: {data[:200]!r}")
        return json.loads(data)

    def agent(self) -> dict:
        return self.call("GET", f"/api/v2/workspaceagents/{self.agent_id}")

    def report_path(self, when: str) -> None:
        """The gateway's mesh path to the agent (derp or direct) and its round trip over it, as the API shows them
        (none until the gateway's node first dials the agent, which the terminal socket does)."""
        agent = self.agent()
        print(f"result name=meshgate_path_{when} value={(agent['path'] or {}).get('kind', 'none')} unit=kind", flush=True)
        if agent.get("rtt_ms") is not None:
            print(f"result name=meshgate_mesh_rtt_{when} value={agent['rtt_ms']:.3f} unit=ms", flush=True)

    def terminal_url(self, base: str) -> str:
        # Spaces as %20: the gateway reads a "+" in the query as a plus sign, not as URLSearchParams' space.
        query = urllib.parse.urlencode({"reconnect": str(uuid.uuid4()), "width": COLUMNS, "height": ROWS, "command": COMMAND},
                                       quote_via=urllib.parse.quote)
        return f"wss://{base.split('://', 1)[1]}/api/v2/workspaceagents/{self.agent_id}/pty?{query}"


def measure_meshgate(arguments) -> None:
    import websockets  # Debian's python3-websockets 10.4

    gateway = Gateway(arguments)

    async def drive() -> tuple:
        opened = time.perf_counter_ns()
        headers = {"Cookie": f"meshgate_session_token={gateway.token}", "Origin": gateway.origin}
        # No keepalive pings: a browser sends none, and one in the middle of a keystroke would be timed.
        async with websockets.connect(gateway.terminal_url(gateway.base), ssl=gateway.context, extra_headers=headers,
                                      max_size=None, ping_interval=None) as socket:
            tls = socket.transport.get_extra_info("ssl_object")
            print(f"result name=meshgate_tls value={tls.version()} unit=version", flush=True)
            extensions = ",".join(extension.name for extension in socket.extensions) or "none"
            print(f"result name=meshgate_ws_extensions value={extensions} unit=names", flush=True)
            chunks: asyncio.Queue = asyncio.Queue()

            async def receive() -> None:
                async for message in socket:
                    chunks.put_nowait(message if isinstance(message, bytes) else message.encode())

            async def send(key: bytes) -> None:
                await socket.send(json.dumps({"data": key.decode()}))  # a text message, as the page sends it

            receiver = asyncio.create_task(receive())
            sample = await measure(send, chunks, arguments.count, arguments.warmup, opened, lambda: gateway.report_path("before"))
            gateway.report_path("after")  # the socket still open
            receiver.cancel()
            return sample

    samples, stray, open_ms = asyncio.run(drive())
    report("meshgate", samples, stray, open_ms)


# The same loop in the page: keystrokes, marker and timeout as above; the echo is looked for in the bytes of each
# binary message, timed with performance.now() when the message is handled.
BROWSER_LOOP = """
const [url, alphabet, marker, count, warmup, timeout, done] = arguments;
const socket = new WebSocket(url);
socket.binaryType = "arraybuffer";
const opened = performance.now();
let waiter = null, seen = "", ready = false, openMs = 0;
const fail = (why) => { try { socket.close(); } catch (e) {} done({error: why}); };
socket.onerror = () => fail("socket error");
socket.onclose = (event) => fail(`socket closed: ${event.code} ${event.reason}`);
socket.onmessage = (event) => {
  const at = performance.now();
  const bytes = new Uint8Array(event.data);
  if (!ready) {
    seen = (seen + String.fromCharCode(...bytes)).slice(-4096);
    if (seen.includes(marker)) { ready = true; openMs = at - opened; run(); }
    return;
  }
  if (waiter) waiter(bytes, at);
};
async function run() {
  const samples = []; let stray = 0;
  for (let i = 0; i < warmup + count; i++) {
    const key = alphabet.charCodeAt(i % alphabet.length);
    const echo = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no echo")), timeout * 1000);
      waiter = (bytes, at) => {
        if (bytes.includes(key)) { clearTimeout(timer); waiter = null; resolve([at, bytes.length - 1]); }
        else if (i >= warmup) stray += bytes.length;
      };
    });
    const start = performance.now();
    socket.send(JSON.stringify({data: String.fromCharCode(key)}));
    let at, extra;
    try { [at, extra] = await echo; } catch (e) { fail(`keystroke ${i}: ${e.message}`); return; }
    if (i >= warmup) { samples.push(at - start); stray += extra; }
  }
  socket.onclose = null;
  socket.close();
  done({samples, stray, openMs});
}
"""


def measure_browser(arguments) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    gateway = Gateway(arguments)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for option in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--ignore-certificate-errors"):
        options.add_argument(option)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.set_script_timeout(TIMEOUT + 10 + (arguments.count + arguments.warmup) * 0.2)
        # A page of the access URL's origin holding the session cookie, as the dashboard's terminal page would.
        driver.get(gateway.origin + "/healthz")
        driver.add_cookie({"name": "meshgate_session_token", "value": gateway.token, "path": "/", "secure": True})
        driver.get(gateway.origin + "/healthz")
        outcome = driver.execute_async_script(BROWSER_LOOP, gateway.terminal_url(gateway.origin), ALPHABET.decode(), MARKER.decode(),
                                              arguments.count, arguments.warmup, TIMEOUT)
        version = driver.capabilities.get("browserVersion", "unknown")
    finally:
        driver.quit()
    if "error" in outcome:
        sys.exit(f"keystroke_rtt: browser: {outcome['error']}")
    print(f"result name=browser_version value={version} unit=version", flush=True)
    report("browser", outcome["samples"], outcome["stray"], outcome["openMs"])


def options(parser) -> None:
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--identity", help="ssh: the client's private key")
    parser.add_argument("--user", default="root", help="ssh: the remote user")
    parser.add_argument("--credentials", help="meshgate, browser: --dev's dev-credentials.json")
    parser.add_argument("--origin", help="meshgate, browser: the server's access URL")


if __name__ == "__main__":
    run(__doc__, {"ssh": measure_ssh, "meshgate": measure_meshgate, "browser": measure_browser}, options)
