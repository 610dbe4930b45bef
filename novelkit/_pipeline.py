"""Stages, the pipeline registry, and its dependency graph.

A stage declares its inputs (other stages), its outputs (files under ``artefacts/``), a
``version`` (bumped when its prompt or code changes) and its units: one, or one per chapter.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from ._errors import PipelineError

if TYPE_CHECKING:
    from ._runner import UnitContext

__all__ = ["Pipeline", "Stage", "StageState", "chapter_of", "unit_name"]

SINGLE = "all"


class StageState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STALE = "stale"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


def unit_name(chapter: int) -> str:
    return f"ch{chapter:02d}"


def chapter_of(unit: str) -> int | None:
    return int(unit[2:]) if unit.startswith("ch") and unit[2:].isdigit() else None


Outputs = dict[str, "BaseModel | str"]


class Stage:
    """Base class of a pipeline stage. Subclass it and override :meth:`run`.

    ``path`` is the output file pattern under ``artefacts/``; per-chapter stages use ``{ch}``
    (``"06-scenes/{ch}.json"``). ``model`` is the pydantic type of that primary output.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()
    version: ClassVar[str] = "1"
    per_chapter: ClassVar[bool] = False
    parallel: ClassVar[bool] = False
    path: ClassVar[str] = ""
    model: ClassVar[type[BaseModel] | None] = None
    extra_paths: ClassVar[tuple[str, ...]] = ()
    """Further output files besides ``path`` (same ``{ch}`` pattern)."""
    optional_inputs: ClassVar[tuple[str, ...]] = ()
    """Artefact files a unit reads when they exist (a voice profile, a previous book's bible);
    their hash joins the fingerprint only when present, so projects without them keep theirs."""
    config_keys: ClassVar[tuple[str, ...]] = ()
    """novel.toml fields whose change makes this stage's output stale."""
    calls_llm: ClassVar[bool] = True
    prompt: ClassVar[str] = ""
    """Instructions sent to the model; ``[stages.NAME] prompt`` in novel.toml replaces it."""

    def output_paths(self, unit: str) -> list[str]:
        ch = unit if self.per_chapter else ""
        pattern = self.path or (
            f"{self.name}/{{ch}}.json" if self.per_chapter else f"{self.name}.json"
        )
        return [p.format(ch=ch) for p in (pattern, *self.extra_paths)]

    def extra_inputs(self, unit: str) -> list[str]:
        """Artefact paths this unit reads besides its input stages' (e.g. the previous chapter)."""
        return []

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        """The unit's outputs by path. Later units may read the returned objects themselves
        (``ctx.read(..., shared=True)``): do not change them after returning."""
        raise NotImplementedError(f"stage {self.name!r} does not implement run()")

    def __repr__(self) -> str:
        units = (
            "per chapter" + (", parallel" if self.parallel else "")
            if self.per_chapter
            else "1 unit"
        )
        return f"<Stage {self.name!r} v{self.version} ({units}) inputs={list(self.inputs)}>"


class Pipeline(Sequence[Stage]):
    """An ordered registry of stages; replace or insert one, and the graph is re-validated."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self._stages = list(stages)
        self.validate()

    def __len__(self) -> int:
        return len(self._stages)

    def __getitem__(self, index: Any) -> Any:
        return self._stages[index]

    def __iter__(self) -> Iterator[Stage]:
        return iter(self._stages)

    def names(self) -> list[str]:
        return [s.name for s in self._stages]

    def get(self, key: str | int) -> Stage:
        """A stage by name or by number (1-based)."""
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            number = int(key)
            if 1 <= number <= len(self._stages):
                return self._stages[number - 1]
            raise PipelineError(
                f"there is no stage {number}; stages are numbered 1–{len(self._stages)}"
            )
        for stage in self._stages:
            if stage.name == key:
                return stage
        import difflib

        close = difflib.get_close_matches(str(key), self.names(), n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        raise PipelineError(f"unknown stage {key!r}{hint} (stages: {', '.join(self.names())})")

    def number(self, stage: Stage | str) -> int:
        name = stage if isinstance(stage, str) else stage.name
        return self.names().index(name) + 1

    def replace(self, name: str, stage: Stage) -> None:
        index = self.names().index(self.get(name).name)
        candidate = [*self._stages]
        candidate[index] = stage
        self._check(candidate)
        self._stages = candidate

    def insert(self, stage: Stage, *, after: str) -> None:
        index = self.names().index(self.get(after).name) + 1
        candidate = [*self._stages[:index], stage, *self._stages[index:]]
        self._check(candidate)
        self._stages = candidate

    def validate(self) -> None:
        self._check(self._stages)

    @staticmethod
    def _check(stages: list[Stage]) -> None:
        names = [s.name for s in stages]
        for stage in stages:
            if not stage.name or not stage.name.replace("_", "").replace("-", "").isalnum():
                raise PipelineError(f"stage name {stage.name!r} must be a non-empty word")
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise PipelineError(f"two stages share the name {sorted(duplicates)[0]!r}")
        graph = {s.name: s.inputs for s in stages}
        for stage in stages:
            for needed in stage.inputs:
                if needed not in graph:
                    raise PipelineError(
                        f"stage {stage.name!r} needs {needed!r}, which is not in the pipeline"
                    )
        # a cycle, or an input placed after its consumer, cannot be run in order
        state: dict[str, int] = {}

        def visit(name: str, trail: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = " → ".join([*trail[trail.index(name) :], name])
                raise PipelineError(f"the stages form a cycle: {cycle}")
            state[name] = 1
            for needed in graph[name]:
                visit(needed, [*trail, name])
            state[name] = 2

        for name in names:
            visit(name, [])
        for position, stage in enumerate(stages):
            for needed in stage.inputs:
                if names.index(needed) > position:
                    raise PipelineError(
                        f"stage {stage.name!r} comes before its input {needed!r}; insert it later"
                    )

    def downstream(self, name: str) -> list[str]:
        """Every stage that depends on ``name``, directly or not, in pipeline order."""
        affected = {name}
        out = []
        for stage in self._stages:
            if any(i in affected for i in stage.inputs):
                affected.add(stage.name)
                out.append(stage.name)
        return out
