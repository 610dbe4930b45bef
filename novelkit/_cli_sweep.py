"""``novelkit sweep ROOT --grid grid.toml`` and ``novelkit sweep-status ROOT`` (docs/architecture.md, "Contracts").

Kept out of cli.py so the sweep's commands load Dask only when they run.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_parsers(command: Any) -> None:
    """Add ``sweep`` and ``sweep-status`` with cli.py's ``command(name, text, examples)``."""
    p = command(
        "sweep",
        "run a grid of configs on Dask, one project per run under ROOT",
        "  novelkit sweep sweeps/temps --grid grid.toml --workers 4\n"
        "  novelkit sweep sweeps/temps --grid grid.toml --scheduler tcp://HOST:8786\n"
        "  novelkit sweep sweeps/temps          # continue it (finished runs are skipped)\n"
        "grid.toml: top-level keys are the base config, [grid] maps a key to its values,\n"
        "[sweep] takes max_cost and max_tokens. Ctrl-C pauses the sweep (twice: cancels).\n",
    )
    p.add_argument(
        "root", metavar="ROOT", help="folder of the sweep's runs (shared by all workers)"
    )
    p.add_argument(
        "--grid",
        type=Path,
        metavar="GRID.TOML",
        help="the grid to run (leave out to continue the sweep recorded in ROOT/sweep.toml)",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler, e.g. tcp://host:8786")
    p.add_argument(
        "--workers", type=int, metavar="N", help="local worker processes (default: up to 4)"
    )
    p.add_argument("--max-cost", type=float, metavar="X", help="a budget for the whole sweep")
    p.add_argument("--max-tokens", type=int, metavar="N", help="a token budget for the sweep")
    p = command(
        "sweep-status",
        "show a sweep's runs: state, progress, tokens, cost",
        "  novelkit sweep-status sweeps/temps --json\n",
    )
    p.add_argument("root", metavar="ROOT", help="the sweep's folder (holds sweep.toml)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")


def run(args: argparse.Namespace) -> int:
    if args.command == "sweep-status":
        return _status(args)
    return _sweep(args)


def _status(args: argparse.Namespace) -> int:
    from ._sweep import read_sweep_status

    status = read_sweep_status(Path(args.root).resolve())
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
    else:
        print(status.table())
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    from ._errors import ConfigError
    from ._sweep import load_grid_file, sweep
    from ._sweep._record import load_definition

    root = Path(args.root)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give at least 1 worker")
    if args.scheduler and args.workers:
        raise ConfigError("--workers starts a local cluster; leave it out with --scheduler")
    settings: dict[str, Any] = {}
    if args.grid is not None:
        base, grid, settings = load_grid_file(args.grid)
        runs: Any = grid
    else:
        recorded = load_definition(root.resolve())
        base = recorded["base"]
        runs = [entry.get("params", {}) for entry in recorded["runs"].values()]
    max_cost = args.max_cost if args.max_cost is not None else settings.get("max_cost")
    max_tokens = args.max_tokens if args.max_tokens is not None else settings.get("max_tokens")
    handle = sweep(
        root,
        runs,
        base,
        client=args.scheduler,
        workers=args.workers,
        max_cost=max_cost,
        max_tokens=max_tokens,
    )
    try:
        return _follow(handle)
    finally:
        handle.close()


def _follow(handle: Any) -> int:
    from ._errors import JobStateError
    from ._status import JobState

    presses = {"count": 0}

    def on_sigint(signum: int, frame: Any) -> None:
        presses["count"] += 1
        try:
            if presses["count"] == 1:
                sys.stderr.write(
                    "\npausing the sweep: in-flight calls finish (Ctrl-C again to cancel)\n"
                )
                handle.pause()
            else:
                sys.stderr.write("\ncancelling the sweep\n")
                handle.cancel()
        except JobStateError:
            pass

    previous = signal.signal(signal.SIGINT, on_sigint)
    progress = _Progress(sys.stderr)
    try:
        while True:
            state = handle.wait(timeout=0.5)
            progress.update(handle.status)
            if not state.active:
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    status = handle.status
    sys.stderr.write(f"sweep {state.value}: {status.message}\n")
    if state is JobState.SUCCEEDED:
        return EXIT_OK
    if state is JobState.FAILED:
        for run in status.runs:
            if run.error:
                sys.stderr.write(f"  {run.name}: {run.error}\n")
        return EXIT_FAILED
    sys.stderr.write(f"continue with: novelkit sweep {status.root}\n")
    return EXIT_INTERRUPTED


class _Progress:
    """The sweep's table on a terminal (redrawn in place), one line per change otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.drawn = 0
        self.last = ""

    def update(self, status: Any) -> None:
        if self.tty:
            text = status.table(limit=20)
            if self.drawn:
                self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.stream.write(text + "\n")
            self.drawn = text.count("\n") + 1
        else:
            counts = ", ".join(f"{n} {s}" for s, n in sorted(status.counts.items()))
            line = f"[{status.progress:>4.0%}] {counts}; {status.tokens:,} tokens, cost {status.cost:.4f}"
            if line != self.last:
                self.last = line
                self.stream.write(line + "\n")
        self.stream.flush()


def control(args: argparse.Namespace) -> int:
    """``novelkit pause|resume|cancel ROOT`` on a sweep's folder."""
    from ._sweep import control_sweep

    action = args.command
    if action == "pause" and getattr(args, "now", False):
        action = "pause-now"
    result = control_sweep(Path(args.dir), action)
    print(json.dumps(result.to_dict()))
    return EXIT_OK
