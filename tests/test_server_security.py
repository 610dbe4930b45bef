"""The sidecar's security table: every way in without the right key or with a bad request."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from _local_client import LocalClient
from starlette.testclient import TestClient, WebSocketDenialResponse

import novelkit as nk
from novelkit.server import create_app, create_key
from novelkit.server.auth import KEYS_FILE
from novelkit.server.limits import RedactSecrets
from novelkit.server.routes import ENDPOINTS

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
SECRET_FILE_TEXT = "TOP-SECRET-OUTSIDE-THE-PROJECT"


class Keys:
    def __init__(self, root: Path) -> None:
        self.write = create_key(root, "write")
        self.read = create_key(root, "read")
        self.foreign = create_key(root, "write", project="other")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Keys, Path]]:
    root = tmp_path / "root"
    project = nk.new_project(root / "novel", premise=PREMISE, chapters=3, words_per_chapter=300)
    project.start().wait(60)
    project.export("md")
    project.close()
    nk.new_project(root / "other", premise=PREMISE, chapters=3, words_per_chapter=300).close()
    (tmp_path / "secret.txt").write_text(SECRET_FILE_TEXT)
    (root / "secret.txt").write_text(SECRET_FILE_TEXT)
    keys = Keys(root)
    with LocalClient(
        create_app(root, rate_limit=None, max_body=1024), raise_server_exceptions=False
    ) as client:
        yield client, keys, root


def _concrete(path: str) -> str:
    return path.replace("{id}", "novel").replace("{stage}", "premise").replace("{format}", "md")


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    if method == "POST":
        body = {"formats": ["md"]} if path.endswith("/export") else {}
        return client.post(path, json=body, headers=headers)
    return client.get(path, headers=headers)


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda ep: f"{ep.method} {ep.path}")
def test_missing_and_bad_keys_get_the_same_401(
    served: tuple[TestClient, Keys, Path], ep: Any
) -> None:
    client, keys, _ = served
    path = _concrete(ep.path)
    answers = [
        _call(client, ep.method, path, {}),
        _call(client, ep.method, path, {"Authorization": "Bearer nk_wrong"}),
        _call(client, ep.method, path, {"X-API-Key": keys.write + "x"}),
        _call(client, ep.method, path, {"Authorization": "Basic " + keys.write}),
        _call(client, ep.method, path, {"Authorization": "Bearer " + keys.write[:-1]}),
    ]
    for response in answers:
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.content == answers[0].content  # nothing tells a wrong key from none


@pytest.mark.parametrize(
    "ep", [e for e in ENDPOINTS if e.write], ids=lambda ep: f"{ep.method} {ep.path}"
)
def test_read_key_on_write_route_is_403(served: tuple[TestClient, Keys, Path], ep: Any) -> None:
    client, keys, _ = served
    response = _call(client, ep.method, _concrete(ep.path), {"X-API-Key": keys.read})
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "ep", [e for e in ENDPOINTS if e.per_project], ids=lambda ep: f"{ep.method} {ep.path}"
)
def test_key_for_another_project_is_404(served: tuple[TestClient, Keys, Path], ep: Any) -> None:
    client, keys, _ = served
    response = _call(client, ep.method, _concrete(ep.path), {"X-API-Key": keys.foreign})
    unknown = _call(
        client,
        ep.method,
        _concrete(ep.path).replace("/novel", "/nosuch"),
        {"X-API-Key": keys.write},
    )
    assert response.status_code == unknown.status_code == 404
    assert (
        response.json()["error"]["code"] == unknown.json()["error"]["code"] == "project_not_found"
    )


@pytest.mark.parametrize("param", ["key", "api_key", "token", "API_KEY", "access_token"])
def test_key_in_query_string_is_refused(served: tuple[TestClient, Keys, Path], param: str) -> None:
    client, keys, _ = served
    response = client.get(f"/api/v2/projects?{param}={keys.write}")
    assert response.status_code == 401
    assert "never accepted in a URL" in response.json()["error"]["message"]
    with_header = client.get(
        f"/api/v2/projects?{param}={keys.write}", headers={"X-API-Key": keys.write}
    )
    assert with_header.status_code == 401  # even alongside a good header: the URL leaked it
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(f"/api/v2/projects/novel/ws?{param}={keys.write}"):
            pass
    assert denied.value.status_code == 401


def test_keys_are_stored_only_hashed(served: tuple[TestClient, Keys, Path]) -> None:
    _, keys, root = served
    stored = (root / KEYS_FILE).read_text()
    for key in (keys.write, keys.read, keys.foreign):
        assert key not in stored and key[3:20] not in stored
    assert json.loads(stored)["keys"][0]["hash"]
    assert (root / KEYS_FILE).stat().st_mode & 0o077 == 0


def test_keys_file_is_never_listed_or_served(served: tuple[TestClient, Keys, Path]) -> None:
    client, keys, _ = served
    h = {"X-API-Key": keys.write}
    assert [p["id"] for p in client.get("/api/v2/projects", headers=h).json()["projects"]] == [
        "novel",
        "other",
    ]
    for path in (
        "/api/v2/projects/.novelkit-keys.json",
        "/static/../.novelkit-keys.json",
        "/static/%2e%2e/%2e%2e/.novelkit-keys.json",
        "/docs/static/..%2f..%2f.novelkit-keys.json",
        "/static/../../root/.novelkit-keys.json",
        "/.novelkit-keys.json",
    ):
        status, _, body = raw_get(client.app, path, h)
        assert status in (404, 422) and b"hash" not in body


# -- WebSocket handshake -------------------------------------------------------------------------


def _denied(client: TestClient, path: str, **kw: Any) -> int:
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(path, **kw):
            pass
    body = denied.value.json()
    assert set(body["error"]) >= {"code", "message"}
    return denied.value.status_code


def test_ws_handshake_rejections(served: tuple[TestClient, Keys, Path]) -> None:
    client, keys, _ = served
    path = "/api/v2/projects/novel/ws"
    assert _denied(client, path) == 401
    assert _denied(client, path, subprotocols=["novelkit.v1", "novelkit.key.nk_wrong"]) == 401
    assert _denied(client, path + "?ticket=t_forged") == 401
    assert (
        _denied(client, path, subprotocols=["novelkit.v1", "novelkit.key." + keys.foreign]) == 404
    )
    assert (
        _denied(
            client,
            "/api/v2/projects/nosuch/ws",
            subprotocols=["novelkit.v1", "novelkit.key." + keys.read],
        )
        == 404
    )
    assert (
        _denied(
            client, path + "?since=-3", subprotocols=["novelkit.v1", "novelkit.key." + keys.read]
        )
        == 422
    )
    good = ["novelkit.v1", "novelkit.key." + keys.read]
    assert (
        _denied(client, path, subprotocols=good, headers={"Origin": "https://evil.example"}) == 403
    )
    assert _denied(client, path, subprotocols=good, headers={"Origin": "null"}) == 403
    with client.websocket_connect(
        path, subprotocols=good, headers={"Origin": "http://127.0.0.1"}
    ) as ws:
        assert ws.receive_json()["type"] == "status_update"
    with client.websocket_connect(
        path, headers={"X-API-Key": keys.read}
    ) as ws:  # non-browser client
        assert ws.receive_json()["type"] == "status_update"


def test_ws_origin_allowlist(tmp_path: Path) -> None:
    nk.new_project(tmp_path / "novel", premise=PREMISE, chapters=3, words_per_chapter=300).close()
    key = create_key(tmp_path, "read")
    app = create_app(tmp_path, allowed_origins=["https://hub.example.org"])
    with LocalClient(app) as client:
        sub = ["novelkit.v1", "novelkit.key." + key]
        with client.websocket_connect(
            "/api/v2/projects/novel/ws",
            subprotocols=sub,
            headers={"Origin": "https://hub.example.org"},
        ) as ws:
            assert ws.receive_json()["type"] == "status_update"
        assert (
            _denied(
                client,
                "/api/v2/projects/novel/ws",
                subprotocols=sub,
                headers={"Origin": "https://hub.example.org.evil.example"},
            )
            == 403
        )


# -- path traversal ------------------------------------------------------------------------------


TRAVERSALS = [
    "..",
    "../../secret.txt",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "..%2f..%2fsecret.txt",
    "%2e%2e",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "..\\..\\secret.txt",
    "..%5c..%5csecret.txt",
    "md%00",
    "%00",
    "md%2f..%2f..%2fnovel.toml",
    "....//secret.txt",
    "md/../../secret.txt",
    "%252e%252e%252f",
    "novel.md",
    "C:%5cWindows",
    "~",
    "*",
]


def raw_get(app: Any, raw_path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """GET exactly ``raw_path`` (HTTP clients would normalise the dot segments away)."""
    import anyio

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "root_path": "",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1"),
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


@pytest.mark.parametrize("fmt", TRAVERSALS)
@pytest.mark.parametrize("suffix", ["", "/status"])
def test_path_traversal_in_format_serves_nothing(
    served: tuple[TestClient, Keys, Path], fmt: str, suffix: str
) -> None:
    client, keys, _ = served
    status, headers, body = raw_get(
        client.app, f"/api/v2/projects/novel/export/{fmt}{suffix}", {"X-API-Key": keys.write}
    )
    assert status in (404, 422), (fmt, status)
    assert SECRET_FILE_TEXT.encode() not in body
    assert b"premise" not in body  # not novel.toml either
    assert headers["content-type"].startswith("application/json")
    assert set(json.loads(body)["error"]) >= {"code", "message"}


def test_a_recorded_export_path_outside_the_project_is_not_served(
    served: tuple[TestClient, Keys, Path],
) -> None:
    client, keys, root = served
    project = nk.open_project(root / "novel")
    project.export("txt", path=root.parent / "secret-export.txt")  # a path outside exports/
    project.close()
    response = client.get("/api/v2/projects/novel/export/txt", headers={"X-API-Key": keys.write})
    assert response.status_code == 404
    assert (
        client.get(
            "/api/v2/projects/novel/export/txt/status", headers={"X-API-Key": keys.write}
        ).json()["exported"]
        is False
    )


@pytest.mark.parametrize(
    "project_id", ["..", ".novelkit-keys.json", "%2e%2e", ".hidden", "a%00b", "secret.txt"]
)
def test_bad_project_ids_are_404(served: tuple[TestClient, Keys, Path], project_id: str) -> None:
    client, keys, _ = served
    status, _, body = raw_get(
        client.app, f"/api/v2/projects/{project_id}/generate/status", {"X-API-Key": keys.write}
    )
    assert status == 404
    assert SECRET_FILE_TEXT.encode() not in body


# -- bodies --------------------------------------------------------------------------------------


def test_body_limits_types_and_json(served: tuple[TestClient, Keys, Path]) -> None:
    client, keys, _ = served
    h = {"X-API-Key": keys.write}
    path = "/api/v2/projects/novel/generate/pause"
    big = client.post(
        path, content=b"{" + b" " * 4096 + b"}", headers={**h, "Content-Type": "application/json"}
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 512

    streamed = client.post(
        path, content=chunks(), headers={**h, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    wrong_type = client.post(
        path, content=b'{"now": true}', headers={**h, "Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    form = client.post(path, data={"now": "true"}, headers=h)
    assert form.status_code == 415
    bad_json = client.post(
        path, content=b'{"now": tru', headers={**h, "Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "bad_json"
    not_object = client.post(path, json=[1, 2], headers=h)
    assert not_object.status_code == 422
    wrong_field = client.post(path, json={"now": "yes"}, headers=h)
    assert wrong_field.status_code == 422 and "now" in wrong_field.json()["error"]["message"]
    extra = client.post(path, json={"now": False, "sudo": True}, headers=h)
    assert extra.status_code == 422
    chapters = client.post(
        "/api/v2/projects/novel/generate/stages/draft", json={"chapters": ["1"]}, headers=h
    )
    assert chapters.status_code == 422


def test_unknown_routes_and_methods_answer_json(served: tuple[TestClient, Keys, Path]) -> None:
    client, keys, _ = served
    missing = client.get("/api/v2/nothing", headers={"X-API-Key": keys.write})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.delete("/api/v2/projects", headers={"X-API-Key": keys.write})
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def test_forced_exception_is_a_bare_500(
    served: tuple[TestClient, Keys, Path], caplog: pytest.LogCaptureFixture
) -> None:
    client, keys, _ = served
    sidecar = client.app.state.sidecar  # type: ignore[attr-defined]
    project = sidecar.projects.get("novel")
    secret = f"PROMPT: write chapter 3 ... key={keys.write}"

    def explode() -> Any:
        raise RuntimeError(secret)

    project.status = explode
    with caplog.at_level(logging.ERROR, logger="novelkit.server"):
        response = client.get(
            "/api/v2/projects/novel/generate/status", headers={"X-API-Key": keys.write}
        )
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "internal server error; the server log has details",
        }
    }
    assert secret not in response.text and "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    del project.status


def test_cors_is_off_by_default(served: tuple[TestClient, Keys, Path]) -> None:
    client, keys, _ = served
    preflight = client.options(
        "/api/v2/projects",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = client.get(
        "/api/v2/projects", headers={"Origin": "https://evil.example", "X-API-Key": keys.read}
    )
    assert "access-control-allow-origin" not in simple.headers


def test_cors_allowlist(tmp_path: Path) -> None:
    key = create_key(tmp_path, "read")
    app = create_app(tmp_path, cors_origins=["https://app.example.org"])
    with LocalClient(app) as client:
        ok = client.get(
            "/api/v2/projects", headers={"Origin": "https://app.example.org", "X-API-Key": key}
        )
        assert ok.headers["access-control-allow-origin"] == "https://app.example.org"
        other = client.get(
            "/api/v2/projects", headers={"Origin": "https://evil.example", "X-API-Key": key}
        )
        assert "access-control-allow-origin" not in other.headers


def test_log_redaction_hides_tickets_and_keys() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" %s',
        ("127.0.0.1:5000", "/api/v2/projects/a/ws?since=3&ticket=t_SECRET", "[accepted]"),
        None,
    )
    RedactSecrets().filter(record)
    line = record.getMessage()
    assert "t_SECRET" not in line and "ticket=[redacted]" in line and "since=3" in line
    access = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/api/v2/projects?api_key=nk_SECRET", "1.1", 401),
        None,
    )
    RedactSecrets().filter(access)
    assert "nk_SECRET" not in access.getMessage()
    key, ticket = "nk_" + "A1b2-C3d4_" * 4 + "xyz", "t_" + "Q9w8-E7r6_" * 3 + "zz"
    misplaced = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/api/v2/projects?x-api-key={key}&t={ticket}", "1.1", 401),
        None,
    )
    RedactSecrets().filter(misplaced)  # under any parameter name, a key is still hidden
    line = misplaced.getMessage()
    assert key not in line and ticket not in line and "x-api-key=nk_[redacted]" in line


def test_serve_refuses_a_public_host_without_keys(tmp_path: Path) -> None:
    from novelkit.server.serving import check_exposure, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    check_exposure(tmp_path, "127.0.0.1")
    with pytest.raises(PermissionError, match="no API key"):
        check_exposure(tmp_path, "0.0.0.0")
    create_key(tmp_path, "read")
    check_exposure(tmp_path, "0.0.0.0")


# -- inputs that once reached a 500 ----------------------------------------------------------------


def test_non_ascii_digits_are_422_not_500(served: tuple[TestClient, Keys, Path]) -> None:
    client, keys, _ = served
    h = {"X-API-Key": keys.write}
    # '²'.isdigit() is True but int('²') fails; '٣' (Arabic-Indic 3) int()s to 3
    for query in ("since=%C2%B2", "limit=%C2%B2", "since=%D9%A3", "since=%EF%BC%91"):
        response = client.get(f"/api/v2/projects/novel/events?{query}", headers=h)
        assert response.status_code == 422, (query, response.text)
        assert "non-negative integer" in response.json()["error"]["message"]
    for stage in ("%C2%B2", "%D9%A3", "012"):
        response = client.post(
            f"/api/v2/projects/novel/generate/stages/{stage}", json={"force": True}, headers=h
        )
        assert response.status_code == 422, (stage, response.text)
        assert response.json()["error"]["code"] == "unknown_stage"
        assert "premise" in response.json()["error"]["message"]
    sub = ["novelkit.v1", "novelkit.key." + keys.read]
    for query in ("since=%C2%B2", "since=%D9%A3"):
        assert _denied(client, f"/api/v2/projects/novel/ws?{query}", subprotocols=sub) == 422


def test_deeply_nested_json_is_400_not_500(served: tuple[TestClient, Keys, Path]) -> None:
    client, keys, root = served
    nested = b'{"chapters": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"  # under the 64 KiB default
    with LocalClient(create_app(root, rate_limit=None), raise_server_exceptions=False) as roomy:
        response = roomy.post(
            "/api/v2/projects/novel/generate/stages/draft",
            content=nested,
            headers={"X-API-Key": keys.write, "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "bad_json"
        with roomy.websocket_connect(
            "/api/v2/projects/novel/ws", subprotocols=["novelkit.v1", "novelkit.key." + keys.read]
        ) as ws:
            assert ws.receive_json()["type"] == "status_update"
            ws.send_text('{"type": ' + "[" * 20_000 + "]" * 20_000 + "}")
            assert ws.receive_json()["error"]["code"] == "bad_message"
            ws.send_json({"type": "ping", "id": 1})  # the socket is still served
            pong = ws.receive_json()
            assert (pong["type"], pong["id"]) == ("pong", 1)


# -- the command line ------------------------------------------------------------------------------


def test_cli_keys_create_prints_the_key_once_and_stores_only_its_hash(
    served: tuple[TestClient, Keys, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from novelkit.cli import main

    client, _, root = served
    assert main(["keys", "create", str(root), "--scope", "read", "--project", "other"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("nk_") and out == key + "\n"  # stdout holds the key and nothing else
    assert key not in err and "shown only now" in err
    assert key not in (root / KEYS_FILE).read_text()
    me = client.get("/api/v2/whoami", headers={"X-API-Key": key}).json()
    assert (me["scope"], me["project"]) == ("read", "other")
    assert client.get("/api/v2/projects/novel", headers={"X-API-Key": key}).status_code == 404
    with pytest.raises(SystemExit) as bad_scope:
        main(["keys", "create", str(root), "--scope", "admin"])
    assert bad_scope.value.code == 2
    assert main(["keys", "create", str(root), "--scope", "write", "--project", "../x"]) == 2
    assert "folder name" in capsys.readouterr().err


def test_cli_serve_refuses_a_public_host_until_a_key_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    import uvicorn

    from novelkit.cli import main

    served: list[tuple[str, int]] = []
    # never really listen on 0.0.0.0 from a test; record what would have been served
    monkeypatch.setattr(
        uvicorn.Server, "run", lambda self: served.append((self.config.host, self.config.port))
    )
    monkeypatch.setattr(gc, "freeze", lambda: None)
    # uvicorn's dictConfig would stop its loggers propagating (caplog in later tests)
    monkeypatch.setattr(uvicorn.Config, "configure_logging", lambda self: None)
    nk.new_project(tmp_path / "novel", premise=PREMISE, chapters=3, words_per_chapter=300).close()
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        assert main(["serve", str(tmp_path), "--host", host, "--port", "8799"]) == 2
        assert "no API key" in capsys.readouterr().err
    assert served == []
    assert main(["serve", str(tmp_path), "--host", "127.0.0.1", "--port", "8799"]) == 0
    create_key(tmp_path, "read")
    assert main(["serve", str(tmp_path), "--host", "0.0.0.0", "--port", "8799"]) == 0
    assert served == [("127.0.0.1", 8799), ("0.0.0.0", 8799)]
