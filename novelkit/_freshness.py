"""Freshness: which units are done and still valid, and what each stage's state is.

A unit is fresh when it is done and the fingerprint of what it read (its input files, stage
version, model and parameters) is the one it was made from; an edit upstream, by hand or from
Python, makes it stale. :class:`ArtefactFiles` knows the artefact files (their paths, their
hashes, the outputs a run has staged but not yet written); :class:`Freshness` decides from them
and the store what a run must (re)do. A :class:`~novelkit._project.Project` holds one of each.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from . import _artefacts as a
from ._artefacts import StagedFile
from ._errors import ArtefactError, PipelineError
from ._pipeline import SINGLE, Pipeline, Stage, StageState, unit_name
from ._status import StageStatus
from ._store import Store

if TYPE_CHECKING:
    from ._config import NovelConfig

__all__ = ["KEPT", "ArtefactFiles", "Freshness", "StageFigures"]

# a unit whose fingerprint starts with this counts as fresh whatever its inputs: an imported
# chapter, an artefact the user gave, or a chapter extend() froze (README: Bring your own story)
KEPT = "kept:"

# per stage (state, done, total); per stage its ledger row; when each running stage began
StageFigures = tuple[
    dict[str, tuple[StageState, int, int]], dict[str, dict[str, Any]], dict[str, float]
]


class ArtefactFiles:
    """The files under ``artefacts/``: their paths, their hashes (cached by mtime and size),
    the outputs a running job has staged but not yet written, and the parsed objects units
    share (see ``UnitContext.read(..., shared=True)``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = a.Paths(root / "artefacts")  # artefact paths, joined once each
        # outputs a running job has produced but not yet saved: dependants read them from here
        self.unsaved: dict[Path, StagedFile] = {}
        self.parsed: a.SharedReads = {}
        self._hash_cache: dict[Path, tuple[int, int, str]] = {}

    def path(self, relative: str, variant: str = "") -> Path:
        """Where an artefact lives: under artefacts/, or under artefacts/variants/NAME/."""
        if variant:
            return self.root / "artefacts" / "variants" / variant / relative
        return self.paths[relative]

    def hash(self, path: Path) -> str:
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

    def stage(self, outputs: Mapping[str, BaseModel | str], variant: str = "") -> list[StagedFile]:
        """Serialise a unit's outputs and make them readable before they are on disk.

        A dependent unit may start from these bytes while :meth:`flush` saves them.
        """
        staged: list[StagedFile] = []
        for relative, value in outputs.items():
            data = value.encode("utf-8") if isinstance(value, str) else a.serialize(value)
            path = self.path(relative, variant)
            file = StagedFile(relative, path, data, a.sha256(data))
            staged.append(file)
            if isinstance(value, BaseModel) and type(value) in a.JSON_SCHEMAS:
                # novelkit's own JSON artefacts read back equal to what was written (a Markdown
                # chapter, or a user's subclass with excluded fields or serializers, need not),
                # so a shared read can have this object without a parse
                self.parsed[path] = ((type(value), file.digest), value)
        for file in staged:
            self.unsaved[file.path] = file
        return staged

    def flush(self, staged: list[StagedFile]) -> dict[str, str]:
        """Write staged outputs atomically; their hashes by relative path."""
        try:
            folders: set[Path] = set()
            for file in staged:
                a.write_atomic(file.path, file.data, sync_dir=False)
                st = file.path.stat()
                self._hash_cache[file.path] = (st.st_mtime_ns, st.st_size, file.digest)
                shared = self.parsed.get(file.path)
                if shared is not None and shared[0][1] == file.digest:
                    # once on disk a shared read knows the file by its version, not its digest
                    self.parsed[file.path] = ((shared[0][0], a.stat_version(st)), shared[1])
                folders.add(file.path.parent)
            for folder in folders:  # one directory fsync per folder makes the renames durable
                a.fsync_dir(folder)
        finally:
            self.discard(staged)  # on disk now, or never: readers go to the file
        return {file.relative: file.digest for file in staged}

    def discard(self, staged: list[StagedFile]) -> None:
        for file in staged:
            if self.unsaved.get(file.path) is file:
                del self.unsaved[file.path]

    def write(self, outputs: Mapping[str, BaseModel | str], variant: str = "") -> dict[str, str]:
        return self.flush(self.stage(outputs, variant))


class Freshness:
    """Fingerprints, fresh and pending units, stage states: what decides what a run must
    (re)do. Its caches follow the files (inode, mtime, size) and the store's last event.
    ``config`` is replaced when the project's settings change."""

    def __init__(
        self, files: ArtefactFiles, pipeline: Pipeline, store: Store, config: NovelConfig
    ) -> None:
        self.files = files
        self.pipeline = pipeline
        self.store = store
        self.config = config
        self._numbers: tuple[object, list[int]] = (None, [])  # the outline's chapters, by version
        self._states_key: tuple[int, str | None, int, int, tuple[int, int]] | None = None
        self._states: dict[str, tuple[StageState, int, int]] | None = None
        self._timings_key: int | None = None
        self._timings: dict[str, float] = {}

    def chapter_numbers(self) -> list[int]:
        try:
            outline = self.pipeline.get("chapters")
        except PipelineError:
            return list(range(1, self.config.chapters + 1))
        path = self.files.paths[outline.output_paths(SINGLE)[0]]
        if outline.model is a.Outline:
            # a running job's new outline counts before it is saved
            staged = self.files.unsaved.get(path)
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
        paths = self.files.paths
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
            "inputs": {p: self.files.hash(paths[p]) for p in self.input_paths(stage, unit)},
        }
        optional = {p: self.files.hash(paths[p]) for p in stage.optional_inputs}
        present = {p: h for p, h in optional.items() if h != "missing"}
        if present:  # absent: the fingerprint stays what it was before optional inputs existed
            blob["optional"] = present
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()

    def unit_fresh(
        self,
        stage: Stage,
        unit: str,
        record: dict[str, Any] | None,
        variant: str = "",
        params: dict[str, Any] | None = None,
    ) -> bool:
        if record is None or record["state"] != "done":
            return False
        if not all(self.files.path(p, variant).exists() for p in stage.output_paths(unit)):
            return False
        if record["fingerprint"].startswith(KEPT):
            return True  # imported, given or frozen by extend(): redone only when forced
        return bool(record["fingerprint"]) and record["fingerprint"] == self.fingerprint(
            stage, unit, variant, params
        )

    def needs_run(
        self, stage: Stage, unit: str, variant: str = "", params: dict[str, Any] | None = None
    ) -> bool:
        return not self.unit_fresh(
            stage, unit, self.store.unit(stage.name, unit, variant), variant, params
        )

    def pending_units(self, stage: Stage) -> list[str]:
        records = self.store.units(stage.name)
        return [u for u in self.units_of(stage) if not self.unit_fresh(stage, u, records.get(u))]

    def select_units(self, stage: Stage, chapters: list[int] | None) -> list[str]:
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

    def stage_states(self, running: str | None) -> dict[str, tuple[StageState, int, int]]:
        """Per stage: state, units done and fresh, units in all (computed from store and files);
        ``running`` is the stage a job of this process is running now, if any.

        Cached until the next persisted event (every change of state writes one).
        """
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

    def _artefacts_signature(self) -> tuple[int, int]:
        """Newest modification time and file count under artefacts/: a hand edit changes it."""
        newest, count = 0, 0
        stack = [self.files.paths.base]
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

    def _compute_stage_states(self, running: str | None) -> dict[str, tuple[StageState, int, int]]:
        out: dict[str, tuple[StageState, int, int]] = {}
        records = self.store.all_units()
        cancelled = self.store.cancelled_stages()
        for stage in self.pipeline:
            units = self.units_of(stage)
            recs = records.get(stage.name, {})
            done = [u for u in units if recs.get(u, {}).get("state") == "done"]
            fresh = [u for u in done if self.unit_fresh(stage, u, recs.get(u))]
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

    def stage_statuses(self, figures: StageFigures) -> tuple[StageStatus, ...]:
        """The stage rows a status shows, from one reading of ``figures``."""
        states, ledger, started = figures
        timings = self.stage_timings()
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

    def stage_timings(self) -> dict[str, float]:
        """How long each stage's last run took, from the persisted stage events (cached by seq)."""
        seq = self.store.last_seq()
        if self._timings_key == seq:
            return self._timings
        began: dict[str, float] = {}
        took: dict[str, float] = {}
        for ts, event in self.store.stage_events():
            if event["state"] == "running":
                began[event["stage"]] = ts
            elif event["stage"] in began:
                took[event["stage"]] = ts - began.pop(event["stage"])
        self._timings, self._timings_key = took, seq
        return took


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None
