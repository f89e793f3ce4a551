"""The TLS front: ALPN, TLS version floor, redirects, certificate reload, graceful shutdown."""
import hashlib
import json
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import API, insecure_context


def curl(*args):
    result = subprocess.run(["curl", "-sk", "--max-time", "10", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_alpn_h2_and_http11_on_one_port(start_server):
    server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "")
    url = server.url("tls", "/healthz")
    assert curl("--http2", "-w", " %{http_version}", url) == "OK 2"
    assert curl("--http1.1", "-w", " %{http_version}", url) == "OK 1.1"
    # The API and its JSON errors are the same over HTTP/2.
    body = curl("--http2", "-w", " %{http_code}", server.url("tls", "/api/v2/nope"))
    assert body == '{"detail":"","message":"Route not found."} 404'
    for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        with socket.create_connection(server.address("tls")) as raw:
            with insecure_context(offered).wrap_socket(raw) as tls:
                assert tls.selected_alpn_protocol() == chosen


def test_tls_1_2_is_the_minimum(start_server):
    server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "")
    old = insecure_context()
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(server.address("tls")) as raw:
        with pytest.raises(ssl.SSLError):
            old.wrap_socket(raw)
    tls12 = insecure_context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(server.address("tls")) as raw:
        with tls12.wrap_socket(raw) as tls:
            assert tls.version() == "TLSv1.2"


def test_plain_http_redirects_to_access_url_when_tls_is_on(start_server):
    server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--access-url", "https://meshgate.example:8443")
    headers = curl("-D", "-", "-o", "/dev/null", server.url("http", "/api/v2/buildinfo?x=1"))
    assert headers.startswith("HTTP/1.1 307")
    assert "location: https://meshgate.example:8443/api/v2/buildinfo?x=1" in headers.lower()
    assert curl(server.url("http", "/healthz")) == "OK"


def test_plain_http_alone_serves_everything(start_server):
    server = start_server("--http-address", "127.0.0.1:0")
    api = API(server, listener="http")
    api.setup_owner()
    status, me, _ = api.call("GET", "/api/v2/users/me")
    assert status == 200 and me["username"] == "owner"
    # Plain-HTTP access URL: the session cookie cannot be Secure, but stays HttpOnly and SameSite=Lax.
    _, _, response = api.call("POST", "/api/v2/users/login", {"email": "owner@example.com", "password": "correct horse battery"})
    cookie = response.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def make_certificate(directory, name):
    certificate, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )
    return certificate, key


def peer_fingerprint(tls):
    return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def get_on(tls, path="/healthz"):
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\nOK" not in data:
        chunk = tls.recv(4096)
        assert chunk, f"connection closed: {data!r}"
        data += chunk
    return data


def test_sighup_reloads_certificate_without_dropping_connections(start_server, tmp_path):
    first = make_certificate(tmp_path, "first")
    second = make_certificate(tmp_path, "second")
    live_certificate, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    live_certificate.write_bytes(first[0].read_bytes())
    live_key.write_bytes(first[1].read_bytes())
    server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "",
                          "--tls-cert-file", str(live_certificate), "--tls-key-file", str(live_key))

    context = insecure_context(["http/1.1"])
    old = context.wrap_socket(socket.create_connection(server.address("tls")))
    assert get_on(old).startswith(b"HTTP/1.1 200")
    before = peer_fingerprint(old)

    live_certificate.write_bytes(second[0].read_bytes())
    live_key.write_bytes(second[1].read_bytes())
    server.process.send_signal(signal.SIGHUP)
    server.wait_for_log("Reloaded TLS certificate")

    with context.wrap_socket(socket.create_connection(server.address("tls"))) as new:
        assert peer_fingerprint(new) != before
        expected = hashlib.sha256(ssl.PEM_cert_to_DER_cert(second[0].read_text())).hexdigest()
        assert peer_fingerprint(new) == expected
    # The connection opened before the reload is still served.
    assert get_on(old).startswith(b"HTTP/1.1 200")
    old.close()

    # A broken file on reload keeps the working certificate.
    live_certificate.write_text("garbage")
    server.process.send_signal(signal.SIGHUP)
    server.wait_for_log("TLS certificate reload failed; keeping the previous certificate")
    with context.wrap_socket(socket.create_connection(server.address("tls"))) as again:
        assert peer_fingerprint(again) == expected


def test_sigterm_drains_in_flight_request_then_exits_cleanly(start_server):
    server = start_server("--http-address", "127.0.0.1:0")
    body = json.dumps({"email": "owner@example.com", "username": "owner", "password": "correct horse battery"}).encode()
    with socket.create_connection(server.address("http")) as connection:
        connection.sendall(b"POST /api/v2/users/first HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
        time.sleep(0.2)  # let the server start reading this request before shutdown begins
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_log("Shutting down")
        connection.sendall(body[10:])
        response = connection.recv(65536)
        assert response.startswith(b"HTTP/1.1 201"), response
    assert server.process.wait(timeout=20) == 0
    assert any(r.get("message") == "meshgate stopped" for r in server.log_lines)


class H2Frames:
    """The server's HTTP/2 frames, read with hyperframe (python-h2 ends a connection at the first GOAWAY), with
    the PING and SETTINGS acknowledgements a client owes sent back."""

    def __init__(self, tls):
        self.tls, self.buffered, self.frames = tls, b"", []

    def next(self):
        from hyperframe.frame import Frame, PingFrame, SettingsFrame
        while True:
            if len(self.buffered) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffered[:9]))
                if len(self.buffered) >= 9 + length:
                    frame.parse_body(memoryview(self.buffered[9:9 + length]))
                    self.buffered = self.buffered[9 + length:]
                    if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                        self.tls.sendall(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]).serialize())
                    elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                        self.tls.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
                    self.frames.append(frame)
                    return frame
            data = self.tls.recv(65536)
            if not data:
                return None
            self.buffered += data

    def until(self, done):
        while not any(done(f) for f in self.frames):
            assert self.next() is not None, f"the connection closed first: {self.frames}"


def h2_client(validate=True):
    import h2.config
    import h2.connection
    client = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, validate_outbound_headers=validate))
    client.initiate_connection()
    return client


def test_sigterm_drains_an_http2_stream_in_flight_with_goaway(start_server):
    """An HTTP/2 connection in a graceful shutdown: a GOAWAY naming the highest stream id, a PING, and once that
    comes back a GOAWAY naming the last stream (RFC 9113 6.8); the stream in flight is still answered, then the
    connection closes and the server exits with status 0."""
    import hpack
    from hyperframe.frame import GoAwayFrame, HeadersFrame

    server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "")
    body = json.dumps({"email": "owner@example.com", "username": "owner", "password": "correct horse battery"}).encode()
    with insecure_context(alpn=["h2"]).wrap_socket(socket.create_connection(server.address("tls"))) as tls:
        assert tls.selected_alpn_protocol() == "h2"
        tls.settimeout(15)
        client = h2_client()
        client.send_headers(1, [(":method", "POST"), (":path", "/api/v2/users/first"), (":scheme", "https"),
                                (":authority", "x"), ("content-type", "application/json"),
                                ("content-length", str(len(body)))])
        client.send_data(1, body[:10])
        tls.sendall(client.data_to_send())
        time.sleep(0.2)  # let the server start reading this request before shutdown begins
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_log("Shutting down")

        frames = H2Frames(tls)
        frames.until(lambda f: isinstance(f, GoAwayFrame))
        client.send_data(1, body[10:], end_stream=True)
        tls.sendall(client.data_to_send())
        while frames.next() is not None:
            pass
        goaways = [(f.last_stream_id, f.error_code) for f in frames.frames if isinstance(f, GoAwayFrame)]
        assert goaways == [(2**31 - 1, 0), (1, 0)], goaways
        decoder = hpack.Decoder()
        statuses = [dict(decoder.decode(f.data)).get(":status") for f in frames.frames
                    if isinstance(f, HeadersFrame) and f.stream_id == 1]
        assert statuses == ["201"], frames.frames
    assert server.process.wait(timeout=20) == 0


def test_an_http2_request_that_is_not_http_is_refused_at_once(start_server):
    """A HEADERS frame that cannot become an HTTP request (a method that is not a token) is refused at once with
    RST_STREAM, not left open with no answer (the connection then ends, as a malformed frame's does); the
    server goes on serving other connections."""
    from hyperframe.frame import RstStreamFrame

    server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "")
    with insecure_context(alpn=["h2"]).wrap_socket(socket.create_connection(server.address("tls"))) as tls:
        tls.settimeout(10)
        client = h2_client(validate=False)
        client.send_headers(1, [(":method", "G T"), (":path", "/healthz"), (":scheme", "https"), (":authority", "x")],
                            end_stream=True)
        tls.sendall(client.data_to_send())
        frames = H2Frames(tls)
        frames.until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1)
    assert curl("--http2", "-w", " %{http_version}", server.url("tls", "/healthz")) == "OK 2"


def test_metrics_on_prometheus_address(start_server):
    server = start_server("--http-address", "127.0.0.1:0", "--prometheus-address", "127.0.0.1:0")
    assert curl(server.url("http", "/healthz")) == "OK"
    metrics = curl(server.url("prometheus", "/metrics"))
    assert "http_server_request_duration" in metrics or "hb_requests" in metrics, metrics[:500]
