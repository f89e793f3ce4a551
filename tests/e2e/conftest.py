"""End-to-end tests: the real `meshgate` binary driven by real clients (curl, Python ssl, websockets).

Every server runs on ports chosen by the OS (":0"); a test learns them from the JSON "meshgate ready" log line
instead of sleeping, and every process a test starts is stopped at teardown.
"""
import http.client
import json
import os
import queue
import signal
import ssl
import subprocess
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("MESHGATE_BIN", os.path.join(ROOT, ".build", "debug", "meshgate"))
READY_TIMEOUT = 30


class MeshgateProcess:
    """A running `meshgate` command whose JSON log lines are collected from stderr as they arrive. `prefix` runs
    it elsewhere, e.g. `ip netns exec NAME`."""

    def __init__(self, args, cwd=None, env=None, prefix=()):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [*prefix, BINARY, *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.logs = queue.Queue()
        self.log_lines = []
        self.stdout_lines = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._collect_stdout, daemon=True).start()

    def _pump(self):
        for line in self.process.stderr:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"message": line.rstrip("\n"), "raw": True}
            self.log_lines.append(record)
            self.logs.put(record)

    def _collect_stdout(self):
        for line in self.process.stdout:
            self.stdout_lines.append(line.rstrip("\n"))

    def wait_for_log(self, message, timeout=READY_TIMEOUT):
        """The next log record whose message is `message`; fails if the process dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                record = self.logs.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    raise AssertionError(f"meshgate exited with {self.process.returncode}: {self.log_lines[-8:]}")
                continue
            if record.get("message") == message:
                return record
        raise AssertionError(f"no log line {message!r} within {timeout}s; last lines: {self.log_lines[-8:]}")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Server(MeshgateProcess):
    """A running `meshgate server`, ready once it logs its listeners."""

    def __init__(self, args, cwd, env=None):
        super().__init__(["server", "--log-format", "json", *args], cwd=cwd, env=env)
        ready = self.wait_for_log("meshgate ready")
        self.addresses = {k.split(".")[0]: v for k, v in ready.items() if k.endswith(".address")}
        self.access_url = ready.get("access_url")

    def wait_for_stdout(self, needle, timeout=READY_TIMEOUT):
        """All of stdout once it contains `needle` (the banner is printed right after the ready line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = "\n".join(self.stdout_lines)
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not on stdout within {timeout}s: {self.stdout_lines}")

    def address(self, listener):
        host, port = self.addresses[listener].rsplit(":", 1)
        return host, int(port)

    def url(self, listener, path=""):
        host, port = self.address(listener)
        scheme = "https" if listener == "tls" else "http"
        return f"{scheme}://{host}:{port}{path}"


@pytest.fixture
def start_server(tmp_path):
    """start_server(*args, env=None) -> Server, stopped at teardown. Data lives in the test's tmp dir."""
    servers = []

    def start(*args, env=None, data_dir=True):
        extra = ["--data-dir", str(tmp_path / "data")] if data_dir else []
        server = Server([*extra, *args], cwd=str(tmp_path), env=env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def insecure_context(alpn=None):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class API:
    """JSON calls over one HTTPS (or HTTP) connection."""

    def __init__(self, server, listener="tls"):
        host, port = server.address(listener)
        if listener == "tls":
            self.connection = http.client.HTTPSConnection(host, port, context=insecure_context(), timeout=15)
        else:
            self.connection = http.client.HTTPConnection(host, port, timeout=15)
        self.token = None

    def call(self, method, path, body=None, token=None, headers=None):
        all_headers = dict(headers or {})
        token = token or self.token
        if token:
            all_headers["Meshgate-Session-Token"] = token
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=payload, headers=all_headers)
        response = self.connection.getresponse()
        data = response.read()
        parsed = json.loads(data) if data and response.getheader("Content-Type", "").startswith("application/json") else data
        return response.status, parsed, response

    def setup_owner(self, email="owner@example.com", password="correct horse battery"):
        status, _, _ = self.call("POST", "/api/v2/users/first", {"email": email, "username": "owner", "password": password})
        assert status == 201
        return self.login(email, password)

    def login(self, email="owner@example.com", password="correct horse battery"):
        status, body, _ = self.call("POST", "/api/v2/users/login", {"email": email, "password": password})
        assert status == 201, body
        self.token = body["session_token"]
        return self.token
