"""The twelve built-in stages (docs/architecture.md). ``default_stages()`` returns fresh instances."""

from __future__ import annotations

from .._pipeline import Stage
from .continuity import Continuity
from .finishing import Assemble, Metadata
from .planning import Chapters, Characters, Premise, Scenes, Structure, World
from .writing import Draft, Polish, Revision

__all__ = [
    "Assemble",
    "Chapters",
    "Characters",
    "Continuity",
    "Draft",
    "Metadata",
    "Polish",
    "Premise",
    "Revision",
    "Scenes",
    "Structure",
    "World",
    "default_stages",
]


def default_stages() -> list[Stage]:
    return [
        Premise(),
        World(),
        Characters(),
        Structure(),
        Chapters(),
        Scenes(),
        Draft(),
        Continuity(),
        Revision(),
        Polish(),
        Metadata(),
        Assemble(),
    ]
