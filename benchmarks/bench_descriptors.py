"""The sidecar under issue 18's descriptor probe, at 30 and 300 projects, against a baseline.

    flock /tmp/novelkit-bench.lock python3 benchmarks/bench_descriptors.py [--baseline /work/main]

`novelkit serve` runs in its own process with ``ulimit -n 1024`` (RLIMIT_NOFILE) and no rate
limit; 45 clients send GETs in parallel, each on a new connection, cycling the project list and,
for every project, ``events?since=0&limit=5``, ``generate/stages`` and the project itself.
Reported per size: answers by status (and dropped connections), p50/p99 latency of the answered
requests, the server's descriptors before the load (idle), at most during it (sampled every
20 ms), and after it once idle projects are closed. ``--baseline`` names a checkout whose
``novelkit`` is measured the same way in the same run (e.g. main before this change).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_server import free_port, percentile  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "descriptors.json"
CLIENTS = 45
LIMIT = 1024


def make_root(root: Path, count: int) -> str:
    import novelkit as nk
    from novelkit.server import create_key

    for i in range(count):
        nk.new_project(root / f"book{i:03d}", "A keeper finds a letter.", chapters=2).close()
    return create_key(root, "read")


def start(root: Path, port: int, code: str, mine: bool) -> subprocess.Popen[bytes]:
    def lower_limit() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, hard))

    extra = ["--idle-close", "2"] if mine else []
    server = subprocess.Popen(
        [sys.executable, "-m", "novelkit.cli", "serve", str(root), "--port", str(port)]
        + ["--rate-limit", "0", "--log-level", "warning", *extra],
        stderr=subprocess.DEVNULL,
        preexec_fn=lower_limit,
        env={**os.environ, "PYTHONPATH": code},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("novelkit serve did not start") from None
            time.sleep(0.05)


def descriptors(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def load(port: int, key: str, ids: list[str], rounds: int) -> tuple[list[float], dict[str, int]]:
    paths = ["/api/v2/projects"]
    for project_id in ids:
        base = f"/api/v2/projects/{project_id}"
        paths += [f"{base}/events?since=0&limit=5", f"{base}/generate/stages", base]
    latencies: list[float] = []
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def client(offset: int) -> None:
        for i in range(rounds):
            path = paths[(offset * 7 + i * 13) % len(paths)]
            began = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                connection.request("GET", path, headers={"X-API-Key": key})
                response = connection.getresponse()
                response.read()
                outcome = str(response.status)
            except OSError:
                outcome = "dropped"
            finally:
                connection.close()
            elapsed = time.perf_counter() - began
            with lock:
                counts[outcome] = counts.get(outcome, 0) + 1
                if outcome != "dropped":
                    latencies.append(elapsed)

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    return latencies, counts


def measure(code: str, mine: bool, count: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        key = make_root(root, count)
        ids = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        port = free_port()
        server = start(root, port, code, mine)
        try:
            time.sleep(0.5)
            idle = descriptors(server.pid)
            peak = idle
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.wait(0.02):
                    peak = max(peak, descriptors(server.pid))

            sampler = threading.Thread(target=sample)
            sampler.start()
            began = time.monotonic()
            latencies, counts = load(port, key, ids, rounds)
            seconds = time.monotonic() - began
            done.set()
            sampler.join()
            right_after = descriptors(server.pid)
            time.sleep(6.0 if mine else 30.0)  # idle projects close after 2 s (this change)
            after = descriptors(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    return {
        "projects": count,
        "requests": sum(counts.values()),
        "answers": dict(sorted(counts.items())),
        "seconds": round(seconds, 2),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "descriptors_idle": idle,
        "descriptors_peak": peak,
        "descriptors_right_after": right_after,
        "descriptors_after_idle": after,
        "descriptors_per_project_peak": round((peak - idle) / count, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default=None, help="checkout to compare with (e.g. main)")
    parser.add_argument("--rounds", type=int, default=40, help="requests per client")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent.parent)
    results: dict[str, Any] = {"ulimit_n": LIMIT, "clients": CLIENTS, "runs": {}}
    for label, code, mine in [("this", here, True)] + (
        [("baseline", args.baseline, False)] if args.baseline else []
    ):
        for count in (30, 300):
            figures = measure(code, mine, count, args.rounds)
            results["runs"][f"{label} {count}"] = figures
            print(label, json.dumps(figures), flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
