"""The DERP relay of the real binary, driven by an independent DERP client written here from the wire spec
(Tailscale derp/derp.go) with PyNaCl for the NaCl-box login: Upgrade: DERP and WebSocket, mesh between two
servers, wrong mesh keys, the relay switched off."""
import asyncio
import hashlib
import json
import socket
import struct
import subprocess

import pytest
import websockets
from nacl.public import Box, PrivateKey, PublicKey
from nacl.utils import random as nacl_random

from conftest import API, insecure_context

MAGIC = b"DERP\xf0\x9f\x94\x91"
SERVER_KEY, CLIENT_INFO, SERVER_INFO, SEND_PACKET, RECV_PACKET = 0x01, 0x02, 0x03, 0x04, 0x05
KEEP_ALIVE, PEER_GONE, PING, PONG = 0x06, 0x08, 0x12, 0x13
TIMEOUT = 10


def frame(kind, payload=b""):
    return bytes([kind]) + struct.pack(">I", len(payload)) + payload


class UpgradeStream:
    """`GET /derp` + `Upgrade: DERP` on a raw (TLS) socket; afterwards the socket is the frame stream."""

    async def open(self, host, port, tls):
        self.reader, self.writer = await asyncio.open_connection(host, port, ssl=insecure_context(["http/1.1"]) if tls else None)
        self.writer.write(f"GET /derp HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n\r\n".encode())
        head = (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)).decode()
        lines = head.split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
        return self

    async def read(self, n):
        return await asyncio.wait_for(self.reader.readexactly(n), TIMEOUT)

    async def write(self, data):
        self.writer.write(data)
        await self.writer.drain()

    async def close(self):
        self.writer.close()


class WebSocketStream:
    """A WebSocket with subprotocol `derp`: binary messages carry a byte stream, not frames."""

    async def open(self, url):
        self.ws = await websockets.connect(url, subprotocols=["derp"], ssl=insecure_context(["http/1.1"]) if url.startswith("wss") else None)
        assert self.ws.subprotocol == "derp"
        self.buffer = b""
        return self

    async def read(self, n):
        while len(self.buffer) < n:
            self.buffer += await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    async def write(self, data):
        await self.ws.send(data)

    async def close(self):
        await self.ws.close()


class Client:
    def __init__(self, stream):
        self.stream = stream
        self.key = PrivateKey.generate()
        self.public = bytes(self.key.public_key)

    async def read_frame(self):
        header = await self.stream.read(5)
        return header[0], await self.stream.read(struct.unpack(">I", header[1:])[0])

    async def next_frame(self, *, skip=(KEEP_ALIVE,)):
        while True:
            kind, payload = await self.read_frame()
            if kind not in skip:
                return kind, payload

    async def login(self, mesh_key=None):
        kind, payload = await self.read_frame()
        assert kind == SERVER_KEY and payload[:8] == MAGIC
        self.server_key = payload[8:40]
        info = {"version": 2} if mesh_key is None else {"version": 2, "meshKey": mesh_key}
        nonce = nacl_random(24)
        sealed = Box(self.key, PublicKey(self.server_key)).encrypt(json.dumps(info).encode(), nonce).ciphertext
        await self.stream.write(frame(CLIENT_INFO, self.public + nonce + sealed))
        kind, payload = await self.read_frame()
        assert kind == SERVER_INFO
        server_info = json.loads(Box(self.key, PublicKey(self.server_key)).decrypt(payload[24:], payload[:24]))
        assert server_info.get("version") == 2
        return self

    async def send(self, destination, packet):
        await self.stream.write(frame(SEND_PACKET, destination + packet))


async def upgrade_client(server, listener="tls"):
    host, port = server.address(listener)
    stream = await UpgradeStream().open(host, port, listener == "tls")
    assert stream.status == 101 and stream.headers["upgrade"].lower() == "derp" and stream.headers["derp-version"] == "2"
    client = await Client(stream).login()
    assert stream.headers["derp-public-key"] == client.server_key.hex()
    return client


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl_status(url):
    result = subprocess.run(["curl", "-sk", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", url], capture_output=True, text=True)
    return int(result.stdout)


def test_relay_over_upgrade_and_websocket(start_server):
    server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "")
    assert curl_status(server.url("tls", "/derp/latency-check")) == 200
    assert curl_status(server.url("tls", "/derp/probe")) == 200
    assert curl_status(server.url("tls", "/derp")) == 426

    async def scenario():
        alice = await upgrade_client(server)
        host, port = server.address("tls")
        bob = await Client(await WebSocketStream().open(f"wss://{host}:{port}/derp")).login()
        assert alice.server_key == bob.server_key
        await alice.send(bob.public, b"hello bob")
        assert await bob.next_frame() == (RECV_PACKET, alice.public + b"hello bob")
        await bob.send(alice.public, b"x" * 60_000)  # one frame across many TLS records / one WS message
        assert await alice.next_frame() == (RECV_PACKET, bob.public + b"x" * 60_000)
        await bob.stream.write(frame(PING, b"12345678"))
        assert await bob.next_frame() == (PONG, b"12345678")
        stranger = bytes(PrivateKey.generate().public_key)
        await alice.send(stranger, b"?")
        kind, payload = await alice.next_frame()
        assert kind == PEER_GONE and payload[:32] == stranger and payload[32] == 0x01  # not here
        # A frame the client may not send closes that connection only.
        await alice.stream.write(frame(SERVER_INFO, b"\x00" * 40))
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
            await alice.next_frame()
        # Bob, whom alice had sent to, hears that she is gone, and keeps relaying.
        assert await bob.next_frame() == (PEER_GONE, alice.public + b"\x00")
        await bob.send(bob.public, b"still here")
        assert await bob.next_frame() == (RECV_PACKET, bob.public + b"still here")
        await bob.stream.close()

    asyncio.run(scenario())


def test_derp_map_pins_the_generated_certificate(start_server):
    server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "")
    api = API(server)
    api.setup_owner()
    status, derp_map, _ = api.call("GET", "/api/v2/derp-map")
    assert status == 200
    node = derp_map["Regions"]["999"]["Nodes"][0]
    with socket.create_connection(server.address("tls")) as raw:
        with insecure_context().wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    assert node["CertName"] == "sha256-raw:" + hashlib.sha256(der).hexdigest()
    assert derp_map["Regions"]["999"]["RegionCode"] == "meshgate"


def test_mesh_between_two_servers_and_wrong_key(start_server, tmp_path):
    mesh_key = "ab" * 32
    port_a, port_b = free_port(), free_port()
    common = ["--derp-mesh-key", mesh_key, "--tls-address", ""]
    a = start_server(*common, "--http-address", f"127.0.0.1:{port_a}", "--derp-mesh-peers", f"http://127.0.0.1:{port_b}",
                     "--data-dir", str(tmp_path / "a"), data_dir=False)
    b = start_server(*common, "--http-address", f"127.0.0.1:{port_b}", "--derp-mesh-peers", f"http://127.0.0.1:{port_a}",
                     "--data-dir", str(tmp_path / "b"), data_dir=False)
    assert not any(mesh_key in json.dumps(line) for line in a.log_lines + b.log_lines)

    async def scenario():
        alice = await upgrade_client(a, "http")
        bob = await upgrade_client(b, "http")
        assert alice.server_key != bob.server_key
        # Until B's watch tells A about bob, A answers PeerGone; then packets cross the mesh.
        for _ in range(200):
            await alice.send(bob.public, b"across the mesh")
            try:
                kind, payload = await asyncio.wait_for(bob.next_frame(), 0.05)
            except asyncio.TimeoutError:
                continue
            assert (kind, payload) == (RECV_PACKET, alice.public + b"across the mesh")
            break
        else:
            pytest.fail("the packet never crossed the mesh")
        await bob.send(alice.public, b"and back")
        while True:
            kind, payload = await alice.next_frame()
            if kind == RECV_PACKET:
                assert payload == bob.public + b"and back"
                break
            assert kind == PEER_GONE  # answers to the probes sent before the mesh knew bob

        host, port = a.address("http")
        intruder = await UpgradeStream().open(host, port, False)
        with pytest.raises((AssertionError, asyncio.IncompleteReadError, ConnectionError)):
            await Client(intruder).login(mesh_key="cd" * 32)

    asyncio.run(scenario())


def test_relay_can_be_switched_off(start_server):
    server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "", "--derp-server-enable", "false")

    async def scenario():
        host, port = server.address("tls")
        try:
            stream = await UpgradeStream().open(host, port, True)
        except asyncio.IncompleteReadError:
            return  # refused by closing: no relay behind it either
        assert stream.status == 404
        await stream.close()

    asyncio.run(scenario())
    assert curl_status(server.url("tls", "/derp/probe")) == 404


def test_fast_start_and_byte_at_a_time_head(start_server):
    server = start_server("--http-address", "127.0.0.1:0", "--tls-address", "")
    host, port = server.address("http")

    async def scenario():
        # Derp-Fast-Start: 1 (Tailscale): no 101, ServerKey is the first thing on the wire.
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /derp HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: DERP\r\nDerp-Fast-Start: 1\r\n\r\n".encode())
        first = await asyncio.wait_for(reader.readexactly(13), TIMEOUT)
        assert first[0] == SERVER_KEY and first[5:13] == MAGIC
        writer.close()
        # A head that trickles in one byte per write still upgrades.
        reader, writer = await asyncio.open_connection(host, port)
        for byte in f"GET /derp HTTP/1.1\r\nHost: {host}\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n".encode():
            writer.write(bytes([byte]))
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101")
        writer.close()

    asyncio.run(scenario())
