"""Benchmark novelkit against a real language model: SmolLM2-135M-Instruct served by
llama-cpp-python's OpenAI-compatible server on 127.0.0.1 (the same server the test suite uses).

1. Per structured stage and mechanism (``json_object_schema`` — the grammar-constrained form,
   the strongest this server offers; ``json_object`` with the schema in the prompt; ``prompt``
   only): the share of units valid at the first answer, after re-asks, and failed. Goal:
   100 % valid after repair with the strongest mechanism.
2. End to end with the default settings: novelkit's wall time ÷ the time the server spent
   answering (measured at a proxy in front of it). Goal: <= 1.10. Chapter lengths vs target.

    python benchmarks/bench_real_model.py [--chapters 2] [--words 300] [--skip-mechanisms]

Prints a table and writes benchmarks/results/real_model.json.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from real_model import CountingProxy, LlamaServer  # noqa: E402

import novelkit as nk  # noqa: E402

PREMISE = "A lighthouse keeper finds a letter from her drowned brother."
STRUCTURED = (
    "premise", "world", "characters", "structure", "chapters", "scenes", "summary",
    "continuity", "metadata",
)  # fmt: skip
MECHANISMS = ("json_object_schema", "json_object", "prompt")


def shares(root: Path, failed_stage: str | None) -> dict[str, dict[str, int]]:
    """Per structured task: units valid at the first answer, after re-asks, and failed."""
    db = sqlite3.connect(root / ".novelkit" / "state.db")
    rows = db.execute("SELECT stage, unit, task FROM calls").fetchall()
    db.close()
    units: dict[tuple[str, str], set[str]] = {}
    for stage, unit, task in rows:
        kind = "summary" if stage == "draft" and task in ("summary", "repair") else stage
        units.setdefault((kind, unit), set()).add(task)
    table: dict[str, dict[str, int]] = {}
    for (kind, _unit), tasks in units.items():
        if kind not in STRUCTURED or not ({kind, "repair"} & tasks):
            continue
        row = table.setdefault(kind, {"first": 0, "repaired": 0, "failed": 0})
        if kind == failed_stage:
            row["failed"] += 1
        elif "repair" in tasks:
            row["repaired"] += 1
        else:
            row["first"] += 1
    return table


def run(llama: LlamaServer, out: Path, chapters: int, words: int, **options: Any) -> dict[str, Any]:
    with CountingProxy(llama.url) as proxy:
        project = nk.new_project(
            out,
            premise=PREMISE,
            chapters=chapters,
            words_per_chapter=words,
            backend="openai",
            base_url=proxy.url + "/v1",
            model="smollm2",
            backend_options=options,
        )
        started = time.perf_counter()
        state = project.start().wait()
        wall = time.perf_counter() - started
        status = project.status()
        failed = next((s.name for s in project.stages if s.state is nk.StageState.FAILED), None)
        report = project.report()
        project.close()
        return {
            "state": state.value,
            "error": status.error,
            "wall_s": wall,
            "server_busy_s": proxy.busy_seconds(),
            "requests": len(proxy.calls),
            "shares": shares(out, failed),
            "lengths": [
                {"chapter": c.chapter, "target": c.target_words, "words": c.actual_words}
                for c in (report.chapters if report else [])
            ],
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chapters", type=int, default=2)
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--skip-mechanisms", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with LlamaServer() as llama, tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        results["end_to_end"] = run(llama, base / "default", args.chapters, args.words)
        e2e = results["end_to_end"]
        e2e["ratio"] = e2e["wall_s"] / e2e["server_busy_s"]
        if not args.skip_mechanisms:
            for mechanism in MECHANISMS:
                results[mechanism] = run(
                    llama,
                    base / mechanism,
                    args.chapters,
                    args.words,
                    structured_output=mechanism,
                    max_concurrency=1,
                )
    print(f"end to end: {e2e['state']} in {e2e['wall_s']:.1f} s; server busy "
          f"{e2e['server_busy_s']:.1f} s; ratio {e2e['ratio']:.3f} (goal <= 1.10)")  # fmt: skip
    for row in e2e["lengths"]:
        print(f"  chapter {row['chapter']}: {row['words']} words for {row['target']}")
    print(f"{'mechanism':<20}{'stage':<12}{'first':>7}{'repaired':>10}{'failed':>8}")
    for name in ("end_to_end", *(m for m in MECHANISMS if m in results)):
        for stage, row in sorted(results[name]["shares"].items()):
            total = sum(row.values()) or 1
            print(
                f"{name:<20}{stage:<12}{row['first'] / total:>7.0%}"
                f"{row['repaired'] / total:>10.0%}{row['failed'] / total:>8.0%}"
            )
        if results[name]["state"] != "succeeded":
            print(f"{name:<20}stopped: {(results[name]['error'] or '')[:160]}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "real_model.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
