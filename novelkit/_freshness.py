"""Freshness: which units are done and still valid, and what each stage's state is.

A unit is fresh when it is done and the fingerprint of what it read (its input files, stage
version, model and parameters) is the one it was made from; an edit upstream, by hand or from
Python, makes it stale. :class:`Project` is built on this.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _artefacts as a
from ._artefacts import StagedFile
from ._errors import ArtefactError, PipelineError
from ._pipeline import SINGLE, Pipeline, Stage, StageState, unit_name
from ._status import StageStatus
from ._store import Store

if TYPE_CHECKING:
    from ._config import NovelConfig
    from ._job import Job

__all__ = ["Freshness", "StageFigures"]

# per stage (state, done, total); per stage its ledger row; when each running stage began
StageFigures = tuple[
    dict[str, tuple[StageState, int, int]], dict[str, dict[str, Any]], dict[str, float]
]


class Freshness:
    """Fingerprints, fresh and pending units, stage states: the part of a project that
    decides what a run must (re)do. Its caches follow the files (inode, mtime, size)."""

    root: Path
    config: NovelConfig
    pipeline: Pipeline
    store: Store
    unsaved: dict[Path, StagedFile]  # a running job's outputs on their way to disk
    paths: a.Paths  # under artefacts/
    _job: Job | None
    _hash_cache: dict[Path, tuple[int, int, str]]
    _numbers: tuple[object, list[int]]  # the outline's chapters, by version

    def artefact_path(self, relative: str, variant: str = "") -> Path:
        """Where an artefact lives: under artefacts/, or under artefacts/variants/NAME/."""
        if variant:
            return self.root / "artefacts" / "variants" / variant / relative
        return self.paths[relative]

    def chapter_numbers(self) -> list[int]:
        try:
            outline = self.pipeline.get("chapters")
        except PipelineError:
            return list(range(1, self.config.chapters + 1))
        path = self.paths[outline.output_paths(SINGLE)[0]]
        if outline.model is a.Outline:
            staged = self.unsaved.get(path)  # a running job's new outline counts before it is saved
            try:
                key: object = staged.digest if staged else a.file_version(path)
            except FileNotFoundError:
                key = None
            if key is not None:
                if self._numbers[0] == key:  # asked for every unit of every stage: parse once
                    return list(self._numbers[1])
                try:
                    data = staged.data if staged else path.read_bytes()
                    parsed: a.Outline = a.parse(a.Outline, path, data)
                    numbers = [plan.number for plan in parsed.chapters]
                    self._numbers = (key, numbers)
                    return list(numbers)
                except (ArtefactError, FileNotFoundError):
                    pass
        return list(range(1, self.config.chapters + 1))

    def units_of(self, stage: Stage) -> list[str]:
        if not stage.per_chapter:
            return [SINGLE]
        return [unit_name(n) for n in self.chapter_numbers()]

    def _file_hash(self, path: Path) -> str:
        staged = self.unsaved.get(path)
        if staged is not None:
            return staged.digest
        try:
            st = path.stat()
        except FileNotFoundError:
            return "missing"
        cached = self._hash_cache.get(path)
        if cached and cached[0] == st.st_mtime_ns and cached[1] == st.st_size:
            return cached[2]
        digest = a.sha256(path.read_bytes())
        self._hash_cache[path] = (st.st_mtime_ns, st.st_size, digest)
        return digest

    def input_paths(self, stage: Stage, unit: str) -> list[str]:
        paths: list[str] = []
        for name in stage.inputs:
            source = self.pipeline.get(name)
            if source.per_chapter and stage.per_chapter:
                paths += source.output_paths(unit)
            else:
                for source_unit in self.units_of(source):
                    paths += source.output_paths(source_unit)
        return paths + stage.extra_inputs(unit)

    def fingerprint(
        self, stage: Stage, unit: str, variant: str = "", params: dict[str, Any] | None = None
    ) -> str:
        """Hash of what this unit's output depends on: inputs, stage version, model and parameters."""
        override = self.config.stage_override(stage.name)
        params = params or {}
        blob = {
            "stage": stage.name,
            "version": stage.version,
            "variant": variant,
            "model": params.get("model") or override.model or self.config.model,
            "temperature": _first(
                params.get("temperature"), override.temperature, self.config.temperature
            ),
            "max_output_tokens": override.max_output_tokens or self.config.max_output_tokens,
            "prompt": params.get("prompt") or override.prompt,
            "seed": _first(params.get("seed"), self.config.seed),
            "config": {key: getattr(self.config, key) for key in stage.config_keys},
            "inputs": {p: self._file_hash(self.paths[p]) for p in self.input_paths(stage, unit)},
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()

    def _unit_fresh(
        self,
        stage: Stage,
        unit: str,
        record: dict[str, Any] | None,
        variant: str = "",
        params: dict[str, Any] | None = None,
    ) -> bool:
        if record is None or record["state"] != "done":
            return False
        if not all(self.artefact_path(p, variant).exists() for p in stage.output_paths(unit)):
            return False
        return bool(record["fingerprint"]) and record["fingerprint"] == self.fingerprint(
            stage, unit, variant, params
        )

    def _needs_run(
        self, stage: Stage, unit: str, variant: str = "", params: dict[str, Any] | None = None
    ) -> bool:
        return not self._unit_fresh(
            stage, unit, self.store.unit(stage.name, unit, variant), variant, params
        )

    def _pending_units(self, stage: Stage) -> list[str]:
        records = self.store.units(stage.name)
        return [u for u in self.units_of(stage) if not self._unit_fresh(stage, u, records.get(u))]

    def _select_units(self, stage: Stage, chapters: list[int] | None) -> list[str]:
        if chapters is None:
            return self.units_of(stage)
        if not stage.per_chapter:
            per_chapter = [s.name for s in self.pipeline if s.per_chapter]
            raise PipelineError(
                f"stage {stage.name!r} has a single unit; chapters= applies only to per-chapter "
                f"stages ({', '.join(per_chapter)})"
            )
        valid = self.chapter_numbers()
        wrong = [c for c in chapters if c not in valid]
        if wrong or not chapters:
            raise PipelineError(
                f"chapters {wrong or chapters} are not in the outline; valid chapters are "
                f"{valid[0]}–{valid[-1]}"
            )
        return [unit_name(c) for c in sorted(set(chapters))]

    def stage_states(self) -> dict[str, tuple[StageState, int, int]]:
        """Per stage: state, units done and fresh, units in all (computed from store and files).

        Cached until the next persisted event (every change of state writes one).
        """
        job = self._job
        running = (
            job._current_stage if job is not None and job._local and job._state.active else None
        )
        key = (
            self.store.last_seq(),
            running,
            len(self.pipeline),
            id(self.config),
            self._artefacts_signature(),
        )
        if self._states_key == key and self._states is not None:
            return self._states
        self._states = self._compute_stage_states(running)
        self._states_key = key
        return self._states

    _states_key: tuple[int, str | None, int, int, tuple[int, int]] | None = None

    def _artefacts_signature(self) -> tuple[int, int]:
        """Newest modification time and file count under artefacts/: a hand edit changes it."""
        newest, count = 0, 0
        stack = [self.root / "artefacts"]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    count += 1
                    newest = max(newest, entry.stat().st_mtime_ns)
        return newest, count

    _states: dict[str, tuple[StageState, int, int]] | None = None

    def _compute_stage_states(self, running: str | None) -> dict[str, tuple[StageState, int, int]]:
        out: dict[str, tuple[StageState, int, int]] = {}
        records = self.store.all_units()
        cancelled = self._cancelled_stages()
        for stage in self.pipeline:
            units = self.units_of(stage)
            recs = records.get(stage.name, {})
            done = [u for u in units if recs.get(u, {}).get("state") == "done"]
            fresh = [u for u in done if self._unit_fresh(stage, u, recs.get(u))]
            upstream_stale = any(out[i][0] is StageState.STALE for i in stage.inputs if i in out)
            if stage.name == running:
                state = StageState.RUNNING
            elif any(recs.get(u, {}).get("state") == "failed" for u in units):
                state = StageState.FAILED
            elif done and (len(fresh) < len(done) or upstream_stale):
                state = StageState.STALE
            elif stage.name in cancelled and len(fresh) < len(units):
                state = StageState.CANCELLED
            elif len(fresh) == len(units):
                state = StageState.SUCCEEDED
            else:
                state = StageState.PENDING
            out[stage.name] = (state, len(fresh), len(units))
        return out

    @property
    def stages(self) -> list[StageStatus]:
        """The pipeline's stages with their number, name, description and state."""
        return list(self._stage_statuses())

    def _stage_figures(self, job: Job | None) -> StageFigures:
        """Per stage: (state, done, total), the ledger rows, and when each running stage began.

        While ``job`` runs here it keeps them in memory, updated on its own thread: they are
        copied in one step each (a Python loop over a dict the run adds to could see it change
        size mid-way), and taken from one reading of ``job._live``.
        """
        live = job._live if job is not None and job._local else None  # read once
        if job is None or live is None:
            return self.stage_states(), self.store.ledger(), {}
        states = {name: (row[0], row[1], row[2]) for name, row in tuple(live.items())}
        ledger = {
            name: {"prompt_tokens": row[0], "completion_tokens": row[1], "cost": row[2]}
            for name, row in tuple(job._counters.by_stage.items())
        }
        return states, ledger, job._stage_started

    def _stage_statuses(self, figures: StageFigures | None = None) -> tuple[StageStatus, ...]:
        states, ledger, started = figures or self._stage_figures(self._job)
        timings = self._stage_timings()
        now = time.time()
        statuses = []
        for number, stage in enumerate(self.pipeline, 1):
            state, done, total = states[stage.name]
            row = ledger.get(stage.name, {})
            tokens = int((row.get("prompt_tokens") or 0) + (row.get("completion_tokens") or 0))
            if state is StageState.RUNNING and stage.name in started:
                elapsed = now - started[stage.name]
            else:
                elapsed = timings.get(stage.name, 0.0)
            statuses.append(
                StageStatus(
                    number,
                    stage.name,
                    stage.description,
                    state,
                    done,
                    total,
                    tokens,
                    float(row.get("cost") or 0.0),
                    round(elapsed, 3),
                )
            )
        return tuple(statuses)

    def _stage_timings(self) -> dict[str, float]:
        """How long each stage's last run took, from the persisted stage events (cached by seq)."""
        seq = self.store.last_seq()
        if self._timings_key == seq:
            return self._timings
        rows = (
            self.store._reader()
            .execute("SELECT ts, data FROM events WHERE type = 'stage' ORDER BY seq")
            .fetchall()
        )
        began: dict[str, float] = {}
        took: dict[str, float] = {}
        for ts, data in rows:
            event = json.loads(data)
            if event["state"] == "running":
                began[event["stage"]] = ts
            elif event["stage"] in began:
                took[event["stage"]] = ts - began.pop(event["stage"])
        self._timings, self._timings_key = took, seq
        return took

    _timings_key: int | None = None
    _timings: dict[str, float] = {}

    def _mark_cancelled(self, stage: str) -> None:
        with self.store.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", (f"cancelled:{stage}",))

    def _clear_cancelled(self, stage: str) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (f"cancelled:{stage}",))

    def _cancelled_stages(self) -> set[str]:
        rows = (
            self.store._reader()
            .execute("SELECT key FROM meta WHERE key LIKE 'cancelled:%'")
            .fetchall()
        )
        return {r[0].split(":", 1)[1] for r in rows}


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None
