"""Project: a folder with novel.toml, artefacts/, exports/ and .novelkit/ (docs/architecture.md)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from . import _artefacts as a
from ._config import NovelConfig, load_config, read_config_text, render_toml, validate_config
from ._errors import (
    ArtefactError,
    ExportError,
    JobStateError,
    PipelineError,
    ProjectError,
    ProjectLockedError,
)
from ._events import EventBus, Subscription
from ._freshness import ArtefactFiles, Freshness, StageFigures
from ._job import Job
from ._pipeline import SINGLE, Pipeline, Stage, StageState, chapter_of, unit_name
from ._prices import check_prices
from ._status import JobState, JobStatus, LiveSnapshot, StageStatus
from ._store import ProjectLock, Store, Writer
from .stages import default_stages

if TYPE_CHECKING:
    from ._estimate import Estimate
    from ._events import Callback
    from .llm.base import Backend
    from .report import Scorecard
    from .report.scorecard import JudgeScores

__all__ = ["Artefacts", "Project", "new_project", "open_project"]

CONFIG = "novel.toml"
REPORT = 1  # the assemble stage's second output: report.json


def new_project(
    path: str | os.PathLike[str],
    premise: str,
    *,
    backend_instance: Backend | None = None,
    sequel_of: Any = None,
    cast: Any = None,
    outline: Any = None,
    world: Any = None,
    style_samples: Any = None,
    **config: Any,
) -> Project:
    """Create a project folder and return it. Refuses to overwrite an existing project.

    Bring your own parts: ``cast=`` (characters.json, TOML or a Markdown list), ``outline=``
    (one line per chapter, or headings with summaries), ``world=`` (a document), each used as
    given; ``style_samples=[...]`` gives the prose a voice; ``sequel_of=`` starts book two from
    another project's cast, world, summary and open threads.
    """
    root = Path(path)
    if (root / CONFIG).exists():
        raise ProjectError(
            f"{root} already holds a project; open it with nk.open_project({str(root)!r})"
        )
    given = None
    parts = (sequel_of, cast, outline, world, style_samples)
    if any(part is not None for part in parts):
        from .imports._given import prepare

        config = dict(config)
        given = prepare(  # everything is read and checked before the folder is made
            config,
            cast=cast,
            outline=outline,
            world=world,
            style_samples=style_samples,
            sequel_of=sequel_of,
        )
    settings = validate_config({"premise": premise, **config}, where="new_project()")
    if settings.backend == "offline" and backend_instance is None:
        from .llm import make_backend

        make_backend(settings, root)  # bad backend_options fail before anything is written
    try:
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("artefacts", "exports", ".novelkit"):
            (root / sub).mkdir(exist_ok=True)
        a.write_atomic(root / CONFIG, settings.to_toml().encode("utf-8"))
    except PermissionError:
        raise ProjectError(
            f"cannot write to {root}: permission denied; choose a folder you can write"
        ) from None
    except OSError as exc:
        raise ProjectError(f"cannot create the project at {root}: {exc.strerror or exc}") from None
    project = Project(root, settings, backend=backend_instance)
    if given is not None:
        given.apply(project)
    return project


def _store_lost(root: Path) -> str:
    """'missing' or 'empty' when the store is gone but artefacts exist; '' otherwise."""
    db = root / ".novelkit" / "state.db"
    try:
        state = "empty" if db.stat().st_size == 0 else ""
    except FileNotFoundError:
        state = "missing"
    if not state:
        return ""
    artefacts = root / "artefacts"
    try:
        found = any(p.is_file() and not p.name.startswith(".") for p in artefacts.rglob("*"))
    except OSError:
        found = False
    return state if found else ""


def open_project(
    path: str | os.PathLike[str],
    *,
    backend_instance: Backend | None = None,
    rebuild_store: bool = False,
) -> Project:
    """Open an existing project folder; a crashed job shows as ``interrupted``."""
    root = Path(path)
    if not root.is_dir():
        raise ProjectError(
            f"{root} is not a folder; create a project first (novelkit new DIR --premise ... or nk.new_project)"
        )
    if not (root / CONFIG).exists():
        raise ProjectError(f"{root} has no {CONFIG}; it is not a novelkit project")
    return Project(
        root, load_config(root / CONFIG), backend=backend_instance, rebuild_store=rebuild_store
    )


class Project:
    """A novel in a folder: its config, pipeline, artefacts, jobs and exports.

    It holds the :class:`~novelkit._store.Store`, the artefact files
    (:class:`~novelkit._freshness.ArtefactFiles`), what is fresh
    (:class:`~novelkit._freshness.Freshness`), the writer lock
    (:class:`~novelkit._store.Writer`) and its current or last :class:`~novelkit.Job`.
    """

    def __init__(
        self,
        root: Path,
        config: NovelConfig,
        *,
        backend: Backend | None = None,
        rebuild_store: bool = False,
    ) -> None:
        self.root = root.resolve()
        self.config = config
        self.pipeline = Pipeline(default_stages())
        self.bus = EventBus()
        state_dir = self.root / ".novelkit"
        if not os.access(self.root, os.W_OK):
            raise ProjectError(
                f"cannot write to {self.root}: permission denied; fix the folder's permissions"
            )
        state_dir.mkdir(exist_ok=True)
        lost = _store_lost(self.root)
        if lost and not rebuild_store:
            raise ProjectError(
                f"{self.root} has artefacts but its store .novelkit/state.db is {lost}, so "
                "nothing records what was paid for; running now would redo every call and "
                "overwrite your files. Adopt the artefacts as they are (edited work, every file "
                "kept) with: novelkit run DIR --rebuild-store, or "
                "nk.open_project(DIR, rebuild_store=True)"
            )
        self.store = Store(state_dir / "state.db", self.bus)
        self._guard = threading.RLock()
        self.writer = Writer(ProjectLock(state_dir / "lock"), self.store, self._guard)
        self.files = ArtefactFiles(self.root)
        self.freshness = Freshness(self.files, self.pipeline, self.store, config)
        self.paths = self.files.paths  # artefact paths, joined once each
        self.unsaved = self.files.unsaved  # outputs a running job has staged, not yet saved
        self._backend = backend
        self._job: Job | None = None
        self.problems: list[str] = []
        self._recover()
        if lost:
            self._adopt_artefacts()

    def __repr__(self) -> str:
        return f"<Project {self.root.name!r} {self.config.chapters} chapters, backend={self.config.backend}>"

    # -- opening ------------------------------------------------------------------------------

    def _recover(self) -> None:
        """After a crash: clean temp files, mark a dead job interrupted, accept hand edits."""
        # one exclusive hold from "nobody is writing" to the marks: a process that takes the
        # lock and starts a job meanwhile waits for it, and its job is never marked
        with self.writer.hold_if_free() as free:
            if not free:
                return  # another process is writing; it owns recovery
            a.clean_temp_files(self.root / "artefacts")
            a.clean_temp_files(self.root / "exports")
            try:
                with self.store.transaction():  # one commit for all the marks
                    last = self.store.last_job()
                    if last is not None and JobState(last["state"]).active:
                        self.mark_interrupted(last["id"])
                    for stage_name, units in self.store.all_units().items():
                        for unit, record in units.items():
                            if record["state"] == "running":
                                self.store.set_unit(stage_name, unit, "pending")
            except sqlite3.OperationalError as exc:
                if "disk is full" not in str(exc):
                    raise
                # reading still works: status shows the store as it is; a run marks it later
                self.problems.append(f"the disk holding {self.root} is full: free space and resume")
                return
        self._detect_edits()

    def _adopt_artefacts(self) -> None:
        """A rebuilt store: every unit whose output files all exist is done as it stands (like
        a hand edit), in pipeline order so each fingerprint reads adopted inputs; nothing is
        rewritten, and only units without files are left to run."""
        adopted = 0
        for stage in self.pipeline:
            for unit in self.freshness.units_of(stage):
                relatives = stage.output_paths(unit)
                paths = [self.paths[r] for r in relatives]
                if not paths or not all(p.is_file() for p in paths):
                    continue
                self.store.set_unit(
                    stage.name,
                    unit,
                    "done",
                    fingerprint=self.freshness.fingerprint(stage, unit),
                    outputs={r: self.files.hash(p) for r, p in zip(relatives, paths, strict=True)},
                )
                adopted += 1
        self.store.append_event(
            "log",
            {
                "level": "warning",
                "message": (
                    f"the store was rebuilt: {adopted} units adopted from the artefacts as they are"
                ),
            },
        )

    def mark_interrupted(self, job_id: str) -> bool:
        """Record that a job's process died; only a job the store still shows active changes."""
        try:
            return self.store.mark_interrupted(
                job_id,
                tuple(s.value for s in JobState if s.active),
                "interrupted: the process running it stopped; resume() continues",
            )
        except sqlite3.OperationalError as exc:
            if "disk is full" not in str(exc):
                raise
            return False  # nothing recorded; reads go on, and the next open marks it

    def _detect_edits(self) -> None:
        for stage in self.pipeline:
            if stage.name not in self.pipeline.names():
                continue
            for unit, record in self.store.units(stage.name).items():
                if record["state"] != "done":
                    continue
                changed = False
                outputs: dict[str, str] = dict(record["outputs"])
                for relative, recorded in record["outputs"].items():
                    path = self.paths[relative]
                    if not path.exists():
                        continue
                    current = self.files.hash(path)
                    if current == recorded:
                        continue
                    try:
                        self._parse_output(stage, relative, unit)
                    except ArtefactError as exc:
                        self.problems.append(str(exc))
                        continue
                    outputs[relative] = current
                    changed = True
                    self.store.append_event(
                        "artefact",
                        {"stage": stage.name, "unit": unit, "path": relative, "edited": True},
                    )
                if changed:
                    self.store.set_unit(stage.name, unit, "done", outputs=outputs)

    def _parse_output(self, stage: Stage, relative: str, unit: str) -> Any:
        path = self.paths[relative]
        data = path.read_bytes()
        primary = stage.output_paths(unit)[0]
        if relative == primary and stage.model is not None:
            return a.parse(stage.model, path, data, chapter_of(unit))
        if relative.endswith(".json"):
            try:
                return json.loads(data)
            except json.JSONDecodeError as exc:
                raise ArtefactError(f"{path} is not valid JSON: {exc}; fix or delete it") from None
        return data.decode("utf-8", errors="replace")

    # -- config ------------------------------------------------------------------------------

    def configure(self, **changes: Any) -> NovelConfig:
        """Change settings (validated) and save them to novel.toml."""
        current = self.config.model_dump(exclude_none=True)
        for key, value in changes.items():
            if key == "stages" and isinstance(value, dict):
                merged = dict(current.get("stages", {}))
                for name, override in value.items():
                    merged[name] = {**merged.get(name, {}), **override}
                current["stages"] = merged
            else:
                current[key] = value
        config = validate_config(current, where="configure()")
        for name in config.stages:
            self.pipeline.get(name)  # an override for a stage that does not exist is an error
        path = self.root / CONFIG
        previous = read_config_text(path) if path.exists() else None
        text = render_toml(config, previous, where=str(path))  # keeps the user's comments
        a.write_atomic(path, text.encode("utf-8"))
        self.config = config
        self.freshness.config = config
        self._backend = None
        return config

    def set_prompt(self, stage: str | int, prompt: str | None) -> None:
        """Override a stage's prompt for this project (``None`` restores the built-in one)."""
        name = self.pipeline.get(stage).name
        self.configure(stages={name: {"prompt": prompt}})

    # -- backend ------------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from .llm import make_backend

            self._backend = make_backend(self.config, self.root)
        return self._backend

    @backend.setter
    def backend(self, value: Backend) -> None:
        self._backend = value

    # -- jobs -----------------------------------------------------------------------------------

    @property
    def job(self) -> Job | None:
        """The current or last job (after a restart: the last one recorded, e.g. interrupted)."""
        if self._job is not None:
            return self._job
        with self._guard:  # a start() on another thread must not be replaced by the old row
            if self._job is None:
                row = self.store.last_job()
                if row is not None:
                    state = JobState(row["state"])
                    self._job = Job(
                        self,
                        row["id"],
                        row["spec"],
                        state,
                        local=not self.writer.held_elsewhere(),
                        message=row["message"],
                        error=row["error"],
                        started=row["created"],
                        finished=None if state.active else row["updated"],
                    )
            return self._job

    def _check_problems(self) -> None:
        self.problems = []
        self._detect_edits()
        if self.problems:
            raise ArtefactError(self.problems[0])

    def start(self) -> Job:
        """Run every missing or stale unit of the pipeline; returns at once with the Job.

        A paused or interrupted job is resumed rather than started afresh.
        """
        with self._guard:
            job = self.job
            if job is not None and job.state.active:
                return job
            self._check_problems()
            self._check_prices([stage.name for stage in self.pipeline])
            if (
                job is not None
                and job.spec.get("kind") == "all"
                and job.state in (JobState.PAUSED, JobState.INTERRUPTED, JobState.FAILED)
            ):
                job.resume()
                return job
            return self._new_job({"kind": "all"})

    def run_stage(
        self,
        stage: str | int,
        chapters: list[int] | None = None,
        *,
        force: bool = False,
        variant: str | None = None,
        **params: Any,
    ) -> Job:
        """Run one stage (or some chapters of it); returns at once with the Job.

        ``variant="warm"`` with ``temperature=``, ``seed=``, ``model=`` or ``prompt=`` writes
        the result beside the active artefact (see :meth:`variants` and :meth:`choose_variant`).
        """
        allowed = {"temperature", "seed", "model", "prompt"}
        unknown = set(params) - allowed
        if unknown:
            raise PipelineError(
                f"run_stage() got unknown parameters {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        if params and not variant:
            raise PipelineError(
                "parameters like temperature= or seed= need variant='name', so the "
                "active artefact is not replaced; choose it later with choose_variant()"
            )
        if variant is not None and not variant.replace("-", "").replace("_", "").isalnum():
            raise PipelineError(f"variant name {variant!r} must be letters, digits, '-' or '_'")
        with self._guard:
            target = self.pipeline.get(stage)
            job = self.job
            if job is not None and job.state.active:
                raise JobStateError(
                    f"a job is {job.state.value} on this project; pause or cancel it before running "
                    f"stage {target.name!r}",
                    state=job.state,
                    action="run_stage",
                )
            self._check_problems()
            self._check_prices([target.name], params.get("model"))
            units = self.freshness.select_units(target, chapters)
            self._check_inputs(target, units)
            return self._new_job(
                {
                    "kind": "stage",
                    "stage": target.name,
                    "chapters": chapters,
                    "force": force,
                    "variant": variant or "",
                    "params": params,
                }
            )

    def extend(self, chapters: int) -> Job:
        """Plan ``chapters`` more chapters after the last one and start writing them; the
        chapters so far (imported or written) stay byte for byte as they are.

            project.extend(chapters=3).wait()
        """
        from .imports._extend import extend

        return extend(self, chapters)

    def estimate(self) -> Estimate:
        """Predict the calls, tokens and cost of a whole run before paying for one.

        A dry run of this config on the offline backend in a temporary folder, priced with
        this project's prices; ``print(project.estimate())`` shows it per stage.
        """
        from ._estimate import estimate

        return estimate(self)

    def _check_prices(self, stages: list[str], model: str | None = None) -> None:
        """``max_cost`` with a paid model that has no price: refuse before any job exists."""
        if self.config.max_cost is None:
            return  # and the backend is built by the job, as before
        backend = self.backend
        fallback = getattr(backend, "model", None) or backend.name
        check_prices(self.config, backend.name, stages, model=model, fallback=fallback)

    def _check_inputs(self, stage: Stage, units: list[str]) -> None:
        for unit in units:
            for name in stage.inputs:
                source = self.pipeline.get(name)
                source_units = (
                    [unit] if source.per_chapter and stage.per_chapter else self.units_of(source)
                )
                missing = [
                    u for u in source_units if not self.paths[source.output_paths(u)[0]].exists()
                ]
                if missing:
                    which = "" if missing == [SINGLE] else f" (missing: {', '.join(missing[:6])})"
                    raise PipelineError(
                        f"stage {stage.name!r} needs stage {self.pipeline.number(source)} "
                        f"{source.name!r}, which has not run yet{which}; run "
                        f"project.run_stage({source.name!r}) or project.start() first"
                    )

    def _new_job(self, spec: dict[str, Any]) -> Job:
        with self._guard:
            claim = self.writer.take()  # before the job exists: a refused claim leaves no row
            try:
                job = Job.create(self, spec)
            except BaseException:
                self.writer.drop()
                raise
            self._job = job
            job.launch(claim)
            return job

    def release_writer(self, job: Job, claim: int) -> None:
        """The end of ``job``'s run under ``claim`` (from :meth:`Writer.claim`): the lock goes
        if that run is the latest and the job has stopped."""
        with self._guard:
            if self._job is job:
                self.writer.release(claim, not job.live.state.active)

    def subscribe(self, callback: Callback | None = None) -> Subscription:
        return self.bus.subscribe(callback)

    def events(self, since: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.store.events_since(since, limit)]

    def status(self) -> JobStatus:
        job = self.job
        return job.status if job is not None else self.status_of(None)

    def status_of(self, job: Job | None) -> JobStatus:
        """The status of ``job`` (this project's current or last job) as this process sees
        it: from one :meth:`Job.snapshot` of it, the store and the files."""
        # The run's thread changes memory first and then writes the event, and at its end it
        # clears the stage rows before it sets the final state. Reading in the reverse order
        # gives a status that never shows less than the events up to its last_seq and never
        # pairs a final state with a stage still running.
        last_seq = self.store.last_seq()
        if job is None:
            figures = self._stage_figures(None)
            stages, progress, (prompt, completion, cost) = self._summed(figures)
            return JobStatus(
                None,
                None,
                None,
                None,
                progress,
                "no job yet",
                None,
                prompt,
                completion,
                cost,
                stages,
                last_seq=last_seq,
                currency=self.config.currency,
            )
        live = job.snapshot()
        state, current = live.state, live.current
        # once the job has ended, the store is the truth and nothing of it is running: a stage
        # its run had begun is not shown running, even while a later job of the project runs it
        if state.active:
            figures = self._stage_figures(_figures(live))
        else:
            figures = (self.freshness.stage_states(None), self.store.ledger(), {})
        row = figures[0].get(current[0]) if current is not None else None
        if row is None or row[0] is not StageState.RUNNING:
            current = None  # its stage just ended (or is not shown begun): name no unit of it
        stages, progress, (prompt, completion, cost) = self._summed(figures)
        report = self.last_report() if not state.active else None
        return JobStatus(
            id=job.id,
            state=state,
            stage=current[0] if current else None,
            unit=current[1] if current else None,
            progress=progress,
            message=live.message,
            error=live.error,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=cost,
            stages=stages,
            preview=live.preview,
            preview_stage=live.preview_of[0] if live.preview_of else None,
            preview_unit=live.preview_of[1] if live.preview_of else None,
            retry=live.retry,
            elapsed=live.elapsed,
            last_seq=last_seq,
            extra={"report": report.headline()} if report else {},
            currency=self.config.currency,
        )

    def _summed(
        self, figures: StageFigures
    ) -> tuple[tuple[StageStatus, ...], float, tuple[int, int, float]]:
        """The stage rows, the progress, and the token and cost totals as the rows' sums (all
        from one reading)."""
        stages = self.freshness.stage_statuses(figures)
        total = sum(s.total for s in stages)
        progress = sum(s.done for s in stages) / total if total else 0.0
        rows = figures[1].values()
        prompt = sum(int(r.get("prompt_tokens") or 0) for r in rows)
        completion = sum(int(r.get("completion_tokens") or 0) for r in rows)
        cost = sum(float(r.get("cost") or 0.0) for r in rows)
        return stages, progress, (prompt, completion, cost)

    def _stage_figures(self, live: StageFigures | None) -> StageFigures:
        """Per stage: (state, done, total), the ledger rows, and when each running stage began:
        ``live``, a running job's own (one reading of them), or else from the store."""
        if live is not None:
            return live
        return self.stage_states(), self.store.ledger(), {}

    # -- what is fresh ----------------------------------------------------------------------------

    def artefact_path(self, relative: str, variant: str = "") -> Path:
        """Where an artefact lives: under artefacts/, or under artefacts/variants/NAME/."""
        return self.files.path(relative, variant)

    def chapter_numbers(self) -> list[int]:
        """The outline's chapter numbers (before there is an outline: 1 to ``chapters``)."""
        return self.freshness.chapter_numbers()

    def units_of(self, stage: Stage) -> list[str]:
        return self.freshness.units_of(stage)

    def input_paths(self, stage: Stage, unit: str) -> list[str]:
        return self.freshness.input_paths(stage, unit)

    def fingerprint(
        self, stage: Stage, unit: str, variant: str = "", params: dict[str, Any] | None = None
    ) -> str:
        """Hash of what this unit's output depends on: inputs, stage version, model and parameters."""
        return self.freshness.fingerprint(stage, unit, variant, params)

    def stage_states(self) -> dict[str, tuple[StageState, int, int]]:
        """Per stage: state, units done and fresh, units in all (computed from store and files)."""
        job = self._job
        return self.freshness.stage_states(job.running_stage() if job is not None else None)

    @property
    def stages(self) -> list[StageStatus]:
        """The pipeline's stages with their number, name, description and state."""
        job = self._job
        own = _figures(job.snapshot()) if job is not None else None
        return list(self.freshness.stage_statuses(self._stage_figures(own)))

    # -- artefacts ------------------------------------------------------------------------------

    @property
    def artefacts(self) -> Artefacts:
        """Typed artefacts by stage name: ``project.artefacts["chapters"]``; assign to edit."""
        return Artefacts(self)

    def save_artefact(
        self, stage: str | int, value: BaseModel | str, chapter: int | None = None
    ) -> Path:
        """Replace an artefact by hand: validated, written atomically; downstream turns stale."""
        target = self.pipeline.get(stage)
        if target.per_chapter and chapter is None:
            raise PipelineError(
                f"stage {target.name!r} has one artefact per chapter; pass chapter=N"
            )
        unit = unit_name(chapter) if target.per_chapter and chapter is not None else SINGLE
        relative = target.output_paths(unit)[0]
        if target.model is not None:
            if not isinstance(value, target.model):
                raise ArtefactError(
                    f"{target.name!r} artefacts are {target.model.__name__}, not {type(value).__name__}"
                )
            value = target.model.model_validate(value.model_dump())
        self._check_writable("edit artefacts")
        hashes = self.files.write({relative: value})
        record = self.store.unit(target.name, unit)
        outputs = {**(record["outputs"] if record else {}), **hashes}
        fingerprint = record["fingerprint"] if record else self.fingerprint(target, unit)
        self.store.set_unit(target.name, unit, "done", fingerprint=fingerprint, outputs=outputs)
        self.store.append_event(
            "artefact", {"stage": target.name, "unit": unit, "path": relative, "edited": True}
        )
        return self.paths[relative]

    def _check_writable(self, action: str) -> None:
        job = self.job
        if job is not None and job.state.active:
            raise JobStateError(
                f"a job is {job.state.value}; pause it before you {action}",
                state=job.state,
                action="edit",
            )
        if self.writer.held_elsewhere():
            raise ProjectLockedError(
                f"{self.root} is being written by another process; {action} there, or wait"
            )

    # -- variants -------------------------------------------------------------------------------

    def variants(self, stage: str | int) -> list[str]:
        return self.store.variants(self.pipeline.get(stage).name)

    def read_variant(self, stage: str | int, variant: str, chapter: int | None = None) -> Any:
        target = self.pipeline.get(stage)
        unit = unit_name(chapter) if chapter is not None else SINGLE
        relative = target.output_paths(unit)[0]
        path = self.artefact_path(relative, variant)
        if not path.exists():
            known = self.variants(target.name)
            raise ArtefactError(
                f"variant {variant!r} of {target.name!r} has no {relative}; variants: {known or 'none'}"
            )
        if target.model is None:
            return path.read_text(encoding="utf-8")
        return a.parse(target.model, path, path.read_bytes(), chapter)

    def choose_variant(
        self, stage: str | int, variant: str, chapters: list[int] | None = None
    ) -> None:
        """Make a variant the active artefact; everything downstream becomes stale."""
        target = self.pipeline.get(stage)
        self._check_writable("choose a variant")
        if variant not in self.variants(target.name):
            raise ArtefactError(
                f"{target.name!r} has no variant {variant!r}; variants: {self.variants(target.name) or 'none'}"
            )
        records = self.store.units(target.name, variant)
        units = self.freshness.select_units(target, chapters) if chapters else list(records)
        for unit in units:
            record = records.get(unit)
            if record is None:
                continue
            for relative in target.output_paths(unit):
                source = self.artefact_path(relative, variant)
                if source.exists():
                    a.write_atomic(self.paths[relative], source.read_bytes())
            self.store.set_unit(
                target.name,
                unit,
                "done",
                fingerprint=self.fingerprint(target, unit),
                outputs=record["outputs"],
            )
        self.store.invalidate(self.pipeline.downstream(target.name))
        self.store.append_event(
            "artefact", {"stage": target.name, "variant": variant, "chosen": True}
        )

    # -- reports and exports --------------------------------------------------------------------

    def _output(self, stage: str, index: int = 0) -> Path | None:
        """Where a single-unit stage's output ``index`` lives (its name comes from the stage);
        None when the pipeline has no such stage."""
        try:
            target = self.pipeline.get(stage)
        except PipelineError:
            return None
        return self.paths[target.output_paths(SINGLE)[index]]

    def report(self, *, save: bool = True, charts: bool = True) -> Scorecard:
        """The scorecard of the book as it stands: figures and faults per chapter and for the
        whole, with evidence (no model is called). ``save`` writes artefacts/report/
        (index.html, report.md, scorecard.json and, with matplotlib, the charts as SVG). A
        project without a manuscript gets the scorecard of what exists, and says what is missing.
        """
        from .report import report_project

        return report_project(self, save=save, charts=charts)

    def last_report(self) -> Scorecard | None:
        """The scorecard the assemble stage saved in report.json, or None (cheap: nothing is
        scored; a report.json of the first format reads too, with the newer figures empty)."""
        path = self._output("assemble", REPORT)
        if path is None or not path.exists():
            return None
        from .report import Scorecard

        try:
            return Scorecard.model_validate_json(path.read_bytes())
        except ValueError:
            return None

    def compare_variants(self, stage: str | int) -> Any:
        """The scorecards of a prose stage's active text and of each of its variants, side by
        side: a pandas DataFrame where pandas is installed, else a list of dicts."""
        from .report.compare import compare_variants

        return compare_variants(self, stage)

    def judge(
        self,
        backend: Backend | None = None,
        *,
        chapters: list[int] | None = None,
        book: bool = True,
    ) -> JudgeScores:
        """Scores from a language model against a published rubric (EQ-Bench Creative
        Writing's criteria), per chapter and (``book``) for the whole. Uses this project's
        backend unless one is given; every call goes to the ledger, is priced, counts against
        max_cost/max_tokens and is replayable from a cassette. The scores join the scorecard.
        """
        from .report.judge import judge_project

        with self._guard:
            self._check_writable("run the judge")
            claim = self.writer.take()
            try:
                return judge_project(self, backend or self.backend, chapters=chapters, book=book)
            finally:
                self.writer.release(claim, finished=True)

    def manuscript(self) -> Any:
        """The assembled manuscript as an :class:`novelkit.export.Manuscript`."""
        from .export import Manuscript

        path = self._output("assemble")
        if path is None or not path.exists():
            raise ExportError(
                "there is no manuscript yet: run the pipeline to stage 12 'assemble' first "
                "(project.start() or novelkit run DIR)"
            )
        meta: a.Metadata | None = None
        meta_path = self._output("metadata")
        if meta_path is not None and meta_path.exists():
            meta = a.parse(a.Metadata, meta_path, meta_path.read_bytes())
        c = self.config
        return Manuscript.from_markdown(
            path.read_text(encoding="utf-8"),
            title=c.title or (meta.title if meta else "Untitled"),
            author=c.author,
            language=c.language,
            contact=c.contact,
            subtitle=meta.subtitle if meta else "",
            blurb=meta.blurb if meta else "",
        )

    def export(
        self, fmt: str = "md", path: str | os.PathLike[str] | None = None, **options: Any
    ) -> Path:
        """Write the manuscript as ``fmt`` (md, txt, docx, epub, pdf) under exports/; returns the path."""
        from .export import export_manuscript, get_exporter

        exporter = get_exporter(fmt)
        manuscript = self.manuscript()
        out = (
            Path(path)
            if path is not None
            else self.root / "exports" / f"novel.{exporter.extension}"
        )
        try:
            export_manuscript(manuscript, fmt, out, **options)
        except OSError as exc:
            raise ExportError(
                f"could not write {out}: {exc.strerror or exc}; the previous file is intact"
            ) from None
        self.store.record_export(
            fmt,
            str(out),
            out.stat().st_size,
            manuscript.source_hash,
            {k: str(v) for k, v in options.items()},
        )
        self.store.append_event(
            "export", {"format": fmt, "path": str(out), "size": out.stat().st_size}
        )
        return out

    def exports(self) -> dict[str, dict[str, Any]]:
        """Each export's format, path, size, times, and whether the manuscript changed since."""
        current = ""
        path = self._output("assemble")
        if path is not None and path.exists():
            current = a.sha256(path.read_bytes())
        out = {}
        for fmt, row in self.store.exports().items():
            exists = Path(row["path"]).exists()
            out[fmt] = {
                **row,
                "exists": exists,
                "stale": not exists or row["manuscript_hash"] != current,
            }
        return out

    def panel(self) -> Any:
        """A live ipywidgets panel of this project's current or last job."""
        from .widgets import JobPanel

        return JobPanel(self)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        from .widgets import mimebundle

        return mimebundle(self, **kwargs)

    def serve(self, host: str = "127.0.0.1", port: int = 8765, **options: Any) -> Any:
        """Run the HTTP/WebSocket sidecar for this project's folder in a background thread."""
        from .server import serve_in_thread

        return serve_in_thread(
            self.root.parent, host=host, port=port, projects={self.root.name: self}, **options
        )

    def close(self) -> None:
        job = self._job
        thread = job.thread if job is not None else None
        if job is not None and thread is not None and thread.is_alive():
            if job.live.state.active:
                job.cancel()
            job.wait(10)
            if thread.is_alive():  # still writing: keep the lock and the store open
                raise ProjectError(
                    f"the job on {self.root} did not stop within 10 s; try close() again"
                )
        self.writer.drop()
        self.store.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _figures(live: LiveSnapshot) -> StageFigures | None:
    """A running job's own stage figures, when its run is in this process."""
    return None if live.rows is None else (live.rows, live.by_stage, live.stage_started)


class Artefacts(Mapping[str, Any]):
    """``project.artefacts[name]``: a typed object, or per chapter a mapping chapter → object."""

    def __init__(self, project: Project) -> None:
        self._project = project

    def __getitem__(self, key: str | int) -> Any:
        stage = self._project.pipeline.get(key)
        if stage.per_chapter:
            return ChapterArtefacts(self._project, stage)
        return self._project.read_variant(stage.name, "")

    def __setitem__(self, key: str | int, value: BaseModel | str) -> None:
        self._project.save_artefact(key, value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._project.pipeline.names())

    def __len__(self) -> int:
        return len(self._project.pipeline)

    def __repr__(self) -> str:
        states = self._project.stage_states()
        return "<Artefacts " + ", ".join(f"{n}: {s[0].value}" for n, s in states.items()) + ">"


class ChapterArtefacts(Mapping[int, Any]):
    def __init__(self, project: Project, stage: Stage) -> None:
        self._project = project
        self._stage = stage

    def __getitem__(self, chapter: int) -> Any:
        return self._project.read_variant(self._stage.name, "", chapter)

    def __setitem__(self, chapter: int, value: BaseModel | str) -> None:
        self._project.save_artefact(self._stage.name, value, chapter)

    def __iter__(self) -> Iterator[int]:
        for number in self._project.chapter_numbers():
            if self._project.paths[self._stage.output_paths(unit_name(number))[0]].exists():
                yield number

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"<{self._stage.name} artefacts for chapters {list(self)}>"
