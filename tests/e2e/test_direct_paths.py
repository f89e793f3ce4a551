"""Direct UDP paths between the gateway's mesh node and a real agent process on the same host: the relay carries
the first packets, a direct path takes over (shown with its address and round trip), and
--block-direct-connections (server or agent) keeps everything on the relay, still working."""
import time

import pytest

from agent import AgentProcess, agent_view, create_workspace_agent, free_port, wait_path, wait_reachable
from agent import app, processes  # noqa: F401 (fixtures)
from conftest import API


def start(start_server, processes, server_args=(), agent_args=()):
    port = free_port()
    server = start_server("--http-address", f"127.0.0.1:{port}", "--tls-address", "", *server_args)
    api = API(server, "http")
    api.setup_owner()
    agent_id, token = create_workspace_agent(api)
    agent = AgentProcess(f"http://127.0.0.1:{port}", token, agent_args)
    processes.append(agent)
    agent.wait_for_log("coordinator connected")
    return api, agent_id


def test_agent_goes_direct(start_server, app, processes):
    api, agent_id = start(start_server, processes)
    _, body = wait_reachable(api, agent_id, app.port, "/hello.txt")
    assert app.marker in body["body"]
    view = wait_path(api, agent_id, "direct")
    host, _, port = view["path"]["endpoint"].rpartition(":")
    assert host and host != "127.0.0.1" and int(port) > 0, view["path"]  # an interface address, never loopback
    assert view["rtt_ms"] is not None and 0 < view["rtt_ms"] < 1000
    _, body = wait_reachable(api, agent_id, app.port, "/hello.txt")
    assert app.marker in body["body"]
    # It stays direct: heartbeats keep it alive.
    time.sleep(8)
    assert agent_view(api, agent_id)["path"]["kind"] == "direct"


@pytest.mark.parametrize("side", ["server", "agent"])
def test_block_direct_connections_keeps_derp(start_server, app, processes, side):
    flag = ("--block-direct-connections", "true")
    api, agent_id = start(start_server, processes, **{f"{side}_args": flag})
    _, body = wait_reachable(api, agent_id, app.port, "/hello.txt")
    assert app.marker in body["body"]
    time.sleep(5)  # several probe rounds' worth
    assert agent_view(api, agent_id)["path"] == {"kind": "derp", "region": 999}
    _, body = wait_reachable(api, agent_id, app.port, "/hello.txt")
    assert app.marker in body["body"]
