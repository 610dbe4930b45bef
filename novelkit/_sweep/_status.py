"""What a sweep reports: one row per run and the sweep's own state, from any process.

The figures come from files under ROOT/.sweep (see _record.py), so the driving process, a
sidecar and ``novelkit sweep-status`` all read the same thing.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._status import JobState, bar
from ._record import STATE_DIR, load_definition, read_json, writer_alive

__all__ = ["RunStatus", "SweepStatus", "RunFiles", "read_sweep_status"]


@dataclass(frozen=True)
class RunStatus:
    """One run: ``state`` is None until a worker has started it."""

    name: str
    params: dict[str, Any]
    state: JobState | None
    progress: float = 0.0
    tokens: int = 0
    cost: float = 0.0
    elapsed: float = 0.0
    message: str = ""
    error: str | None = None
    worker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value if self.state is not None else "pending"
        return data


@dataclass(frozen=True)
class SweepStatus:
    """The whole sweep: its state, a row per run, and the sums."""

    root: str
    state: JobState | None
    message: str
    runs: tuple[RunStatus, ...]
    max_tokens: int | None = None
    max_cost: float | None = None
    updated: float = field(default_factory=time.time)

    @property
    def counts(self) -> dict[str, int]:
        """Runs per state ("pending" for runs not started yet)."""
        return dict(Counter(r.state.value if r.state is not None else "pending" for r in self.runs))

    @property
    def progress(self) -> float:
        return sum(r.progress for r in self.runs) / len(self.runs) if self.runs else 0.0

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.runs)

    @property
    def cost(self) -> float:
        return sum(r.cost for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "state": self.state.value if self.state is not None else None,
            "message": self.message,
            "progress": round(self.progress, 4),
            "tokens": self.tokens,
            "cost": self.cost,
            "counts": self.counts,
            "max_tokens": self.max_tokens,
            "max_cost": self.max_cost,
            "runs": [r.to_dict() for r in self.runs],
        }

    def table(self, limit: int = 50) -> str:
        """Plain-text view for the CLI and text reprs."""
        state = self.state.value if self.state is not None else "not started"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items()))
        lines = [
            f"sweep {self.root}: {state} {bar(self.progress)} {self.progress:.0%}  "
            f"{self.tokens:,} tokens  cost {self.cost:.4f}",
            f"  {len(self.runs)} runs: {counts}" + (f"  — {self.message}" if self.message else ""),
        ]
        width = max((len(r.name) for r in self.runs[:limit]), default=4)
        for run in self.runs[:limit]:
            rstate = run.state.value if run.state is not None else "pending"
            lines.append(
                f"  {run.name:<{width}}  {rstate:<11} {run.progress:>4.0%}  "
                f"{run.tokens:>9,} tok  {run.cost:>8.4f}  {run.elapsed:>7.1f}s"
                + (f"  {run.error}" if run.error else "")
            )
        if len(self.runs) > limit:
            lines.append(f"  … and {len(self.runs) - limit} more (--json shows all)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def run_from(name: str, params: dict[str, Any], record: dict[str, Any] | None) -> RunStatus:
    if not record:
        return RunStatus(name, params, None)
    raw = record.get("state")
    return RunStatus(
        name=name,
        params=params,
        state=JobState(raw) if raw else None,
        progress=float(record.get("progress") or 0.0),
        tokens=int(record.get("tokens") or 0),
        cost=float(record.get("cost") or 0.0),
        elapsed=float(record.get("elapsed") or 0.0),
        message=str(record.get("message") or ""),
        error=record.get("error"),
        worker=record.get("worker"),
    )


class RunFiles:
    """The runs' figure files, re-read only when they changed (cheap with 1,000 runs)."""

    def __init__(self, root: Path) -> None:
        self.folder = root / STATE_DIR / "runs"
        self.records: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, int] = {}

    def scan(self) -> bool:
        """Re-read the changed files; True when any changed."""
        changed = False
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return False
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                stamp = entry.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            name = entry.name[: -len(".json")]
            if self._seen.get(name) == stamp:
                continue
            record = read_json(Path(entry.path))
            if isinstance(record, dict):
                self._seen[name] = stamp
                self.records[name] = record
                changed = True
        return changed


def read_sweep_status(root: Path, files: RunFiles | None = None) -> SweepStatus:
    """The sweep in ``root`` as any process sees it (a driver that is gone shows
    ``interrupted``); pass the same ``files`` again to re-read only the runs that changed."""
    definition = load_definition(root)
    state_info = read_json(root / STATE_DIR / "state.json") or {}
    files = files if files is not None else RunFiles(root)
    files.scan()
    state: JobState | None = None
    message = str(state_info.get("message") or "")
    raw = state_info.get("state")
    if raw:
        state = JobState(raw)
        if state.active and not writer_alive(state_info):
            state, message = JobState.INTERRUPTED, "the process driving the sweep is gone"
    runs = []
    for name, entry in definition["runs"].items():
        record = files.records.get(name)
        if (
            record
            and state is JobState.INTERRUPTED
            and record.get("state") in ("running", "queued")
        ):
            record = {**record, "state": JobState.INTERRUPTED.value}
        runs.append(run_from(name, dict(entry.get("params", {})), record))
    return SweepStatus(
        root=str(root),
        state=state,
        message=message,
        runs=tuple(runs),
        max_tokens=state_info.get("max_tokens"),
        max_cost=state_info.get("max_cost"),
    )
