"""Shared fixtures: a fresh project on the offline backend, and tool requirements."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import novelkit as nk

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."


@pytest.fixture
def make_project(tmp_path: Path) -> Iterator[Callable[..., nk.Project]]:
    """``make_project(**config)`` → a new small project under tmp_path (closed afterwards)."""
    made: list[nk.Project] = []

    def factory(name: str = "novel", **config: Any) -> nk.Project:
        settings: dict[str, Any] = {"chapters": 3, "words_per_chapter": 300}
        settings.update(config)
        premise = settings.pop("premise", PREMISE)
        project = nk.new_project(tmp_path / name, premise=premise, **settings)
        made.append(project)
        return project

    yield factory
    for project in made:
        project.close()


@pytest.fixture
def project(make_project: Callable[..., nk.Project]) -> nk.Project:
    return make_project()


@pytest.fixture
def slow_project(make_project: Callable[..., nk.Project]) -> nk.Project:
    """A project whose offline backend streams at 2,000 tokens/s, so control can be exercised."""
    return make_project(backend_options={"tokens_per_second": 2000, "latency": 0.01})
