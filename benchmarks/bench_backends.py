"""Benchmark the real HTTP backend path against the fake OpenAI server on 127.0.0.1.

1. Speed-up of the parallel stages (scenes, continuity, revision, polish) with concurrency 8
   vs 1, every call answered 100 ms after it reaches the server. Goal: >= 6x. The CPU each
   side spends per call is printed too: the fake server runs in its own process, and its
   share shows it is not what limits the speed-up.
2. Overhead of the real HTTP path (openai SDK, SSE parsing, retries, limiter) vs the offline
   backend at the same simulated latency ({"latency": 0.1}).

    python benchmarks/bench_backends.py [--chapters 16] [--latency 0.1]

Prints a table and writes benchmarks/results/backends.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import novelkit as nk  # noqa: E402

STAGES = [
    "premise", "world", "characters", "structure", "chapters", "scenes", "draft",
    "continuity", "revision", "polish", "metadata", "assemble",
]  # fmt: skip
PARALLEL = ("scenes", "continuity", "revision", "polish")


class ServerProcess:
    """The fake OpenAI server in its own process, as a real server would be (no shared GIL)."""

    def __init__(self, latency: float) -> None:
        script = ROOT / "tests" / "fake_llm_servers.py"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
        self.process = subprocess.Popen(
            [sys.executable, str(script), "--latency", str(latency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise SystemExit("the fake server did not start")

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.process.stdout.close()

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (Linux; 0.0 elsewhere)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def timed_stages(
    project: nk.Project, server_cpu: Callable[[], float]
) -> dict[str, dict[str, float]]:
    """Run the stages one by one: seconds each took, and the CPU seconds of both processes."""
    times: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        calls, client, server = project.store.call_count(), time.process_time(), server_cpu()
        started = time.perf_counter()
        state = project.run_stage(stage).wait(timeout=600)
        if state is not nk.JobState.SUCCEEDED:
            raise SystemExit(f"stage {stage} ended {state}: {project.status().error}")
        times[stage] = {
            "wall_s": time.perf_counter() - started,
            "client_cpu_s": time.process_time() - client,
            "server_cpu_s": server_cpu() - server,
            "calls": project.store.call_count() - calls,
        }
    return times


def cpu_per_call(stages: dict[str, dict[str, float]], wall_s: float) -> dict[str, float]:
    """CPU milliseconds per call of novelkit and of the fake server over the parallel stages."""
    calls = sum(stages[s]["calls"] for s in PARALLEL) or 1
    client = sum(stages[s]["client_cpu_s"] for s in PARALLEL)
    server = sum(stages[s]["server_cpu_s"] for s in PARALLEL)
    return {
        "client_ms_per_call": 1000 * client / calls,
        "server_ms_per_call": 1000 * server / calls,
        "server_busy": server / wall_s,  # the share of one core the fake server kept busy
    }


def http_project(folder: Path, fake: ServerProcess, chapters: int, concurrency: int) -> nk.Project:
    return nk.new_project(
        folder, premise="A lighthouse keeper finds a letter from her drowned brother.",
        chapters=chapters, words_per_chapter=300, concurrency=concurrency,
        backend="openai", base_url=fake.url + "/v1", model="fake-model",
    )  # fmt: skip


def offline_project(folder: Path, chapters: int, concurrency: int, latency: float) -> nk.Project:
    return nk.new_project(
        folder, premise="A lighthouse keeper finds a letter from her drowned brother.",
        chapters=chapters, words_per_chapter=300, concurrency=concurrency,
        backend="offline", backend_options={"latency": latency},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=int, default=48)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = "test-key"
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "chapters": args.chapters,
        "latency_s": args.latency,
    }
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(args.latency) as fake:
        base = Path(tmp)
        runs: dict[int, dict[str, dict[str, float]]] = {}
        for concurrency in (1, 8):
            project = http_project(base / f"c{concurrency}", fake, args.chapters, concurrency)
            try:
                runs[concurrency] = timed_stages(project, fake.cpu_seconds)
            finally:
                project.close()
        wall = {c: {s: runs[c][s]["wall_s"] for s in PARALLEL} for c in runs}
        serial = sum(wall[1].values())
        parallel = sum(wall[8].values())
        results["parallel_stages"] = {
            s: {
                "concurrency_1_s": wall[1][s],
                "concurrency_8_s": wall[8][s],
                "speedup": wall[1][s] / wall[8][s],
            }
            for s in PARALLEL
        }
        results["parallel_speedup_total"] = serial / parallel
        cpu = {f"concurrency_{c}": cpu_per_call(runs[c], sum(wall[c].values())) for c in runs}
        results["parallel_stages_cpu"] = cpu

        overhead: dict[str, Any] = {}
        for concurrency in (1, 8):
            started = time.perf_counter()
            project = http_project(base / f"o-http{concurrency}", fake, args.chapters, concurrency)
            try:
                project.start().wait(timeout=600)
                http_s, http_calls = time.perf_counter() - started, project.store.call_count()
            finally:
                project.close()
            started = time.perf_counter()
            project = offline_project(
                base / f"o-off{concurrency}", args.chapters, concurrency, args.latency
            )
            try:
                project.start().wait(timeout=600)
                off_s, off_calls = time.perf_counter() - started, project.store.call_count()
            finally:
                project.close()
            overhead[f"concurrency_{concurrency}"] = {
                "http_job_s": http_s,
                "offline_job_s": off_s,
                "http_calls": http_calls,
                "offline_calls": off_calls,
                "ratio": http_s / off_s,
                "overhead_per_call_ms": 1000 * (http_s - off_s) / http_calls,
            }
        results["http_vs_offline"] = overhead

    print(f"\nParallel stages, {args.chapters} chapters, {args.latency * 1000:.0f} ms per call")
    print(f"{'stage':<12}{'conc. 1 (s)':>13}{'conc. 8 (s)':>13}{'speed-up':>10}")
    for stage in PARALLEL:
        row = results["parallel_stages"][stage]
        print(
            f"{stage:<12}{row['concurrency_1_s']:>13.2f}{row['concurrency_8_s']:>13.2f}{row['speedup']:>9.1f}x"
        )
    print(
        f"{'all four':<12}{serial:>13.2f}{parallel:>13.2f}{results['parallel_speedup_total']:>9.1f}x  (goal >= 6x)"
    )
    print(f"\n{'CPU per call':<16}{'novelkit':>10}{'fake server':>13}{'server busy':>13}")
    for name, row in cpu.items():
        print(
            f"{name:<16}{row['client_ms_per_call']:>7.1f} ms{row['server_ms_per_call']:>10.1f} ms"
            f"{100 * row['server_busy']:>12.0f}%"
        )
    print("\nWhole job, real HTTP path vs offline backend at equal latency")
    print(f"{'':<16}{'HTTP (s)':>10}{'offline (s)':>13}{'ratio':>8}{'per call':>12}")
    for name, row in overhead.items():
        print(
            f"{name:<16}{row['http_job_s']:>10.2f}{row['offline_job_s']:>13.2f}"
            f"{row['ratio']:>8.2f}{row['overhead_per_call_ms']:>9.1f} ms"
        )
    out = ROOT / "benchmarks" / "results" / "backends.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
