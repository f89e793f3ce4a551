"""Who may tunnel to whom, checked through the real coordinator socket: a user's client only to agents of its
own workspaces; an agent token never acts as a user; bad input closes only the socket that sent it."""
import asyncio
import json

import pytest
import websockets

from agent import create_workspace_agent
from conftest import API


def coordinate(server, headers):
    host, port = server.address("http")
    return websockets.connect(f"ws://{host}:{port}/api/v2/coordinate", extra_headers=headers, open_timeout=10)


async def request(socket, message):
    await socket.send(json.dumps(message))
    return json.loads(await asyncio.wait_for(socket.recv(), 10))


def test_tunnels_are_authorized(start_server):
    server = start_server("--http-address", "127.0.0.1:0", "--tls-address", "")
    owner = API(server, "http")
    owner.setup_owner()
    agent_id, agent_token = create_workspace_agent(owner)
    status, body, _ = owner.call("POST", "/api/v2/users", {"email": "bob@example.com", "username": "bob", "password": "correct horse battery"})
    assert status == 201, body
    bob = API(server, "http")
    bob.login("bob@example.com", "correct horse battery")

    async def scenario():
        # Bob's client may not tunnel to the owner's agent.
        async with coordinate(server, {"Meshgate-Session-Token": bob.token}) as socket:
            reply = await request(socket, {"v": 1, "type": "add_tunnel", "peer": agent_id})
            assert reply["type"] == "error", reply
        # An agent opens no tunnels, not even to itself.
        async with coordinate(server, {"Meshgate-Agent-Token": agent_token}) as socket:
            reply = await request(socket, {"v": 1, "type": "add_tunnel", "peer": agent_id})
            assert reply["type"] == "error", reply

    asyncio.run(scenario())
    # The agent token is not a user credential.
    for path in ("/api/v2/workspaces", "/api/v2/users/me"):
        status, _, _ = API(server, "http").call("GET", path, headers={"Meshgate-Agent-Token": agent_token})
        assert status == 401, path


def test_bad_input_closes_only_that_socket(start_server):
    server = start_server("--http-address", "127.0.0.1:0", "--tls-address", "")
    owner = API(server, "http")
    owner.setup_owner()
    create_workspace_agent(owner)

    async def scenario():
        headers = {"Meshgate-Session-Token": owner.token}
        async with coordinate(server, headers) as good, coordinate(server, headers) as bad:
            await bad.send("{not json")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(bad.recv(), 10)
            assert closed.value.code == 1008
            # The other socket is untouched: it still gets answers.
            reply = await request(good, {"v": 1, "type": "add_tunnel", "peer": "00000000-0000-0000-0000-000000000000"})
            assert reply["type"] == "error"

    asyncio.run(scenario())
