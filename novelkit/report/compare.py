"""Scorecards side by side: runs of a sweep, projects, or the variants of one stage."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import PipelineError, ProjectError
from .scorecard import Scorecard

if TYPE_CHECKING:
    from .._project import Project

__all__ = ["Comparison", "compare", "compare_variants"]


class Comparison:
    """The table of figures (``.table``: a pandas DataFrame, or a list of dicts without pandas),
    the scorecards by label, and their charts overlaid (``.charts()``, SVG by name)."""

    def __init__(self, cards: Mapping[str, Scorecard]) -> None:
        self.cards = dict(cards)
        rows = [{"run": label, **card.figures()} for label, card in self.cards.items()]
        self.rows = rows
        try:
            import pandas
        except ImportError:
            self.table: Any = rows
        else:
            self.table = pandas.DataFrame(rows).set_index("run")

    @classmethod
    def of(cls, projects: Sequence[Project | str | os.PathLike[str]]) -> Comparison:
        """Compare projects (or project folders)."""
        return _of(projects)

    @classmethod
    def of_variants(cls, project: Project, stage: str | int) -> Comparison:
        """Compare the active text of a prose stage with each of its variants."""
        return _of_variants(project, stage)

    def charts(self) -> dict[str, str]:
        from .charts import draw_compare

        return draw_compare(self.cards)

    def _repr_html_(self) -> str:
        from .charts import charts_available
        from .render import chart_source, escape

        if hasattr(self.table, "to_html"):
            table = self.table.to_html()
        else:
            keys = list(self.rows[0]) if self.rows else []
            table = "<table><tr>" + "".join(f"<th>{escape(k)}</th>" for k in keys) + "</tr>"
            for row in self.rows:
                table += "<tr>" + "".join(f"<td>{escape(row[k])}</td>" for k in keys) + "</tr>"
            table += "</table>"
        figures = ""
        if charts_available() and self.cards:
            figures = "".join(
                f"<figure data-chart='{name}'><img src='{chart_source(svg)}' alt='{name}'></figure>"
                for name, svg in self.charts().items()
            )
        return f"<div class='nk-compare'>{table}{figures}</div>"

    def __repr__(self) -> str:
        return f"<Comparison of {len(self.cards)}: {', '.join(self.cards)}>"


def _label(project: Project, taken: set[str]) -> str:
    label = project.root.name
    n = 2
    while label in taken:
        label = f"{project.root.name} ({n})"
        n += 1
    return label


def _of(projects: Sequence[Project | str | os.PathLike[str]]) -> Comparison:
    from .._project import Project, open_project
    from . import score_project

    if isinstance(projects, str | os.PathLike) or not projects:
        raise ProjectError(
            "compare() takes a list of projects or project folders, e.g. nk.compare([a, b])"
        )
    cards: dict[str, Scorecard] = {}
    for item in projects:
        project = item if isinstance(item, Project) else open_project(item)
        cards[_label(project, set(cards))] = score_project(project)
    return Comparison(cards)


def _of_variants(project: Project, stage: str | int) -> Comparison:
    from . import score_project
    from ._gather import PROSE_STAGES

    name = project.pipeline.get(stage).name
    if name not in PROSE_STAGES:
        raise PipelineError(
            f"compare_variants() scores prose: stage {name!r} has no chapters of text; "
            f"use one of {', '.join(PROSE_STAGES)}"
        )
    cards = {"active": score_project(project, stage=name)}
    for variant in project.variants(name):
        cards[variant] = score_project(project, stage=name, variant=variant)
    return Comparison(cards)


def compare(projects: Sequence[Project | str | os.PathLike[str]]) -> Any:
    """The scorecards' figures of ``projects`` (Project objects or folders) side by side: a
    pandas DataFrame with one row per project where pandas is installed, else a list of dicts.

    ``nk.Comparison.of(projects)`` gives the same table with the charts overlaid (its notebook
    display shows both).
    """
    return _of(projects).table


def compare_variants(project: Project, stage: str | int) -> Any:
    """:meth:`Project.compare_variants`: the active text of a prose stage and each variant."""
    return _of_variants(project, stage).table
