"""Agents as separate processes: the gateway reaches a workspace app through a mesh stream, and both ends come
back by themselves after the agent or the server restarts."""
import signal
import time

from agent import AgentProcess, agent_view, create_workspace_agent, free_port, wait_reachable, wait_status
from agent import app, processes  # noqa: F401 (fixtures)
from conftest import API


def test_gateway_reaches_app_and_survives_restarts(start_server, app, processes):
    port = free_port()
    args = ("--http-address", f"127.0.0.1:{port}", "--tls-address", "")
    server = start_server(*args)
    api = API(server, "http")
    api.setup_owner()
    agent_id, token = create_workspace_agent(api)
    assert agent_view(api, agent_id)["status"] == "connecting"

    url = f"http://127.0.0.1:{port}"
    app_flag = f"web=http://127.0.0.1:{app.port},name=Web,health=/hello.txt,interval=1s"
    agent = AgentProcess(url, token, ["--app", app_flag])
    processes.append(agent)
    agent.wait_for_log("coordinator connected")

    _, body = wait_reachable(api, agent_id, app.port, "/hello.txt")
    assert app.marker in body["body"]
    view = wait_status(api, agent_id, "connected")
    assert view["version"]
    # The first packets cross the relay; a direct UDP path takes over once probes answer (test_direct_paths.py).
    assert view["path"]["kind"] in ("derp", "direct")

    # Killed without a goodbye, then started again: reachable within 5 s of the new process starting.
    agent.stop(signal.SIGKILL)
    agent = AgentProcess(url, token, ["--app", app_flag])
    processes.append(agent)
    started = time.monotonic()
    elapsed, body = wait_reachable(api, agent_id, app.port, "/hello.txt", timeout=15)
    assert app.marker in body["body"]
    restart = time.monotonic() - started
    print(f"agent restart: reachable again {restart:.2f}s after the new process started")
    assert restart < 5, f"reachable again only after {restart:.1f}s"

    # The server restarts on the same address; the agent reconnects by itself.
    server.stop()
    server = start_server(*args)
    api = API(server, "http")
    api.login()
    agent.wait_for_log("coordinator connected", timeout=30)
    elapsed, body = wait_reachable(api, agent_id, app.port, "/hello.txt", timeout=30)
    print(f"server restart: app reachable {elapsed:.2f}s after the agent reconnected")
    assert app.marker in body["body"]


def test_clean_agent_shutdown_is_seen_as_disconnected(start_server, app, processes):
    server = start_server("--http-address", "127.0.0.1:0", "--tls-address", "")
    api = API(server, "http")
    api.setup_owner()
    agent_id, token = create_workspace_agent(api)
    agent = AgentProcess(server.url("http"), token)
    processes.append(agent)
    wait_status(api, agent_id, "connected")
    assert agent.stop(signal.SIGTERM) == 0
    view = wait_status(api, agent_id, "disconnected")
    assert view["disconnected_at"]


def test_refused_token_fails_fast_with_a_clear_error(start_server, processes):
    server = start_server("--http-address", "127.0.0.1:0", "--tls-address", "")
    agent = AgentProcess(server.url("http"), "aaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbb")
    processes.append(agent)
    assert agent.process.wait(timeout=20) != 0
    messages = " ".join(str(line) for line in agent.log_lines)
    assert "refused" in messages and "--token" in messages


def test_invalid_agent_option_names_it(start_server):
    import subprocess
    from conftest import BINARY
    result = subprocess.run([BINARY, "agent", "--url", "ftp://example.com", "--token", "x"], capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert "--url" in result.stderr and "ftp://example.com" in result.stderr


def test_dev_mode_runs_a_demo_workspace_end_to_end(start_server):
    import os
    import re
    import urllib.parse
    # A fixed TLS port: the access URL, and with it the embedded relay's address in the DERP map, derives from it.
    server = start_server("--dev", "--http-address", "127.0.0.1:0", "--tls-address", f"127.0.0.1:{free_port()}")
    banner = server.wait_for_stdout("Workspace:")
    email = re.search(r"Email:\s+(\S+)", banner).group(1)
    password = re.search(r"Password:\s+(\S+)", banner).group(1)
    agent_pid = int(server.wait_for_log("local agent started")["agent.pid"])

    api = API(server, "tls")
    api.login(email, password)
    status, workspaces, _ = api.call("GET", "/api/v2/workspaces")
    assert status == 200
    demo = next(w for w in workspaces if w["name"] == "demo")
    agent_id = demo["agents"][0]["id"]
    view = wait_status(api, agent_id, "connected")
    deadline = time.monotonic() + 20
    while not view["apps"] and time.monotonic() < deadline:
        time.sleep(0.1)
        view = agent_view(api, agent_id)
    app = view["apps"][0]
    assert app["slug"] == "demo"
    port = int(app["url"].rsplit(":", 1)[1])
    _, body = wait_reachable(api, agent_id, port, "/")
    assert "Hello from your workspace" in body["body"]
    assert 'new WebSocket' in body["body"]

    # And through the gateway as a path app, where the banner says it is.
    app_url = re.search(r"Demo app:\s+(\S+)", banner).group(1)
    path = urllib.parse.urlsplit(app_url).path
    status, page, _ = api.call("GET", path, headers={"Cookie": f"meshgate_session_token={api.token}"})
    assert status == 200 and b"Hello from your workspace" in page

    # The agent is the server's child: it goes when the server goes.
    assert server.stop() == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(agent_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the local agent outlived the server")
