"""Who writes a project's book: its backend and model, as the CLI, the panel, the dashboard and
the report name them. A book from the offline backend is placeholder prose, and says so."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._config import NovelConfig

__all__ = ["PLACEHOLDER", "Writer"]

PLACEHOLDER = "placeholder prose, not written by a model"


@dataclass(frozen=True)
class Writer:
    """The backend and model(s) a project's config asks for."""

    backend: str
    model: str | None
    stage_models: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, config: NovelConfig) -> Writer:
        overrides = {
            name: stage.model for name, stage in config.stages.items() if stage.model is not None
        }
        return cls(config.backend, config.model, overrides)

    @property
    def placeholder(self) -> bool:
        """True when no language model writes the prose (the offline backend)."""
        return self.backend == "offline"

    def label(self) -> str:
        """One line, e.g. ``openai, model gpt-4o-mini (draft: gpt-4o)``."""
        if self.placeholder:
            return f"offline — {PLACEHOLDER}"
        text = f"{self.backend}, model {self.model or '(not set)'}"
        if self.stage_models:
            text += " (" + ", ".join(f"{k}: {v}" for k, v in self.stage_models.items()) + ")"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.backend,
            "model": self.model,
            "stage_models": dict(self.stage_models),
            "placeholder": self.placeholder,
            "label": self.label(),
        }
