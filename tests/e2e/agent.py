"""Helpers for tests with real agents: a `meshgate agent` process, a Python http.server app, a workspace with
an agent made through the API, and the gateway's reachability check."""
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

from conftest import BINARY, READY_TIMEOUT


class AgentProcess:
    """A running `meshgate agent` (JSON logs collected from stderr). `prefix` runs it elsewhere, e.g. in a
    network namespace."""

    def __init__(self, url, token, args=(), prefix=()):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
        env["MESHGATE_AGENT_TOKEN"] = token
        self.process = subprocess.Popen(
            [*prefix, BINARY, "agent", "--url", url, "--log-format", "json", *args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.logs = queue.Queue()
        self.log_lines = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stderr:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"message": line.rstrip("\n"), "raw": True}
            self.log_lines.append(record)
            self.logs.put(record)

    def wait_for_log(self, message, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                record = self.logs.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    raise AssertionError(f"agent exited with {self.process.returncode}: {self.log_lines[-8:]}")
                continue
            if record.get("message") == message:
                return record
        raise AssertionError(f"agent: no log line {message!r} within {timeout}s; last lines: {self.log_lines[-8:]}")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class HTTPApp:
    """`python3 -m http.server` serving `directory` on 127.0.0.1 (or inside a namespace with `prefix`)."""

    def __init__(self, directory, port, prefix=()):
        self.port = port
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-u", "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(directory)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        line = self.process.stdout.readline()
        assert "Serving HTTP" in line, line
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()

    def stop(self):
        self.process.kill()
        self.process.wait()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_workspace_agent(api, workspace="dev", agent="main"):
    """A workspace with one agent, for the signed-in owner: (agent id, agent token)."""
    status, body, _ = api.call("POST", "/api/v2/workspaces", {"name": workspace})
    assert status == 201, body
    status, body, _ = api.call("POST", f"/api/v2/workspaces/{body['id']}/agents", {"name": agent})
    assert status == 201, body
    return body["id"], body["token"]


def http_check(api, agent_id, port, path="/"):
    query = urllib.parse.urlencode({"port": port, "path": path})
    return api.call("GET", f"/api/v2/workspaceagents/{agent_id}/http-check?{query}")


def wait_reachable(api, agent_id, port, path="/", timeout=30):
    """Polls the gateway's check until the app answers through the mesh; returns (seconds, body)."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        status, body, _ = http_check(api, agent_id, port, path)
        if status == 200:
            return time.monotonic() - start, body
        last = (status, body)
        time.sleep(0.1)
    raise AssertionError(f"agent {agent_id} port {port} not reachable within {timeout}s: {last}")


def agent_view(api, agent_id):
    status, body, _ = api.call("GET", f"/api/v2/workspaceagents/{agent_id}")
    assert status == 200, body
    return body


def wait_status(api, agent_id, wanted, timeout=20):
    deadline = time.monotonic() + timeout
    view = None
    while time.monotonic() < deadline:
        view = agent_view(api, agent_id)
        if view["status"] == wanted:
            return view
        time.sleep(0.1)
    raise AssertionError(f"agent status {wanted!r} not reached: {view}")
