"""The scorecard's pictures, drawn with matplotlib as SVG.

matplotlib is imported here only, when a chart is drawn, and through ``matplotlib.figure.Figure``
alone: no pyplot, so a notebook's own backend and figures are left as they were. SVG renders in
JupyterLab, VS Code, Colab, a browser and the dashboard alike, scales without blur and is text
(diffable, small). Why matplotlib and not Altair/Vega-Lite: README, "Scorecard".
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._artefacts import write_atomic

if TYPE_CHECKING:
    from .scorecard import Scorecard

__all__ = ["CHARTS", "charts_available", "draw", "draw_all", "draw_compare", "save_charts"]

CHARTS = ("words", "presence", "relationships", "arc", "repetition")
TITLES = {
    "words": "Words per chapter against the target",
    "presence": "Who appears in which chapter",
    "relationships": "The cast and their relationships",
    "arc": "The story's arc: acts and tension",
    "repetition": "Repetition and stock phrases per chapter",
}
_STYLE: Any = {  # matplotlib types rcParams keys as Literals
    "svg.hashsalt": "novelkit",  # the same chart gives the same file
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def charts_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float = 7.0, height: float = 3.2) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "the scorecard's charts need matplotlib: pip install 'novelkit[report]'"
        ) from None
    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Any) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(_STYLE):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def _words(card: Scorecard, ax: Any) -> None:
    numbers = [c.chapter for c in card.chapters]
    if not numbers:
        return _note(ax, "no chapters written yet")
    colours = ["#4c72b0" if c.within_tolerance else "#dd8452" for c in card.chapters]
    ax.bar(numbers, [c.actual_words for c in card.chapters], color=colours, label="words")
    for c in card.chapters:
        if c.target_words:
            ax.fill_between(
                [c.chapter - 0.45, c.chapter + 0.45],
                c.target_words * 0.9,
                c.target_words * 1.1,
                color="#55a868",
                alpha=0.25,
                linewidth=0,
            )
            ax.hlines(c.target_words, c.chapter - 0.45, c.chapter + 0.45, color="#55a868")
    ax.set_xlabel("chapter")
    ax.set_ylabel("words")
    ax.set_xticks(numbers)
    ax.set_title("bars: words written · green band: target ±10% · orange: outside", fontsize=8)


def _presence(card: Scorecard, ax: Any) -> None:
    names = list(card.presence)
    numbers = [c.chapter for c in card.chapters]
    if not names or not numbers:
        return _note(ax, "no cast or no chapters yet")
    grid = [card.presence[name] for name in names]
    image = ax.imshow(grid, aspect="auto", cmap="Blues", interpolation="nearest")
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(len(numbers)), [str(n) for n in numbers])
    ax.set_xlabel("chapter")
    ax.figure.colorbar(image, ax=ax, label="mentions", shrink=0.8)


def _relationships(card: Scorecard, ax: Any) -> None:
    names = list(card.presence) or sorted({e.source for e in card.relationships})
    if not names:
        return _note(ax, "no cast yet")
    angle = {n: 2 * math.pi * i / len(names) for i, n in enumerate(names)}
    where = {n: (math.cos(t), math.sin(t)) for n, t in angle.items()}
    for edge in card.relationships:
        if edge.source in where and edge.target in where:
            (x1, y1), (x2, y2) = where[edge.source], where[edge.target]
            ax.plot([x1, x2], [y1, y2], color="#999", linewidth=1, zorder=1)
            ax.text((x1 + x2) / 2, (y1 + y2) / 2, edge.kind, fontsize=7, color="#555", ha="center")
    mentions = {n: sum(card.presence.get(n, [])) for n in names}
    biggest = max(mentions.values()) or 1
    for name, (x, y) in where.items():
        ax.scatter([x], [y], s=200 + 1200 * mentions[name] / biggest, color="#4c72b0", zorder=2)
        ax.text(x, y - 0.22, name, ha="center", va="top", fontsize=8)
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.4)
    ax.set_axis_off()
    ax.set_title("circle size: mentions in the text · lines: relationships in the cast", fontsize=8)


def _arc(card: Scorecard, ax: Any) -> None:
    numbers = [c.chapter for c in card.chapters]
    if not numbers and not card.acts:
        return _note(ax, "no chapters or structure yet")
    shades = ("#f2f2f2", "#e0e8f5")
    for i, act in enumerate(card.acts):
        if act.chapters:
            ax.axvspan(min(act.chapters) - 0.5, max(act.chapters) + 0.5, color=shades[i % 2])
            ax.text(
                (min(act.chapters) + max(act.chapters)) / 2,
                10.6,
                f"Act {act.number}: {act.name}",
                ha="center",
                fontsize=8,
            )
    points = [(c.chapter, c.tension) for c in card.chapters if c.tension is not None]
    if points:
        ax.plot(*zip(*points, strict=True), marker="o", color="#c44e52", label="tension")
    else:
        ax.text(
            0.5,
            0.45,
            "the chapter plan carries no tension figures",
            ha="center",
            transform=ax.transAxes,
            color="#666",
        )
    ax.set_ylim(0, 11.5)
    ax.set_ylabel("tension (1–10)")
    ax.set_xlabel("chapter")
    if numbers:
        ax.set_xticks(numbers)


def _repetition(card: Scorecard, ax: Any) -> None:
    numbers = [c.chapter for c in card.chapters]
    if not numbers:
        return _note(ax, "no chapters written yet")
    ax.plot(
        numbers,
        [100 * c.repeated_ngram_share for c in card.chapters],
        marker="o",
        label="repeated 12-grams in the chapter (%)",
    )
    ax.plot(
        numbers,
        [c.slop_per_1k for c in card.chapters],
        marker="s",
        label="stock phrases / 1k words",
    )
    ax.set_xlabel("chapter")
    ax.set_xticks(numbers)
    ax.legend(loc="best", frameon=False)


_DRAW: dict[str, Callable[[Scorecard, Any], None]] = {
    "words": _words,
    "presence": _presence,
    "relationships": _relationships,
    "arc": _arc,
    "repetition": _repetition,
}


def draw(card: Scorecard, name: str) -> str:
    """One chart of the scorecard as SVG text."""
    _figure(1, 1)  # the ImportError with its hint, before matplotlib is named
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        return _draw(card, name)


def _draw(card: Scorecard, name: str) -> str:
    height = 3.2
    if name == "presence":
        height = max(2.2, 0.35 * len(card.presence) + 1.2)
    fig = _figure(
        7.0 if name != "relationships" else 5.5, height if name != "relationships" else 4.5
    )
    ax = fig.subplots()
    _DRAW[name](card, ax)
    fig.suptitle(TITLES[name], fontsize=10)
    return _svg(fig)


def draw_all(card: Scorecard) -> dict[str, str]:
    """Every chart as SVG text, by name."""
    return {name: draw(card, name) for name in CHARTS}


def save_charts(charts: Mapping[str, str], folder: Path) -> dict[str, Path]:
    """Write SVG charts into ``folder`` (atomically); their paths by name."""
    out = {}
    for name, svg in charts.items():
        path = folder / f"{name}.svg"
        write_atomic(path, svg.encode("utf-8"), sync_dir=False)
        out[name] = path
    return out


def draw_compare(cards: Mapping[str, Scorecard]) -> dict[str, str]:
    """The comparable charts with one line per scorecard, by name: words per chapter,
    repetition, stock phrases and (where the plans carry it) tension."""
    series: dict[str, tuple[str, Callable[[Any], float | None]]] = {
        "words": ("words per chapter", lambda c: c.actual_words),
        "repetition": (
            "repeated 12-grams in the chapter (%)",
            lambda c: 100 * c.repeated_ngram_share,
        ),
        "slop": ("stock phrases per 1k words", lambda c: c.slop_per_1k),
        "arc": ("tension (1–10)", lambda c: c.tension),
    }
    _figure(1, 1)
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        return {name: _compared(cards, label, value) for name, (label, value) in series.items()}


def _compared(
    cards: Mapping[str, Scorecard], label: str, value: Callable[[Any], float | None]
) -> str:
    fig = _figure()
    ax = fig.subplots()
    for run, card in cards.items():
        points = [(c.chapter, value(c)) for c in card.chapters if value(c) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=run)
    ax.set_xlabel("chapter")
    ax.set_ylabel(label)
    if ax.lines:
        ax.legend(frameon=False)
    else:
        _note(ax, "no figures to compare")
    fig.suptitle(f"Compared: {label}", fontsize=10)
    return _svg(fig)
