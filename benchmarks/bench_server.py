"""Sidecar latency while a job streams (the server runs in its own process, like `novelkit serve`).

    python benchmarks/bench_server.py            # writes benchmarks/results/server.json

1. p50/p99 of GET …/generate/status under 100 concurrent clients, each polling 10×/s on its
   own keep-alive connection (1,000 requests/s in all);
2. event delivery lag (receive time − event timestamp) p50/p99 over 100 WebSocket clients;
3. the same with one stalled client (completes the handshake, never reads) added.
Goals: status p99 ≤ 20 ms, lag p99 ≤ 50 ms, the stalled client moves the others' p99 < 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
CLIENTS = 100
POLL = 0.1  # each client asks for the status ten times a second
RESULTS = Path(__file__).parent / "results" / "server.json"
BACKEND = {"tokens_per_second": 4000, "latency": 0.01}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def serve(root: Path, port: int) -> None:
    from novelkit.server import serve_in_thread

    handle = serve_in_thread(root, port=port, rate_limit=None, log_level="warning")
    print("ready", flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin
    finally:
        handle.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def status_latency(
    base: str, port: int, key: str, project: str, seconds: float
) -> list[float]:
    """100 clients, each on its own keep-alive connection, polling status every POLL seconds.

    A minimal HTTP/1.1 client (asyncio streams) keeps client-side overhead out of the figures.
    """
    latencies: list[float] = []
    request = (
        f"GET /api/v2/projects/{project}/generate/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {key}\r\n\r\n"
    ).encode()

    async def worker(offset: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(offset)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - began)
            assert head.startswith(b"HTTP/1.1 200"), head
            await asyncio.sleep(max(0.0, POLL - (time.perf_counter() - began)))
        writer.close()

    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}) as client:
        await client.post(f"/api/v2/projects/{project}/generate")
        await asyncio.gather(*(worker(i * POLL / CLIENTS) for i in range(CLIENTS)))
        await client.post(f"/api/v2/projects/{project}/generate/cancel")
    return latencies


def stalled_socket(port: int, project: str, key: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            f"GET /api/v2/projects/{project}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: novelkit.v1, novelkit.key.{key}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock  # never read again


async def ws_lag(
    base: str, port: int, key: str, project: str, seconds: float, stalled: bool
) -> dict[str, Any]:
    ws_base = base.replace("http://", "ws://")
    lags: list[float] = []
    received = 0
    sock = stalled_socket(port, project, key) if stalled else None

    async def client(ready: asyncio.Event, go: asyncio.Event) -> None:
        nonlocal received
        async with connect(
            f"{ws_base}/api/v2/projects/{project}/ws",
            subprotocols=["novelkit.v1", f"novelkit.key.{key}"],
            max_size=None,
        ) as ws:  # type: ignore[list-item]
            await ws.recv()
            ready.set()
            await go.wait()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    break
                now = time.time()
                message = json.loads(raw)
                received += 1
                if message.get("seq") is not None:
                    lags.append(now - message["ts"])

    go = asyncio.Event()
    readies = [asyncio.Event() for _ in range(CLIENTS)]
    tasks = [asyncio.create_task(client(r, go)) for r in readies]
    await asyncio.gather(*(r.wait() for r in readies))
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}) as http:
        go.set()
        await http.post(f"/api/v2/projects/{project}/generate")
        await asyncio.gather(*tasks)
        await http.post(f"/api/v2/projects/{project}/generate/cancel")
    if sock is not None:
        sock.close()
    return {"lags": lags, "messages": received}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", nargs=2, metavar=("ROOT", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return

    import novelkit as nk
    from novelkit.server import create_key

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("status", "lag", "lag-stalled"):
            nk.new_project(
                root / name,
                premise=PREMISE,
                chapters=6,
                words_per_chapter=1500,
                backend_options=BACKEND,
            ).close()
        key = create_key(root, "write")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(root), str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            base = f"http://127.0.0.1:{port}"
            status = asyncio.run(status_latency(base, port, key, "status", args.seconds))
            plain = asyncio.run(ws_lag(base, port, key, "lag", args.seconds, stalled=False))
            with_stall = asyncio.run(
                ws_lag(base, port, key, "lag-stalled", args.seconds, stalled=True)
            )
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(30)

    def ms(values: list[float], q: float) -> float:
        return round(percentile(values, q) * 1000, 2)

    lag_p99, stalled_p99 = ms(plain["lags"], 0.99), ms(with_stall["lags"], 0.99)
    results = {
        "clients": CLIENTS,
        "status": {
            "requests": len(status),
            "p50_ms": ms(status, 0.5),
            "p99_ms": ms(status, 0.99),
            "mean_ms": round(statistics.mean(status) * 1000, 2),
        },
        "ws_lag": {
            "events": len(plain["lags"]),
            "messages": plain["messages"],
            "p50_ms": ms(plain["lags"], 0.5),
            "p99_ms": lag_p99,
        },
        "ws_lag_with_stalled_client": {
            "events": len(with_stall["lags"]),
            "messages": with_stall["messages"],
            "p50_ms": ms(with_stall["lags"], 0.5),
            "p99_ms": stalled_p99,
        },
        "stalled_p99_change_pct": round((stalled_p99 - lag_p99) / lag_p99 * 100, 1)
        if lag_p99
        else 0.0,
        "goals": {"status_p99_ms": 20, "lag_p99_ms": 50, "stalled_change_pct": 10},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'measure':<38}{'p50 ms':>10}{'p99 ms':>10}{'goal':>12}")
    print(
        f"{'GET status, 100 concurrent clients':<38}{results['status']['p50_ms']:>10}"
        f"{results['status']['p99_ms']:>10}{'p99 ≤ 20':>12}"
    )
    print(
        f"{'WS event lag, 100 clients':<38}{results['ws_lag']['p50_ms']:>10}{lag_p99:>10}{'p99 ≤ 50':>12}"
    )
    print(
        f"{'WS event lag, + 1 stalled client':<38}{results['ws_lag_with_stalled_client']['p50_ms']:>10}"
        f"{stalled_p99:>10}{'Δ < 10 %':>12}"
    )
    print(f"stalled client moved p99 by {results['stalled_p99_change_pct']} %  → {RESULTS}")


if __name__ == "__main__":
    main()
