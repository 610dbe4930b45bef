"""``project.estimate()``: the tokens and cost of a run, predicted before any call is paid.

The prediction is a dry run: the same config (chapters, words per chapter, prompts, context
budget) through the whole pipeline on the offline backend, in a temporary folder. Its ledger
gives each stage's calls and tokens; the project's prices turn them into money. A real model
re-asks, repairs and writes at its own length, so the real run differs; the benchmarks measure
by how much (see README, "What a run costs").
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import _toml_key
from ._errors import NovelkitError
from ._prices import FREE_BACKENDS, PRICES_DATE, format_cost, price_for, stage_model
from ._status import JobState

if TYPE_CHECKING:
    from ._project import Project

__all__ = ["Estimate", "StageEstimate", "estimate"]

# Settings that only matter to the real backend or the budget, not to what the run asks for.
_DRY_RUN_DROPS = ("base_url", "max_cost", "max_tokens", "prices")


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    """``None`` when a paid model has no price."""


@dataclass(frozen=True)
class Estimate:
    """Predicted calls, tokens and cost of a whole run of a project's config."""

    backend: str
    currency: str
    stages: tuple[StageEstimate, ...]
    max_cost: float | None = None
    prices_date: str = PRICES_DATE

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stages)

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.stages)

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.stages)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def unpriced(self) -> list[str]:
        """Models whose calls cannot be priced (add them under ``[prices]``)."""
        return sorted({s.model for s in self.stages if s.cost is None})

    @property
    def cost(self) -> float | None:
        """Total cost, or ``None`` when some model has no price."""
        if self.unpriced:
            return None
        return sum(s.cost or 0.0 for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens,
            "cost": self.cost,
            "unpriced": self.unpriced,
        }

    def table(self) -> str:
        """The estimate as plain text (CLI, notebook repr)."""

        def money(value: float | None) -> str:
            return "no price" if value is None else format_cost(value, self.currency)

        lines = [
            f"estimate for a whole run on {self.backend}: {self.calls:,} calls, "
            f"{self.tokens:,} tokens ({self.prompt_tokens:,} in, {self.completion_tokens:,} out), "
            f"cost {money(self.cost)}"
        ]
        for s in self.stages:
            lines.append(
                f"  {s.stage:<11} {s.model:<24} {s.calls:>4} calls {s.prompt_tokens:>9,} in "
                f"{s.completion_tokens:>9,} out  {money(s.cost)}"
            )
        for model in self.unpriced:
            lines.append(
                f"  {model!r} has no price: add [prices.{_toml_key(model)}] prompt = ..., "
                "completion = ... (per million tokens) to novel.toml"
            )
        if self.cost is not None and self.max_cost is not None and self.cost > self.max_cost:
            share = self.max_cost / self.cost if self.cost else 1.0
            lines.append(
                f"  this is more than max_cost ({money(self.max_cost)}): the run would pause "
                f"about {share:.0%} of the way"
            )
        if self.backend not in FREE_BACKENDS:
            lines.append(
                f"  a dry run on the offline writer; a real model's answers differ in length "
                f"(built-in prices as of {self.prices_date})"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        cost = "None" if self.cost is None else f"{self.cost:.4f}"
        return f"Estimate(backend={self.backend!r}, tokens={self.tokens}, cost={cost})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.table())


def estimate(project: Project) -> Estimate:
    """Dry-run ``project``'s config on the offline backend and price its ledger."""
    from ._project import new_project

    config = project.config
    settings = config.model_dump(mode="json", exclude_none=True)
    for key in _DRY_RUN_DROPS:
        settings.pop(key, None)
    settings.update(backend="offline", backend_options={})
    premise = settings.pop("premise")
    with tempfile.TemporaryDirectory(prefix="novelkit-estimate-") as folder:
        dry = new_project(Path(folder) / "dry-run", premise, **settings)
        try:
            job = dry.start()
            state = job.wait()
            if state is not JobState.SUCCEEDED:
                raise NovelkitError(
                    f"the dry run for the estimate ended {state.value}: {job.status.error or ''}"
                )
            ledger = dry.store.ledger()
        finally:
            dry.close()
    fallback = config.model or config.backend
    free = config.backend in FREE_BACKENDS
    stages = []
    for stage in project.pipeline:
        row = ledger.get(stage.name)
        if row is None:
            continue
        model = stage_model(config, stage.name) or fallback
        prompt, completion = int(row["prompt_tokens"]), int(row["completion_tokens"])
        price = price_for(config, model)
        cost: float | None
        if price is not None:
            cost = (prompt * price.prompt + completion * price.completion) / 1e6
        else:
            cost = 0.0 if free else None
        stages.append(StageEstimate(stage.name, model, int(row["calls"]), prompt, completion, cost))
    return Estimate(config.backend, config.currency, tuple(stages), config.max_cost)
