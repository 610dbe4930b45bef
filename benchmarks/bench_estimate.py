"""How close ``project.estimate()`` comes to a real run's tokens, stage by stage.

Runs the estimate (a dry run on the offline backend), then the same project for real on an
OpenAI-compatible server, and prints actual ÷ estimated tokens per stage and in total. Without
``--base-url`` it uses the test suite's fake OpenAI server on 127.0.0.1 (a sanity check: it
writes like the offline backend); point it at a real server to measure a real model:

    python benchmarks/bench_estimate.py --base-url http://127.0.0.1:8080/v1 --model smollm2

Prints a table and writes benchmarks/results/estimate.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import novelkit as nk  # noqa: E402

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."


@contextlib.contextmanager
def _server(base_url: str | None) -> Iterator[str]:
    if base_url:
        yield base_url
        return
    from fake_llm_servers import FakeOpenAIServer

    with FakeOpenAIServer(models=("fake-model",)) as fake:
        yield fake.url + "/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--chapters", type=int, default=2)
    parser.add_argument("--words-per-chapter", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "test-key")
    with _server(args.base_url) as url, tempfile.TemporaryDirectory() as folder:
        project = nk.new_project(
            Path(folder) / "novel",
            premise=PREMISE,
            chapters=args.chapters,
            words_per_chapter=args.words_per_chapter,
            backend="openai",
            base_url=url,
            model=args.model,
        )
        started = time.perf_counter()
        estimate = project.estimate()
        estimate_seconds = time.perf_counter() - started
        state = project.start().wait()
        ledger = project.store.ledger()
        project.close()
    rows: list[dict[str, Any]] = []
    print(f"{'stage':<11} {'est. tokens':>12} {'actual':>10} {'ratio':>6}")
    for stage in estimate.stages:
        actual = ledger.get(stage.stage, {})
        real = int(actual.get("prompt_tokens", 0)) + int(actual.get("completion_tokens", 0))
        predicted = stage.prompt_tokens + stage.completion_tokens
        ratio = real / predicted if predicted else float("nan")
        rows.append({"stage": stage.stage, "estimated": predicted, "actual": real, "ratio": ratio})
        print(f"{stage.stage:<11} {predicted:>12,} {real:>10,} {ratio:>6.2f}")
    total = sum(r["actual"] for r in rows)
    print(f"{'total':<11} {estimate.tokens:>12,} {total:>10,} {total / estimate.tokens:>6.2f}")
    print(f"job {state.value}; estimate took {estimate_seconds:.2f} s")
    out = ROOT / "benchmarks" / "results" / "estimate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "server": args.base_url or "fake",
        "model": args.model,
        "state": state.value,
        "estimate_seconds": estimate_seconds,
        "ratio": total / estimate.tokens,
        "stages": rows,
    }
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
