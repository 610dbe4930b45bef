"""The sidecar under a real uvicorn on 127.0.0.1: httpx and the websockets client (schemathesis:
test_server_schema.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import novelkit as nk
from novelkit.server import ServerHandle, create_key, serve_in_thread

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."


class Live:
    def __init__(self, handle: ServerHandle, root: Path) -> None:
        self.handle = handle
        self.root = root
        self.url = handle.url.rstrip("/")
        self.ws_url = self.url.replace("http://", "ws://")
        self.write = create_key(root, "write")
        self.read = create_key(root, "read")
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.write}"}, timeout=10
        )

    def wait_state(self, project: str, *states: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state: str = self.http.get(f"/api/v2/projects/{project}/generate/status").json()[
                "state"
            ]
            if state in states or time.monotonic() > deadline:
                return state
            time.sleep(0.05)

    def subprotocols(self, key: str | None = None) -> list[Any]:
        return ["novelkit.v1", "novelkit.key." + (key or self.read)]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    done = nk.new_project(tmp_path / "done", premise=PREMISE, chapters=3, words_per_chapter=300)
    done.start().wait(60)
    done.export("md")
    done.close()
    nk.new_project(
        tmp_path / "slow",
        premise=PREMISE,
        chapters=3,
        words_per_chapter=300,
        backend_options={"tokens_per_second": 2000, "latency": 0.01},
    ).close()
    handle = serve_in_thread(tmp_path, port=0, rate_limit=None, log_level="info")
    live = Live(handle, tmp_path)
    try:
        yield live
    finally:
        live.http.close()
        handle.stop()
        assert not handle.running


async def _collect_until_done(ws: Any, lag: list[float] | None = None) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if lag is not None and message.get("seq") is not None:
            lag.append(time.time() - message["ts"])
        seen.append(message)
        if message["type"] == "job" and message["state"] in ("succeeded", "failed", "cancelled"):
            return seen


def test_stream_then_replay_with_since(live: Live) -> None:
    async def scenario() -> None:
        async with connect(
            f"{live.ws_url}/api/v2/projects/slow/ws?since=0", subprotocols=live.subprotocols()
        ) as ws:
            assert ws.subprotocol == "novelkit.v1"
            started = live.http.post("/api/v2/projects/slow/generate")
            assert started.status_code == 202
            seen = await _collect_until_done(ws)
        seqs = [m["seq"] for m in seen if m.get("seq") is not None]
        assert seqs == list(range(seqs[0], seqs[-1] + 1)) and seqs[0] == 1
        assert any(m["type"] == "delta" for m in seen)
        assert seen[-1]["state"] == "succeeded"
        middle = seqs[len(seqs) // 2]
        async with connect(
            f"{live.ws_url}/api/v2/projects/slow/ws?since={middle}",
            subprotocols=live.subprotocols(),
        ) as ws:
            replay = []
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] == "status_update":
                    break
                replay.append(message["seq"])
        assert replay == [s for s in seqs if s > middle]

    asyncio.run(scenario())
    page = live.http.get("/api/v2/projects/slow/events", params={"since": 0, "limit": 1000}).json()
    assert page["last_seq"] >= 50


def _stalled_socket(live: Live, project: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((live.handle.host, live.handle.port))
    request = (
        f"GET /api/v2/projects/{project}/ws HTTP/1.1\r\nHost: {live.handle.host}:{live.handle.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: novelkit.v1, novelkit.key.{live.read}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_a_client_that_never_reads_does_not_slow_another(live: Live) -> None:
    stalled = _stalled_socket(live, "slow")
    try:

        async def scenario() -> tuple[list[float], list[dict[str, Any]], float]:
            async with connect(
                f"{live.ws_url}/api/v2/projects/slow/ws", subprotocols=live.subprotocols()
            ) as ws:
                await ws.recv()  # the first status_update
                began = time.monotonic()
                live.http.post("/api/v2/projects/slow/generate")
                lag: list[float] = []
                seen = await _collect_until_done(ws, lag)
                return lag, seen, time.monotonic() - began

        lag, seen, took = asyncio.run(scenario())
        lag.sort()
        p99 = lag[int(len(lag) * 0.99) - 1]
        assert p99 < 0.25, f"event lag p99 {p99 * 1000:.0f} ms with a stalled peer"
        assert took < 20
        seqs = [m["seq"] for m in seen if m.get("seq") is not None]
        assert seqs == list(range(seqs[0], seqs[-1] + 1))
        sidecar = live.handle.app.state.sidecar
        for feed in sidecar._feeds.values():
            for client in feed.clients:
                assert len(client.queue) <= client.queue.maxsize
    finally:
        stalled.close()


def test_ws_handshake_denials_are_real_http_answers(live: Live) -> None:
    async def status_of(url: str, **kw: Any) -> int:
        with pytest.raises(InvalidStatus) as denied:
            async with connect(url, **kw):
                pass
        code: int = denied.value.response.status_code
        return code

    async def scenario() -> None:
        url = f"{live.ws_url}/api/v2/projects/done/ws"
        assert await status_of(url) == 401
        assert await status_of(url, subprotocols=["novelkit.v1", "novelkit.key.nk_bad"]) == 401
        assert (
            await status_of(url, subprotocols=live.subprotocols(), origin="https://evil.example")
            == 403
        )
        assert await status_of(url + f"?key={live.read}") == 401
        foreign = create_key(live.root, "read", project="slow")
        assert await status_of(url, subprotocols=live.subprotocols(foreign)) == 404
        ticket = live.http.post("/api/v2/ws-ticket").json()["ticket"]
        async with connect(f"{url}?ticket={ticket}") as ws:
            assert json.loads(await ws.recv())["type"] == "status_update"
        assert await status_of(f"{url}?ticket={ticket}") == 401  # single use

    asyncio.run(scenario())


def test_frames_over_the_limit_close_1009(live: Live) -> None:
    async def scenario() -> int | None:
        async with connect(
            f"{live.ws_url}/api/v2/projects/done/ws",
            subprotocols=live.subprotocols(),
            max_size=None,
        ) as ws:
            await ws.recv()
            await ws.send("x" * (128 * 1024))
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            except Exception:
                pass
            assert ws.close_code is not None
            return ws.close_code

    assert asyncio.run(scenario()) == 1009


def test_raw_path_traversal_over_the_wire(live: Live) -> None:
    (live.root.parent / "secret.txt").write_text("TOP-SECRET")
    for path in (
        "/api/v2/projects/done/export/../../../secret.txt",
        "/api/v2/projects/done/export/..%2f..%2fnovel.toml",
        "/api/v2/projects/done/export/%2e%2e%2f%2e%2e%2fnovel.toml",
        "/static/../../secret.txt",
        "/api/v2/projects/../secret.txt/generate/status",
        "/api/v2/projects/done/export/md%00",
    ):
        with socket.create_connection((live.handle.host, live.handle.port)) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {live.handle.host}\r\nX-API-Key: {live.write}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        status = int(data.split(b" ", 2)[1])
        assert status in (400, 404, 422), (path, data[:200])
        assert b"TOP-SECRET" not in data and b"premise =" not in data


def test_access_log_never_holds_keys_or_tickets(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        live.http.get(
            "/api/v2/projects", params={"api_key": live.read}, headers={"Authorization": ""}
        )
        ticket = live.http.post("/api/v2/ws-ticket").json()["ticket"]

        async def scenario() -> None:
            async with connect(f"{live.ws_url}/api/v2/projects/done/ws?ticket={ticket}") as ws:
                await ws.recv()

        asyncio.run(scenario())
        live.http.get("/api/v2/projects/done/generate/status")
        time.sleep(0.2)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("uvicorn"))
    assert "WebSocket" in text and "/api/v2/projects" in text  # the log exists...
    for secret in (live.read, live.write, ticket):
        assert secret not in text  # ...without secrets


def test_control_over_http_while_streaming(live: Live) -> None:
    assert live.http.post("/api/v2/projects/slow/generate").status_code == 202
    assert live.wait_state("slow", "running") == "running"
    paused = live.http.post("/api/v2/projects/slow/generate/pause", json={"now": True})
    assert paused.status_code == 200 and paused.json()["changed"] is True
    assert live.wait_state("slow", "paused") == "paused"
    assert live.http.post("/api/v2/projects/slow/generate/resume").json()["changed"] is True
    assert live.wait_state("slow", "succeeded") == "succeeded"


def test_serve_in_thread_reports_a_taken_port(live: Live) -> None:
    with pytest.raises(OSError, match="could not start"):
        serve_in_thread(live.root, port=live.handle.port, timeout=5)


def test_heartbeat_drops_a_peer_that_stops_answering(tmp_path: Path) -> None:
    nk.new_project(tmp_path / "quiet", premise=PREMISE, chapters=3, words_per_chapter=300).close()
    handle = serve_in_thread(tmp_path, port=0, rate_limit=None, heartbeat=0.3)
    try:
        live = Live(handle, tmp_path)
        feeds = handle.app.state.sidecar._feeds
        dead = _stalled_socket(live, "quiet")  # never reads, so never answers a ping
        try:

            async def scenario() -> None:
                async with connect(  # a live peer: the websockets client answers pings
                    f"{live.ws_url}/api/v2/projects/quiet/ws", subprotocols=live.subprotocols()
                ) as ws:
                    await ws.recv()
                    most = len(feeds["quiet"].clients)  # the silent peer and this one
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline and len(feeds["quiet"].clients) != 1:
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(1.0)  # several heartbeats later
                    assert most == 2, "the silent peer was never connected"
                    assert len(feeds["quiet"].clients) == 1
                    await ws.send(json.dumps({"type": "ping", "id": "alive"}))
                    while (reply := json.loads(await ws.recv()))["type"] != "pong":
                        pass
                    assert reply["id"] == "alive"  # the peer that answers stays connected

            asyncio.run(scenario())
        finally:
            dead.close()
        live.http.close()
    finally:
        handle.stop()
