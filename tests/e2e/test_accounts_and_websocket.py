"""Accounts over real TLS, the workspace watch WebSocket (permessage-deflate), dev mode."""
import asyncio
import json
import re
import subprocess

import pytest
import websockets

from conftest import API, BINARY, insecure_context


def watch_url(server, workspace_id, listener="tls"):
    host, port = server.address(listener)
    scheme = "wss" if listener == "tls" else "ws"
    return f"{scheme}://{host}:{port}/api/v2/workspaces/{workspace_id}/watch-ws"


@pytest.mark.parametrize("listener", ["tls", "http"])
def test_websocket_upgrade_with_permessage_deflate(start_server, listener):
    if listener == "tls":
        server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "")
    else:
        server = start_server("--http-address", "127.0.0.1:0")
    api = API(server, listener)
    token = api.setup_owner()
    status, workspace, _ = api.call("POST", "/api/v2/workspaces", {"name": "dev"})
    assert status == 201

    async def scenario():
        ssl_context = insecure_context(["http/1.1"]) if listener == "tls" else None
        async with websockets.connect(
            watch_url(server, workspace["id"], listener), ssl=ssl_context, compression="deflate",
            extra_headers={"Meshgate-Session-Token": token},
        ) as socket:
            assert "permessage-deflate" in socket.response_headers.get("Sec-WebSocket-Extensions", "")
            assert any(type(e).__name__ == "PerMessageDeflate" for e in socket.extensions)
            first = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert first["id"] == workspace["id"] and first["agents"] == []

            status, agent, _ = await asyncio.to_thread(api.call, "POST", f"/api/v2/workspaces/{workspace['id']}/agents", {"name": "main"})
            assert status == 201
            update = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert [a["id"] for a in update["agents"]] == [agent["id"]]

            status, _, _ = await asyncio.to_thread(api.call, "DELETE", f"/api/v2/workspaces/{workspace['id']}")
            assert status == 204
            with pytest.raises(websockets.ConnectionClosedOK) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            assert closed.value.code == 1000 and closed.value.reason == "workspace deleted"

    asyncio.run(scenario())


def test_websocket_refused_without_session(start_server):
    server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "")
    api = API(server)
    api.setup_owner()
    _, workspace, _ = api.call("POST", "/api/v2/workspaces", {"name": "dev"})

    async def scenario():
        with pytest.raises(websockets.InvalidStatusCode) as refused:
            async with websockets.connect(watch_url(server, workspace["id"]), ssl=insecure_context(["http/1.1"])):
                pass
        # Hummingbird's upgrade channel answers every refused upgrade with a bare 400 (see README, known limits).
        assert refused.value.status_code == 400

    asyncio.run(scenario())
    # Without an upgrade the same URL explains itself: 401 JSON without a session, 400 with one.
    status, body, _ = API(server).call("GET", f"/api/v2/workspaces/{workspace['id']}/watch-ws")
    assert status == 401 and body["message"] == "You are not signed in."
    status, body, _ = api.call("GET", f"/api/v2/workspaces/{workspace['id']}/watch-ws")
    assert status == 400 and body["message"] == "This endpoint needs a WebSocket upgrade."


def test_accounts_over_https(start_server):
    server = start_server("--tls-address", "127.0.0.1:0", "--http-address", "", "--login-rate-limit", "3")
    api = API(server)
    api.setup_owner()
    status, body, response = api.call("POST", "/api/v2/users/login", {"email": "owner@example.com", "password": "wrong!"})
    assert status == 401 and body == {"message": "Incorrect email or password.", "detail": ""}
    # setup_owner's login was the first of three allowed this minute.
    status, _, _ = api.call("POST", "/api/v2/users/login", {"email": "nobody@example.com", "password": "wrong!"})
    assert status == 401
    status, body, response = api.call("POST", "/api/v2/users/login", {"email": "owner@example.com", "password": "correct horse battery"})
    assert status == 429 and response.getheader("Retry-After") == "60"
    status, body, _ = api.call("POST", "/api/v2/users/first", None, headers={"Content-Type": "application/json"})
    assert status == 400
    status, token, _ = api.call("POST", "/api/v2/users/me/keys/tokens", {"token_name": "cli"})
    assert status == 201 and re.fullmatch(r"[a-z0-9]{10}-[A-Za-z0-9]{22}", token["key"])
    status, me, _ = api.call("GET", "/api/v2/users/me", token=token["key"])
    assert status == 200 and me["email"] == "owner@example.com"
    # No secret reaches the log.
    logs = json.dumps(server.log_lines)
    assert token["key"] not in logs and api.token not in logs and "correct horse" not in logs


def test_dev_mode_prints_working_credentials(start_server):
    server = start_server("--dev", "--http-address", "127.0.0.1:0", "--tls-address", "127.0.0.1:0", data_dir=False)
    banner = server.wait_for_stdout("Password:")
    email = re.search(r"Email:\s+(\S+)", banner).group(1)
    password = re.search(r"Password:\s+(\S+)", banner).group(1)
    assert "development mode" in banner and re.search(r"TLS:\s+self-signed, SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}", banner)
    api = API(server)
    status, body, _ = api.call("POST", "/api/v2/users/login", {"email": email, "password": password})
    assert status == 201
    status, me, _ = api.call("GET", "/api/v2/users/me", token=body["session_token"])
    assert me["role"] == "owner"


def run_binary(*args, env=None, cwd=None):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=30)


def test_config_precedence_flag_env_file(start_server, tmp_path):
    config = tmp_path / "meshgate.yaml"
    config.write_text("access-url: https://file.example\nhttp-address: 127.0.0.1:0\n")

    def access_url(*flags, env=None):
        server = start_server("--config", str(config), *flags, env=env)
        api = API(server, "http")
        _, info, _ = api.call("GET", "/api/v2/buildinfo")
        server.stop()
        return info["access_url"]

    assert access_url() == "https://file.example"
    assert access_url(env={"MESHGATE_ACCESS_URL": "https://env.example"}) == "https://env.example"
    assert access_url("--access-url", "https://flag.example", env={"MESHGATE_ACCESS_URL": "https://env.example"}) == "https://flag.example"
    # MESHGATE_CONFIG names the file when --config is absent.
    server = start_server(env={"MESHGATE_CONFIG": str(config)})
    assert server.access_url == "https://file.example"


@pytest.mark.parametrize("args,env,expected", [
    (["--http-address", "nope"], {}, 'invalid value "nope" for --http-address (from flag --http-address)'),
    ([], {"MESHGATE_LOG_FORMAT": "xml"}, 'invalid value "xml" for --log-format (from environment variable MESHGATE_LOG_FORMAT): must be one of: text, json'),
    (["--tls-address", "127.0.0.1:0", "--tls-cert-file", "/nonexistent.crt", "--tls-key-file", "/nonexistent.key"], {}, "--tls-cert-file"),
])
def test_invalid_configuration_stops_start_up(tmp_path, args, env, expected):
    result = run_binary("server", "--data-dir", str(tmp_path), *args, env={"PATH": "/usr/bin:/bin", **env})
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_unknown_key_in_config_file_stops_start_up(tmp_path):
    config = tmp_path / "meshgate.yaml"
    config.write_text("acces-url: https://typo.example\n")
    result = run_binary("server", "--config", str(config), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode != 0 and "unknown option 'acces-url'" in result.stderr


def test_server_help_documents_every_option():
    result = run_binary("server", "--help")
    assert result.returncode == 0
    for option in ["access-url", "wildcard-access-url", "http-address", "tls-address", "tls-cert-file", "tls-key-file",
                   "data-dir", "log-format", "log-level", "prometheus-address", "session-duration", "login-rate-limit", "agent-connection-timeout",
                   "disable-path-apps", "dangerous-allow-path-app-sharing", "dev"]:
        assert f"--{option}" in result.stdout
        assert "MESHGATE_" + option.upper().replace("-", "_") in result.stdout.replace("\n", " ").replace("  ", "")
