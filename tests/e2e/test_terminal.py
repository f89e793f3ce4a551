"""The web terminal's socket against a real server and a real agent process: a shell on the agent's PTY through
gateway → mesh → agent, reattaching with the same reconnect id, the session's end as a normal close with the
reason, and every refusal answered before the upgrade with the HTTP status that says why."""
import asyncio
import json
import re
import uuid

import pytest
import websockets

from apps_deployment import Deployment
from conftest import API


@pytest.fixture
def deployment(start_server, tmp_path):
    d = Deployment(start_server, tmp_path)
    yield d
    d.stop()


def pty_url(d, reconnect, **query):
    params = "&".join(f"{key}={value}" for key, value in {"reconnect": reconnect, **query}.items())
    return f"ws://127.0.0.1:{d.port}/api/v2/workspaceagents/{d.agent_id}/pty?{params}"


async def read_until(socket, pattern, seen=b"", timeout=20):
    """Reads binary messages until `pattern` (a regex on the bytes so far) matches; returns everything read."""
    async def loop():
        nonlocal seen
        while not re.search(pattern, seen):
            message = await socket.recv()
            assert isinstance(message, bytes), "the server sends raw terminal bytes as binary messages"
            seen += message
        return seen
    return await asyncio.wait_for(loop(), timeout)


def connect(d, url, token, **kwargs):
    return websockets.connect(url, extra_headers={"Meshgate-Session-Token": token, **kwargs.pop("headers", {})},
                              open_timeout=15, max_size=1 << 22, **kwargs)


def test_shell_echo_resize_and_reattach(deployment):
    d = deployment
    reconnect = str(uuid.uuid4())

    async def scenario():
        async with connect(d, pty_url(d, reconnect, width=80, height=24), d.owner_token) as socket:
            first = await read_until(socket, rb"\x1bc")
            assert first.startswith(b"\x1bc"), "the first message repaints the screen from a reset"
            await socket.send(json.dumps({"data": "echo pty-$((6*7))\r"}))
            await read_until(socket, rb"pty-42\r\n")
            await socket.send(json.dumps({"width": 100, "height": 30}))
            await socket.send(json.dumps({"data": "stty size\r"}))
            await read_until(socket, rb"30 100\r\n")

        # The same id joins the same shell: the repaint shows the earlier output.
        async with connect(d, pty_url(d, reconnect), d.owner_token, headers={"Origin": d.access}) as socket:
            await read_until(socket, rb"pty-42")
            await socket.send(json.dumps({"data": "exit 7\r"}))
            with pytest.raises(websockets.ConnectionClosedOK) as closed:
                while True:
                    await asyncio.wait_for(socket.recv(), 20)
            assert closed.value.rcvd.code == 1000
            assert closed.value.rcvd.reason == "process exited with code 7"

    asyncio.run(scenario())


def test_command_runs_instead_of_the_shell(deployment):
    d = deployment

    async def scenario():
        async with connect(d, pty_url(d, uuid.uuid4(), command="printf%20cmd-%25s%20ok"), d.owner_token) as socket:
            await read_until(socket, rb"cmd-ok")
            with pytest.raises(websockets.ConnectionClosedOK) as closed:
                while True:
                    await asyncio.wait_for(socket.recv(), 20)
            assert closed.value.rcvd.reason == "process exited with code 0"

    asyncio.run(scenario())


def test_refusals_come_before_the_upgrade(deployment):
    """A refused upgrade is a bare 400 (what hummingbird-websocket sends; a browser sees no status anyway); the same
    request without the upgrade says why, with the status that fits."""
    d = deployment
    reconnect = str(uuid.uuid4())
    path = f"/api/v2/workspaceagents/{d.agent_id}/pty"
    cases = [
        (f"{path}?reconnect={reconnect}", None, {}, 401),
        (f"{path}?reconnect={reconnect}", d.bob_token, {}, 404),  # another user's agent does not exist for bob
        (f"{path}?reconnect={reconnect}", d.owner_token, {"Origin": "http://evil.example"}, 403),
        (f"{path}?reconnect={reconnect}", d.owner_token, {"Origin": f"http://127.0.0.1:{d.port + 1}"}, 403),
        (f"{path}?reconnect=not-a-uuid", d.owner_token, {}, 400),
        (f"{path}?reconnect={reconnect}&width=wide", d.owner_token, {}, 400),
        (f"{path}?reconnect={reconnect}&width=0", d.owner_token, {}, 400),
    ]

    async def upgrade_status(url, token, headers):
        all_headers = {**headers, **({"Meshgate-Session-Token": token} if token else {})}
        with pytest.raises(websockets.InvalidStatusCode) as refused:
            async with websockets.connect(url, extra_headers=all_headers, open_timeout=15):
                pass
        return refused.value.status_code

    for target, token, headers, status in cases:
        assert asyncio.run(upgrade_status(f"ws://127.0.0.1:{d.port}{target}", token, headers)) == 400, target
        got, body, _ = API(d.server, "http").call("GET", target, token=token, headers=headers)
        assert got == status, (target, headers, body)
        assert body["message"], body
    # Allowed, but not a WebSocket: a JSON error that says so.
    got, body, _ = d.api.call("GET", f"{path}?reconnect={reconnect}")
    assert got == 400 and "WebSocket" in body["message"]


def test_a_bad_message_closes_only_that_socket(deployment):
    d = deployment
    reconnect = str(uuid.uuid4())

    async def scenario():
        async with connect(d, pty_url(d, reconnect), d.owner_token) as keeper:
            await keeper.send(json.dumps({"data": "echo alive-$((1+1))\r"}))
            await read_until(keeper, rb"alive-2\r\n")
            async with connect(d, pty_url(d, reconnect), d.owner_token) as bad:
                await bad.send("this is not JSON")
                with pytest.raises(websockets.ConnectionClosedError) as closed:
                    while True:
                        await asyncio.wait_for(bad.recv(), 20)
                assert closed.value.rcvd.code == 1007
            await keeper.send(json.dumps({"data": "echo still-$((2+2))\r"}))
            await read_until(keeper, rb"still-4\r\n")

    asyncio.run(scenario())
