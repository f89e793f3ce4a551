"""Helpers for tests with real agents: a `meshgate agent` process, a Python http.server app, a workspace with
an agent made through the API, and the gateway's reachability check."""
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from conftest import MeshgateProcess


class AgentProcess(MeshgateProcess):
    """A running `meshgate agent` with JSON logs; `prefix` runs it elsewhere (a network namespace)."""

    def __init__(self, url, token, args=(), prefix=()):
        super().__init__(["agent", "--url", url, "--log-format", "json", *args], env={"MESHGATE_AGENT_TOKEN": token}, prefix=prefix)


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


def wait_path(api, agent_id, kind, timeout=20):
    """Polls the agent's view until the gateway's path to it is of `kind` (`direct` or `derp`); returns the view."""
    deadline = time.monotonic() + timeout
    view = None
    while time.monotonic() < deadline:
        view = agent_view(api, agent_id)
        if (view.get("path") or {}).get("kind") == kind:
            return view
        time.sleep(0.1)
    raise AssertionError(f"path {kind!r} not reached: {view}")


@pytest.fixture
def processes():
    """Processes a test starts, stopped in reverse order after it."""
    started = []
    yield started
    for process in reversed(started):
        process.stop()


@pytest.fixture
def app(tmp_path, processes):
    """An HTTPApp serving hello.txt with a random marker (`app.marker`)."""
    content = tmp_path / "site"
    content.mkdir()
    marker = secrets.token_hex(16)
    (content / "hello.txt").write_text(f"hello from the workspace {marker}\n")
    app = HTTPApp(content, free_port())
    processes.append(app)
    app.marker = marker
    return app
