"""Sweeps on Dask: scaling against one run, and the sweep's own overhead with many tiny runs.

    flock /tmp/novelkit-bench.lock python3 benchmarks/bench_sweep.py [--runs 16] [--slots 4]
                                                                   [--tiny 1000]

1. Scaling. A fake OpenAI server (its own process) answers every call after 100 ms. One run
   alone (an ordinary ``project.start()``, no Dask) gives the baseline wall time; then a sweep
   of ``--runs`` runs of the same size on a LocalCluster with ``--slots`` worker processes
   (started beforehand; its start-up is reported apart). Goal: sweep wall ÷ (runs/slots × one
   run's wall) <= 1.15. Reported: the ratio, the scheduler's overhead per run (the slot time
   not spent inside a run's job), and the CPU a SweepPanel attached to the sweep spent per run.

2. Many tiny runs. ``--tiny`` one-chapter runs on the offline backend with a SweepPanel whose
   widgets talk to a recording comm. Reported: the panel's most update messages in any one
   second (goal <= 10) and its CPU, and the sweep's own overhead per run: slot time per run
   minus a tiny run's wall time measured alone in this process.

Writes ``benchmarks/results/sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import comm  # noqa: E402

import novelkit as nk  # noqa: E402

GOAL_RATIO, GOAL_MESSAGES = 1.15, 10
PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
SCALING = {"premise": PREMISE, "chapters": 2, "words_per_chapter": 200}
TINY = {"premise": PREMISE, "chapters": 1, "words_per_chapter": 100}


class RecordingComm:
    kernel = "Truthy"
    log: list[float] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.comm_id = uuid.uuid4().hex

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send(self, data: dict[str, Any] | None = None, buffers: Any = None, **kwargs: Any) -> None:
        json.dumps(data, default=str)  # the kernel serialises every message
        if (data or {}).get("method") == "update":
            RecordingComm.log.append(time.monotonic())


def busiest_second(times: list[float]) -> int:
    return max((sum(1 for t in times if s <= t < s + 1.0) for s in times), default=0)


def start_fake(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "fake_llm_servers.py"),
            "--latency",
            str(latency),
            "--no-key",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT / "tests",
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def one_run(folder: Path, config: dict[str, Any]) -> float:
    """One run as a sweep's task does it: create the project, run its job, close it."""
    settings = dict(config)
    started = time.perf_counter()
    project = nk.new_project(folder, premise=settings.pop("premise"), **settings)
    state = project.start().wait()
    project.close()
    wall = time.perf_counter() - started
    assert state is nk.JobState.SUCCEEDED, state
    return wall


def cluster(slots: int, config: dict[str, Any]) -> tuple[Any, Any, float]:
    """A LocalCluster whose workers have loaded what a run needs (as a long-lived cluster has):
    a cold worker process's imports are not the scheduler's overhead."""
    from distributed import Client, LocalCluster

    from novelkit._sweep._task import warm_up_workers

    started = time.perf_counter()
    c = LocalCluster(
        n_workers=slots,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    client = Client(c, set_as_default=False)
    warm_up_workers(client, config)
    return c, client, time.perf_counter() - started


def timed_sweep(
    root: Path, grid: dict[str, list[Any]], base: dict[str, Any], client: Any
) -> dict[str, Any]:
    from novelkit.widgets.sweep import SweepPanel

    RecordingComm.log = []
    started = time.perf_counter()
    s = nk.sweep(root, grid=grid, base=base, client=client)
    panel = SweepPanel(s).start()
    state = s.wait()
    wall = time.perf_counter() - started
    time.sleep(0.3)  # the panel's last refresh
    panel.close()
    status = s.status
    s.close()
    assert state is nk.JobState.SUCCEEDED, status.message
    return {
        "wall": wall,
        "run_walls": [r.elapsed for r in status.runs],
        "panel_cpu": panel.stats.cpu_seconds,
        "panel_busiest_second": busiest_second(RecordingComm.log),
        "panel_updates": len(RecordingComm.log),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--tiny", type=int, default=1000)
    parser.add_argument("--tiny-slots", type=int, default=2)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "sweep.json"
    )
    args = parser.parse_args()
    comm.create_comm = RecordingComm  # type: ignore[assignment]
    results: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version()}
    fake, url = start_fake(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = {**SCALING, "backend": "openai", "base_url": url + "/v1", "model": "fake-model"}
            alone = [one_run(Path(tmp) / f"alone-{i}", {**base, "seed": 100 + i}) for i in range(3)]
            one = statistics.median(alone)
            c, client, startup = cluster(args.slots, base)
            try:
                run = timed_sweep(
                    Path(tmp) / "sweep", {"seed": list(range(args.runs))}, base, client
                )
            finally:
                client.close()
                c.close()
        ideal = args.runs / args.slots * one
        ratio = run["wall"] / ideal
        slot_time = run["wall"] * args.slots
        results["scaling"] = {
            "runs": args.runs,
            "slots": args.slots,
            "latency": args.latency,
            "one_run_wall": round(one, 3),
            "one_run_walls": [round(w, 3) for w in alone],
            "cluster_startup": round(startup, 3),
            "sweep_wall": round(run["wall"], 3),
            "ratio": round(ratio, 3),
            "goal_ratio": GOAL_RATIO,
            "run_wall_median_in_sweep": round(statistics.median(run["run_walls"]), 3),
            "scheduler_overhead_per_run": round((slot_time - sum(run["run_walls"])) / args.runs, 3),
            "panel_cpu_per_run": round(run["panel_cpu"] / args.runs, 5),
            "panel_busiest_second": run["panel_busiest_second"],
            "meets_goal": ratio <= GOAL_RATIO,
        }
    finally:
        assert fake.stdin is not None
        fake.stdin.close()
        fake.wait(timeout=10)
    if args.tiny:
        with tempfile.TemporaryDirectory() as tmp:
            alone = [
                one_run(Path(tmp) / f"alone-{i}", {**TINY, "seed": 5000 + i}) for i in range(5)
            ]
            tiny_one = statistics.median(alone)
            c, client, startup = cluster(args.tiny_slots, TINY)
            try:
                run = timed_sweep(
                    Path(tmp) / "tiny", {"seed": list(range(args.tiny))}, TINY, client
                )
            finally:
                client.close()
                c.close()
        per_run_slot = run["wall"] * args.tiny_slots / args.tiny
        results["tiny"] = {
            "runs": args.tiny,
            "slots": args.tiny_slots,
            "tiny_run_wall_alone": round(tiny_one, 4),
            "sweep_wall": round(run["wall"], 3),
            "slot_seconds_per_run": round(per_run_slot, 4),
            "sweep_overhead_per_run": round(per_run_slot - tiny_one, 4),
            "run_wall_median_in_sweep": round(statistics.median(run["run_walls"]), 4),
            "panel_busiest_second": run["panel_busiest_second"],
            "panel_updates": run["panel_updates"],
            "panel_cpu_seconds": round(run["panel_cpu"], 3),
            "panel_cpu_share": round(run["panel_cpu"] / run["wall"], 4),
            "goal_messages": GOAL_MESSAGES,
            "meets_goal": run["panel_busiest_second"] <= GOAL_MESSAGES,
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return (
        0
        if all(part.get("meets_goal", True) for part in results.values() if isinstance(part, dict))
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
