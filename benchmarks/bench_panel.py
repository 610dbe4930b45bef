"""The notebook panel under load: comm messages, CPU and preview lag while text streams.

    python benchmarks/bench_panel.py [--seconds 4] [--rates 500 5000 50000]

For each token rate, the same slowed offline job streams for ``--seconds`` twice: once with
a JobPanel attached (its widgets talk to a recording comm that JSON-encodes every message, as
the kernel would) and once without. Reported per rate:

- update messages per second the panel sent, and the most in any one-second window;
- the panel's CPU: its renderer thread's CPU time (``time.thread_time``) as a share of the
  wall time (one core: the kernel's CPU the panel takes) and of the process's CPU time, and
  the difference in process CPU per second between the two runs (noisier);
- preview lag: for every streamed delta, the time from the delta event until the first
  message whose preview contains it (p50, p95, max).

Goals: <= 10 messages/s, <= 5 % CPU, preview lag p95 <= 150 ms. Writes
``benchmarks/results/panel.json``.
"""

from __future__ import annotations

import argparse
import html
import json
import platform
import re
import statistics
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
from novelkit.llm.base import count_tokens  # noqa: E402
from novelkit.widgets import JobPanel  # noqa: E402

GOAL_MESSAGES, GOAL_CPU, GOAL_LAG = 10.0, 0.05, 0.150
PREVIEW = re.compile(r'<pre class="nk-preview"[^>]*>(.*?)</pre>', re.S)


class RecordingComm:
    """A comm that serialises like the kernel would, and keeps (time, model id, data)."""

    kernel = "Truthy"
    log: list[tuple[float, str, dict[str, Any]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.comm_id = uuid.uuid4().hex

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send(self, data: dict[str, Any] | None = None, buffers: Any = None, **kwargs: Any) -> None:
        json.dumps(data)
        RecordingComm.log.append((time.time(), self.comm_id, data or {}))


def stream(folder: Path, rate: int, seconds: float, with_panel: bool) -> dict[str, Any]:
    project = nk.new_project(
        folder,
        premise="A lighthouse keeper finds a letter from her drowned brother.",
        chapters=12,
        words_per_chapter=3000,
        # asyncio cannot sleep much under a millisecond: bigger chunks for the top rate
        backend_options={
            "tokens_per_second": rate,
            "latency": 0.01,
            "chunk_words": max(8, rate // 1000),
        },
    )
    deltas: list[tuple[float, str]] = []
    sub = project.subscribe(
        lambda e: deltas.append((e.ts, e.data["text"])) if e.type == "delta" else None
    )
    RecordingComm.log = []
    cpu0, wall0 = time.process_time(), time.monotonic()
    job = project.start()
    panel = JobPanel(job).start() if with_panel else None
    view_id = panel.view.model_id if panel else ""
    job.wait(seconds)
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    end = time.time()
    if job.state.active:
        job.cancel()
    job.wait(10)
    if panel is not None:
        deadline = time.monotonic() + 3
        while panel.running and time.monotonic() < deadline:
            time.sleep(0.02)
    time.sleep(0.1)
    sub.close()
    row: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "process_cpu_s": round(cpu, 4),
        "tokens_per_s": round(sum(count_tokens(t) for ts, t in deltas if ts <= end) / wall),
        "deltas_per_s": round(sum(1 for ts, _ in deltas if ts <= end) / wall),
    }
    if panel is not None:
        stats = panel.stats
        updates = [
            (t, d) for t, _, d in RecordingComm.log if d.get("method") == "update" and t <= end
        ]
        times = [t for t, _ in updates]
        busiest = max((sum(1 for u in times if t <= u < t + 1) for t in times), default=0)
        views = [
            (t, html.unescape(m.group(1)) if (m := PREVIEW.search(d["state"]["value"])) else "")
            for t, cid, d in RecordingComm.log
            if cid == view_id and "value" in d.get("state", {})
        ]
        row.update(
            messages_per_s=round(len(updates) / wall, 2),
            busiest_second=busiest,
            panel_cpu_s=round(stats.cpu_seconds, 4),
            panel_core_share=round(stats.cpu_seconds / wall, 4),
            panel_process_share=round(stats.cpu_seconds / cpu, 4),
            lag=lags(deltas, views, end - 0.3),
        )
        panel.close()
    project.close()
    return row


def lags(
    deltas: list[tuple[float, str]], views: list[tuple[float, str]], until: float
) -> dict[str, float]:
    """Seconds from each delta until the first message whose preview includes it."""
    ends, text = [], ""
    for _, piece in deltas:
        text += piece
        ends.append(len(text))
    covered: list[tuple[float, int]] = []  # (message time, index of the last delta it shows)
    for t, preview in views:
        candidates = [i for i, (ts, _) in enumerate(deltas) if ts <= t]
        for i in reversed(candidates):
            if preview and text.endswith(preview, 0, ends[i]):
                covered.append((t, i))
                break
    out: list[float] = []
    m = 0
    for i, (ts, _) in enumerate(deltas):
        if ts > until:
            break
        while m < len(covered) and covered[m][1] < i:
            m += 1
        if m == len(covered):
            break
        out.append(max(0.0, covered[m][0] - ts))
    if not out:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "max_ms": float("nan"), "n": 0}
    out.sort()
    return {
        "p50_ms": round(statistics.median(out) * 1000, 1),
        "p95_ms": round(out[int(0.95 * (len(out) - 1))] * 1000, 1),
        "max_ms": round(out[-1] * 1000, 1),
        "n": len(out),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rates", type=int, nargs="+", default=[500, 5000, 50000])
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "panel.json"
    )
    args = parser.parse_args()
    comm.create_comm = RecordingComm  # type: ignore[assignment]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in args.rates:
            without = stream(Path(tmp) / f"plain-{rate}", rate, args.seconds, with_panel=False)
            with_ = stream(Path(tmp) / f"panel-{rate}", rate, args.seconds, with_panel=True)
            diff = (
                with_["process_cpu_s"] / with_["wall_s"]
                - without["process_cpu_s"] / without["wall_s"]
            )
            row = {
                "rate": rate,
                "with_panel": with_,
                "without_panel": without,
                "process_cpu_difference_core_share": round(diff, 4),
                "meets_goal": with_["messages_per_s"] <= GOAL_MESSAGES
                and with_["busiest_second"] <= GOAL_MESSAGES
                and with_["panel_core_share"] <= GOAL_CPU
                and with_["lag"]["p95_ms"] <= GOAL_LAG * 1000,
            }
            results.append(row)
    report = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seconds": args.seconds,
        "results": results,
        "goals": {
            "messages_per_s": GOAL_MESSAGES,
            "panel_cpu_core_share": GOAL_CPU,
            "lag_p95_ms": GOAL_LAG * 1000,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    head = (
        f"{'tok/s asked':>11} {'achieved':>9} {'deltas/s':>8} {'msg/s':>6} {'max/1s':>6} "
        f"{'panel CPU':>9} {'of proc':>8} {'Δ proc':>7} {'lag p50':>8} {'lag p95':>8} "
        f"{'lag max':>8}  goal"
    )
    print(head)
    for row in results:
        w = row["with_panel"]
        print(
            f"{row['rate']:>11,} {w['tokens_per_s']:>9,} {w['deltas_per_s']:>8,} "
            f"{w['messages_per_s']:>6.1f} {w['busiest_second']:>6} {w['panel_core_share']:>9.2%} "
            f"{w['panel_process_share']:>8.1%} {row['process_cpu_difference_core_share']:>7.2%} "
            f"{w['lag']['p50_ms']:>6.0f}ms {w['lag']['p95_ms']:>6.0f}ms "
            f"{w['lag']['max_ms']:>6.0f}ms  {'met' if row['meets_goal'] else 'MISSED'}"
        )
    print(f"wrote {args.output.relative_to(ROOT)}")
    return 0 if all(row["meets_goal"] for row in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
