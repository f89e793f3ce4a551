"""A deployment with a real app behind a real agent, for the app tests (tests/e2e/test_apps.py, test_browser.py):
a server with a wildcard app host, an owner and a second user, workspace "dev" with agent "main" serving
tests/e2e/apps/echo_app.py as apps of every sharing level, and ws_page_app.py for the browser."""
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time

from agent import AgentProcess, create_workspace_agent, wait_status
from conftest import API, insecure_context

HERE = os.path.dirname(os.path.abspath(__file__))
WILDCARD = "apps.localhost"


def free_port_pair():
    """A port p with p+1 free too (the echo app's WebSocket server listens on p+1)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket() as second:
                second.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise AssertionError("no free port pair")


class Deployment:
    """Server + owner + a second user + workspace "dev" with agent "main" running apps of every sharing level."""

    def __init__(self, start_server, tmp_path, extra=(), tls=False):
        self.port = free_port_pair()
        self.tls = tls
        listener = "tls" if tls else "http"
        self.access = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        listen = ("--tls-address", f"127.0.0.1:{self.port}", "--http-address", "") if tls else \
            ("--http-address", f"127.0.0.1:{self.port}", "--tls-address", "")
        self.server = start_server(*listen, "--access-url", self.access, "--wildcard-access-url", f"*.{WILDCARD}", *extra)
        self.api = API(self.server, listener)
        self.owner_token = self.api.setup_owner()
        status, body, _ = self.api.call("POST", "/api/v2/users", {"email": "bob@example.com", "username": "bob", "password": "correct horse battery"})
        assert status == 201, body
        self.bob_token = API(self.server, listener).login("bob@example.com", "correct horse battery")
        self.agent_id, agent_token = create_workspace_agent(self.api)
        self.app_port = free_port_pair()
        self.app_log = tmp_path / "app-requests.jsonl"
        self.app = subprocess.Popen([sys.executable, os.path.join(HERE, "apps", "echo_app.py"), str(self.app_port), str(self.app_log)],
                                    stdout=subprocess.PIPE, text=True)
        assert self.app.stdout.readline().strip() == "ready"
        base = f"http://127.0.0.1:{self.app_port}"
        self.page_port = free_port_pair()
        self.page_app = subprocess.Popen([sys.executable, os.path.join(HERE, "apps", "ws_page_app.py"), str(self.page_port)],
                                         stdout=subprocess.PIPE, text=True)
        assert self.page_app.stdout.readline().strip() == "ready"
        page = f"http://127.0.0.1:{self.page_port}"
        apps = [f"code={base},share=owner", f"pub={base},share=public,subdomain", f"auth={base},share=authenticated,subdomain",
                f"mine={base},share=owner,subdomain", f"passthru={base},share=owner,subdomain,cors=passthru", f"ws=http://127.0.0.1:{self.app_port + 1},subdomain",
                f"wspage={page}", f"wssub={page},subdomain"]
        pin = ()
        if tls:
            # The server's own self-signed certificate, pinned as the agent would be told to.
            der = ssl.PEM_cert_to_DER_cert(next((tmp_path / "data" / "tls").glob("*.crt")).read_text())
            pin = ("--tls-fingerprint", hashlib.sha256(der).hexdigest())
        self.agent = AgentProcess(self.access, agent_token, [*pin, *[arg for app in apps for arg in ("--app", app)]])
        wait_status(self.api, self.agent_id, "connected")
        self.wait_for_apps(len(apps))

    def wait_for_apps(self, count):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, view, _ = self.api.call("GET", f"/api/v2/workspaceagents/{self.agent_id}")
            if status == 200 and len(view["apps"]) == count:
                return
            time.sleep(0.1)
        raise AssertionError("the agent's apps never arrived")

    def host(self, label):
        return f"{label}--main--dev--owner.{WILDCARD}:{self.port}"

    def connection(self, timeout=30):
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=insecure_context(["http/1.1"]))
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, host=None, cookies=None, headers=None, body=None):
        connection = self.connection()
        all_headers = {"Host": host or f"127.0.0.1:{self.port}", **(headers or {})}
        if cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, response, data

    def seen_by_app(self):
        with open(self.app_log) as log:
            return [json.loads(line) for line in log]

    def stop(self):
        self.agent.stop()
        for process in (self.app, self.page_app):
            process.kill()
            process.wait()
