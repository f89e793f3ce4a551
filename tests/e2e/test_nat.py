"""The NAT fixture itself: a workspace namespace reaches the host through masquerade, and nothing on the host
side can open a connection into it, even with a route."""
import socket
import subprocess
import sys

import pytest

from nat import NATWorkspace, available

REASON = available()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"NAT tests skipped: {REASON}")

CONNECT = "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); s.sendall(b'hi'); print(s.recv(64).decode())"
LISTEN = "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 7000)); s.listen(); print('ready', flush=True); c,_=s.accept(); c.sendall(b'in')"


@pytest.fixture
def workspace():
    nat = NATWorkspace()
    yield nat
    nat.close()


def test_outbound_is_masqueraded(workspace):
    server = socket.create_server((workspace.host_address, 0))
    port = server.getsockname()[1]
    client = subprocess.Popen(workspace.command(sys.executable, "-c", CONNECT, workspace.host_address, str(port)), stdout=subprocess.PIPE, text=True)
    try:
        server.settimeout(10)
        connection, peer = server.accept()
        assert connection.recv(2) == b"hi"
        # The workspace's own address never shows: its connection arrives from the router.
        assert peer[0] == workspace.router_wan
        connection.sendall(f"seen {peer[0]}".encode())
        assert client.communicate(timeout=10)[0].strip() == f"seen {workspace.router_wan}"
    finally:
        client.kill()
        server.close()


def reaches(address, port):
    """True when a connection from here gets the workspace listener's greeting (b"in"). A failed connect and
    a connection that something else answered (this sandbox's egress may accept anything) both count as no."""
    try:
        with socket.create_connection((address, port), timeout=2) as connection:
            connection.settimeout(2)
            return connection.recv(2) == b"in"
    except OSError:
        return False


def test_no_inbound_connection(workspace):
    listener = subprocess.Popen(workspace.command(sys.executable, "-c", LISTEN), stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        # The listener works from inside the workspace...
        inside = subprocess.run(workspace.command(sys.executable, "-c", "import socket; print(socket.create_connection(('127.0.0.1', 7000), timeout=2).recv(2).decode())"),
                                capture_output=True, text=True, timeout=10)
        assert inside.stdout.strip() == "in", inside.stderr
        listener.kill()
        listener.wait()
        listener = subprocess.Popen(workspace.command(sys.executable, "-c", LISTEN), stdout=subprocess.PIPE, text=True)
        assert listener.stdout.readline().strip() == "ready"
        # ...but not from the host side: no route to it,
        assert not reaches(workspace.workspace_address, 7000)
        # nor with one through the router, whose filter drops new connections inward.
        subprocess.run(["ip", "route", "add", workspace.workspace_subnet, "via", workspace.router_wan], check=True)
        try:
            assert not reaches(workspace.workspace_address, 7000)
        finally:
            subprocess.run(["ip", "route", "del", workspace.workspace_subnet], check=False)
    finally:
        listener.kill()
