"""An agent behind NAT (its own network namespace, masqueraded, no inbound route): the gateway still reaches
its app, first through the DERP relay the agent dialed out to, then over a hole-punched direct UDP path."""
import secrets

import pytest

from agent import AgentProcess, HTTPApp, create_workspace_agent, free_port, wait_path, wait_reachable, wait_status
from conftest import API
from nat import NATWorkspace, available

REASON = available()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"NAT tests skipped: {REASON}")


@pytest.fixture
def workspace():
    nat = NATWorkspace()
    yield nat
    nat.close()


def test_gateway_reaches_an_agent_behind_nat(start_server, tmp_path, workspace):
    port = free_port()
    access_url = f"http://{workspace.host_address}:{port}"
    server = start_server("--http-address", f"{workspace.host_address}:{port}", "--tls-address", "", "--access-url", access_url)
    api = API(server, "http")
    api.setup_owner()
    agent_id, token = create_workspace_agent(api)

    content = tmp_path / "site"
    content.mkdir()
    marker = secrets.token_hex(16)
    (content / "index.html").write_text(f"<p>behind NAT {marker}</p>\n")
    app_port = 8000
    app = HTTPApp(content, app_port, prefix=workspace.command())
    agent = AgentProcess(access_url, token, prefix=workspace.command())
    try:
        agent.wait_for_log("coordinator connected")
        _, body = wait_reachable(api, agent_id, app_port, "/index.html")
        assert marker in body["body"]
        wait_status(api, agent_id, "connected")
        # Hole punching works through this NAT: the agent's probes to the gateway's interface address leave the
        # router masqueraded, the gateway learns that address from them and its own probes come back in as replies
        # of the same flow. So the path goes direct, to the router's address, not the workspace's.
        view = wait_path(api, agent_id, "direct")
        assert view["path"]["endpoint"].startswith(workspace.router_wan + ":"), view["path"]
        _, body = wait_reachable(api, agent_id, app_port, "/index.html")
        assert marker in body["body"]
    finally:
        agent.stop()
        app.stop()
