"""Workspace apps end to end: a real app (tests/e2e/apps/echo_app.py) behind a real agent process, reached
through the gateway by path, subdomain and port URLs, with the sharing levels, the signed-token cookie and the
cross-domain login, and the app's own record of what reached it (never a meshgate credential)."""
import asyncio
import hashlib
import http.client
import json
import secrets
import subprocess
import urllib.parse

import pytest
import websockets

from apps_deployment import WILDCARD, Deployment


@pytest.fixture
def deployment(start_server, tmp_path):
    d = Deployment(start_server, tmp_path)
    yield d
    d.stop()


def set_cookies(response):
    return [value for name, value in response.getheaders() if name.lower() == "set-cookie"]


def test_path_app_get_post_and_large_bodies(deployment):
    d = deployment
    session = {"meshgate_session_token": d.owner_token}
    status, response, _ = d.request("GET", "/@owner/dev/apps/code?x=1", cookies=session)
    assert status == 307 and response.getheader("Location") == "/@owner/dev/apps/code/?x=1"

    status, response, body = d.request("GET", "/@owner/dev/apps/code/headers", cookies={**session, "theme": "dark"},
                                       headers={"Meshgate-Session-Token": d.owner_token, "X-Forwarded-For": "203.0.113.9"})
    assert status == 200, body
    seen = json.loads(body)
    assert "theme=dark" in seen.get("Cookie", "")
    assert "X-Forwarded-For" in seen and seen["X-Forwarded-For"].startswith("203.0.113.9,")
    assert seen.get("X-Forwarded-Host") == f"127.0.0.1:{d.port}"
    assert any(c.startswith("meshgate_signed_app_token=") for c in set_cookies(response))

    payload = secrets.token_bytes(8 << 20)
    status, _, body = d.request("POST", "/@owner/dev/apps/code/sha256", cookies=session, body=payload)
    assert status == 200 and json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()

    size = 64 << 20
    connection = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
    connection.request("GET", f"/@owner/dev/apps/code/bytes?n={size}", headers={"Cookie": f"meshgate_session_token={d.owner_token}"})
    response = connection.getresponse()
    assert response.status == 200
    digest, total = hashlib.sha256(), 0
    while chunk := response.read(1 << 20):
        digest.update(chunk)
        total += len(chunk)
    pattern = bytes(range(256)) * 256
    assert total == size and digest.hexdigest() == hashlib.sha256(pattern * (size // len(pattern))).hexdigest()

    # No meshgate credential ever reached the app.
    for record in d.seen_by_app():
        for name, value in record["headers"]:
            assert not name.lower().startswith("meshgate-"), record
            if name.lower() == "cookie":
                assert "meshgate_" not in value, record


def test_path_app_is_the_owners(deployment):
    d = deployment
    status, response, _ = d.request("GET", "/@owner/dev/apps/code/")
    assert status == 303 and response.getheader("Location").startswith("/login?redirect=")
    status, _, body = d.request("GET", "/@owner/dev/apps/code/", cookies={"meshgate_session_token": d.bob_token})
    assert status == 403 and b"owner" in body
    status, _, _ = d.request("GET", "/@owner/dev/apps/nope/", cookies={"meshgate_session_token": d.owner_token})
    assert status == 404


def test_subdomain_sharing_levels(deployment):
    d = deployment
    status, _, body = d.request("GET", "/", host=d.host("pub"))
    assert status == 200 and b"echo app" in body
    status, _, _ = d.request("GET", "/", host=d.host("mine"), cookies={"meshgate_session_token": d.bob_token})
    assert status == 403
    status, _, _ = d.request("GET", "/", host=d.host("auth"), cookies={"meshgate_session_token": d.bob_token})
    assert status == 200
    status, _, _ = d.request("GET", "/", host=d.host(str(d.app_port)), cookies={"meshgate_session_token": d.owner_token})
    assert status == 200
    status, _, _ = d.request("GET", "/", host=d.host("8"), cookies={"meshgate_session_token": d.owner_token})
    assert status == 404


def test_cross_domain_login_and_signed_token(deployment):
    d = deployment
    host = d.host("mine")
    # No session on the app host: off to the primary's auth-redirect.
    status, response, _ = d.request("GET", "/headers?a=1", host=host)
    assert status == 303
    location = response.getheader("Location")
    assert location.startswith(f"{d.access}/api/v2/applications/auth-redirect?redirect_uri=")
    # Signed in at the primary, it sends back a one-minute key in the URL.
    status, response, _ = d.request("GET", location.removeprefix(d.access), cookies={"meshgate_session_token": d.owner_token})
    assert status == 303
    back = urllib.parse.urlsplit(response.getheader("Location"))
    assert back.netloc == host and "meshgate_app_key=" in back.query
    # The app host swaps it for its own cookie and strips it from the URL.
    status, response, _ = d.request("GET", f"{back.path}?{back.query}", host=host)
    assert status == 303 and "meshgate_app_key" not in response.getheader("Location")
    sealed = urllib.parse.parse_qs(back.query)["meshgate_app_key"][0]
    logged = [record for record in d.server.log_lines if sealed in json.dumps(record)]
    assert not logged, "the sealed key never reaches the request log"
    assert any("meshgate_app_key=REDACTED" in json.dumps(record) for record in d.server.log_lines), "the request was logged"
    app_session = next(c for c in set_cookies(response) if c.startswith("meshgate_session_token="))
    cookie = app_session.split(";")[0].split("=", 1)[1]
    status, response, body = d.request("GET", "/headers?a=1", host=host, cookies={"meshgate_session_token": cookie})
    assert status == 200, body
    token_cookie = next(c for c in set_cookies(response) if c.startswith("meshgate_signed_app_token_")).split(";")[0]
    name, token = token_cookie.split("=", 1)
    # The signed token alone opens the app for its minute; a broken one is ignored and re-issued.
    status, _, _ = d.request("GET", "/headers", host=host, cookies={name: token})
    assert status == 200
    status, response, _ = d.request("GET", "/headers", host=host, cookies={name: token[:-4] + "AAAA", "meshgate_session_token": cookie})
    assert status == 200 and any(c.startswith(name + "=") for c in set_cookies(response))
    # Not for another app.
    status, _, _ = d.request("GET", "/headers", host=d.host("code"), cookies={name: token})
    assert status in (303, 404)


def test_open_redirects_are_refused(deployment):
    d = deployment
    for target in ["https://evil.example/", f"http://mine--main--dev--owner.{WILDCARD}.evil.example:{d.port}/",
                   f"http://x@evil.example:{d.port}/", "//evil.example/"]:
        path = "/api/v2/applications/auth-redirect?redirect_uri=" + urllib.parse.quote(target, safe="")
        status, _, _ = d.request("GET", path, cookies={"meshgate_session_token": d.owner_token})
        assert status == 400, target


def test_websocket_echo_through_a_subdomain_app(deployment):
    d = deployment

    async def scenario():
        headers = {"Cookie": f"meshgate_session_token={d.owner_token}"}
        # The URL names the app host; the TCP connection goes to the gateway's address.
        async with websockets.connect(f"ws://{d.host('ws')}/echo", host="127.0.0.1", port=d.port, extra_headers=headers,
                                      open_timeout=15, max_size=1 << 22) as socket:
            await socket.send("hello")
            assert await asyncio.wait_for(socket.recv(), 10) == "hello"
            blob = secrets.token_bytes(1 << 20)
            await socket.send(blob)
            assert await asyncio.wait_for(socket.recv(), 20) == blob

    asyncio.run(scenario())


def sign_in_to_app_host(d, host):
    """The cross-domain login, step by step as a browser follows it: the app host's own session cookie."""
    _, response, _ = d.request("GET", "/", host=host)
    _, response, _ = d.request("GET", response.getheader("Location").removeprefix(d.access), cookies={"meshgate_session_token": d.owner_token})
    back = urllib.parse.urlsplit(response.getheader("Location"))
    _, response, _ = d.request("GET", f"{back.path}?{back.query}", host=host)
    return next(c for c in set_cookies(response) if c.startswith("meshgate_session_token=")).split(";")[0].split("=", 1)[1]


def test_cors_is_meshgates_unless_the_app_passes_it_through(deployment):
    """`cors=passthru`: the app's own CORS headers pass and its preflights reach it (without credentials, as
    preflights are); otherwise meshgate's same-user rule stands, and the app's headers are dropped."""
    d = deployment
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "PUT"}
    status, response, _ = d.request("OPTIONS", "/cors", host=d.host("passthru"), headers=preflight)
    assert status == 204 and response.getheader("X-Preflight-Answered-By") == "app"
    assert response.getheader("Access-Control-Allow-Origin") == "https://elsewhere.example"
    # The same preflight to an app with meshgate's rule is not the app's to answer: no credentials, no app.
    status, response, _ = d.request("OPTIONS", "/cors", host=d.host("mine"), headers=preflight)
    assert status == 303 and response.getheader("X-Preflight-Answered-By") is None

    for label, passes in (("passthru", True), ("mine", False)):
        cookie = sign_in_to_app_host(d, d.host(label))
        status, response, body = d.request("GET", "/cors", host=d.host(label), cookies={"meshgate_session_token": cookie},
                                           headers={"Origin": "https://elsewhere.example"})
        assert status == 200 and body == b"app cors", (label, body)
        assert (response.getheader("Access-Control-Allow-Origin") == "https://elsewhere.example") == passes, label
    # Preflights that reached the app carried no meshgate credential either.
    assert any(r["path"] == "/cors" and not any(k.lower() == "cookie" for k, _ in r["headers"]) for r in d.seen_by_app())


def fast_path_served(d):
    """How many requests the server's app fast path has answered (its Prometheus counter)."""
    host, port = d.server.address("prometheus")
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    values = [line.split()[-1] for line in text.splitlines() if line.startswith("meshgate_app_fast_path_requests_total")]
    return int(float(values[0])) if values else 0


def token_cookie(response):
    return next(c for c in set_cookies(response) if c.startswith("meshgate_signed_app_token")).split(";")[0]


def session_and_token(d):
    """The owner's session cookie and the signed app token the full path sets on a first request, as a browser then
    holds them."""
    session = f"meshgate_session_token={d.owner_token}"
    status, response, _ = d.request("GET", "/@owner/dev/apps/code/headers", headers={"Cookie": session})
    assert status == 200
    return session, token_cookie(response)


def test_token_requests_take_the_fast_path(start_server, tmp_path):
    d = Deployment(start_server, tmp_path, extra=("--prometheus-address", "127.0.0.1:0"))
    try:
        session, token = session_and_token(d)
        cookie = f"{token}; theme=dark; {session}"
        before = fast_path_served(d)
        # One keep-alive connection, as a browser fetching a page's assets.
        connection = d.connection()
        for _ in range(5):
            connection.request("GET", "/@owner/dev/apps/code/headers", headers={"Cookie": cookie, "Host": f"127.0.0.1:{d.port}"})
            response = connection.getresponse()
            seen = json.loads(response.read())
            assert response.status == 200 and not set_cookies(response)
            assert seen["Cookie"] == "theme=dark" and seen["X-Forwarded-Proto"] == "http"
            assert seen["X-Forwarded-Host"] == f"127.0.0.1:{d.port}" and seen["X-Forwarded-For"].startswith("127.0.0.1")
        size = 16 << 20
        connection.request("GET", f"/@owner/dev/apps/code/bytes?n={size}", headers={"Cookie": cookie, "Host": f"127.0.0.1:{d.port}"})
        response = connection.getresponse()
        body = response.read()
        pattern = bytes(range(256)) * 256
        assert response.status == 200 and body == pattern * (size // len(pattern))
        connection.close()
        assert fast_path_served(d) - before == 6

        # A subdomain app: meshgate's CORS rule holds on the fast path too.
        host = d.host("mine")
        status, response, _ = d.request("GET", "/cors", host=host, headers={"Meshgate-Session-Token": d.owner_token})
        assert status == 200
        origin = f"http://{d.host('pub')}"
        before = fast_path_served(d)
        status, response, body = d.request("GET", "/cors", host=host, headers={"Cookie": token_cookie(response), "Origin": origin})
        assert status == 200 and body == b"app cors" and fast_path_served(d) - before == 1
        assert response.getheader("Access-Control-Allow-Origin") == origin
        assert response.getheader("Access-Control-Allow-Credentials") == "true"

        for record in d.seen_by_app():
            for name, value in record["headers"]:
                assert not name.lower().startswith("meshgate-") and "meshgate_" not in value, record
    finally:
        d.stop()


def test_apps_over_tls_with_http11_and_http2(start_server, tmp_path):
    d = Deployment(start_server, tmp_path, extra=("--prometheus-address", "127.0.0.1:0"), tls=True)
    try:
        session = f"meshgate_session_token={d.owner_token}"
        status, response, body = d.request("GET", "/@owner/dev/apps/code/headers", headers={"Cookie": session})
        # HTTP/1.1 over TLS is https to the app and to the token cookie, on the full path as on the fast one.
        assert status == 200 and json.loads(body)["X-Forwarded-Proto"] == "https"
        token = next(c for c in set_cookies(response) if c.startswith("meshgate_signed_app_token"))
        assert "Secure" in token
        cookie = f"{token.split(';')[0]}; {session}"
        before = fast_path_served(d)
        status, _, body = d.request("GET", "/@owner/dev/apps/code/headers", headers={"Cookie": cookie})
        assert status == 200 and json.loads(body)["X-Forwarded-Proto"] == "https"
        assert fast_path_served(d) - before == 1
        # HTTP/2: each stream of one connection on the fast path.
        url = f"https://127.0.0.1:{d.port}/@owner/dev/apps/code/bytes?n=100000"
        result = subprocess.run(["curl", "-sk", "--http2", "--max-time", "20", "-H", f"Cookie: {cookie}", "-o", "/dev/null", "-o", "/dev/null",
                                 "-o", "/dev/null", "-w", "%{http_version} %{http_code} %{size_download}\n", url, url, url],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[:3] == ["2 200 100000"] * 3
        assert fast_path_served(d) - before == 4
    finally:
        d.stop()


def test_an_http2_stream_reset_mid_response_ends_only_that_stream(start_server, tmp_path):
    """A browser resets one HTTP/2 stream in the middle of a fast-path download (python-h2, a client independent of
    the server's stack): that stream ends, the connection goes on serving, and a stream that claims `:scheme http`
    over TLS is still https to the app on the full path."""
    import socket

    import h2.config
    import h2.connection
    import h2.events
    from conftest import insecure_context

    d = Deployment(start_server, tmp_path, extra=("--prometheus-address", "127.0.0.1:0"), tls=True)
    try:
        session, token = session_and_token(d)
        cookie = f"{token}; {session}"
        before = fast_path_served(d)
        with insecure_context(alpn=["h2"]).wrap_socket(socket.create_connection(("127.0.0.1", d.port))) as tls:
            assert tls.selected_alpn_protocol() == "h2"
            tls.settimeout(20)
            client = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
            client.initiate_connection()

            def get(stream_id, path, cookie, scheme="https"):
                client.send_headers(stream_id, [(":method", "GET"), (":path", path), (":scheme", scheme),
                                                (":authority", f"127.0.0.1:{d.port}"), ("cookie", cookie)], end_stream=True)
                tls.sendall(client.data_to_send())

            # Reads until `done(received)`; returns what each stream got: status, bytes, ended, reset.
            received = {}

            def read_until(done):
                while not done(received):
                    data = tls.recv(65536)
                    assert data, f"the connection closed: {received}"
                    for event in client.receive_data(data):
                        stream = received.setdefault(getattr(event, "stream_id", 0), {"status": None, "body": b"", "ended": False, "reset": False})
                        if isinstance(event, h2.events.ResponseReceived):
                            stream["status"] = dict(event.headers)[b":status"].decode()
                        elif isinstance(event, h2.events.DataReceived):
                            stream["body"] += event.data
                            client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        elif isinstance(event, h2.events.StreamEnded):
                            stream["ended"] = True
                        elif isinstance(event, h2.events.StreamReset):
                            stream["reset"] = True
                    tls.sendall(client.data_to_send())

            get(1, f"/@owner/dev/apps/code/bytes?n={256 << 20}", cookie)
            read_until(lambda r: len(r.get(1, {}).get("body", b"")) >= 1 << 20)
            client.reset_stream(1)
            tls.sendall(client.data_to_send())
            get(3, "/@owner/dev/apps/code/headers", cookie)
            get(5, "/@owner/dev/apps/code/headers", session, scheme="http")
            read_until(lambda r: r.get(3, {}).get("ended") and r.get(5, {}).get("ended"))
            assert not received[1]["ended"] and len(received[1]["body"]) < 256 << 20
            assert received[3]["status"] == "200" and json.loads(received[3]["body"])["X-Forwarded-Proto"] == "https"
            assert received[5]["status"] == "200" and json.loads(received[5]["body"])["X-Forwarded-Proto"] == "https"
        # The reset download and the stream after it on the fast path; the one with the session alone on the full path.
        assert fast_path_served(d) - before == 2
    finally:
        d.stop()
