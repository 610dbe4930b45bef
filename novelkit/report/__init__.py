"""The scorecard of a book, its charts, comparison across runs and variants, and the optional
LLM judge.

    card = project.report()          # figures and faults, charts under artefacts/report/
    card.issues                      # each fault with its chapters and evidence
    nk.compare([run_a, run_b])       # side by side (a DataFrame where pandas is installed)
    project.judge()                  # scores from a model against a published rubric

Modules: ``metrics`` (figures of prose), ``slop`` (the versioned stock-phrase list), ``cast``
(who appears where), ``scorecard`` (the model and :func:`build_scorecard`), ``charts``
(matplotlib, loaded when drawn), ``render`` (Markdown and HTML), ``compare``, ``judge``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._artefacts import fsync_dir, write_atomic
from .scorecard import (
    Book,
    BookChapter,
    ChapterScore,
    Issue,
    JudgeScores,
    Scorecard,
    build_scorecard,
)

if TYPE_CHECKING:
    from .._project import Project

__all__ = [
    "REPORT_DIR",
    "Book",
    "BookChapter",
    "ChapterScore",
    "Issue",
    "Scorecard",
    "build_scorecard",
    "load_judgement",
    "report_project",
    "write_report",
]

REPORT_DIR = "report"  # under artefacts/: index.html, report.md, scorecard.json, *.svg
JUDGE_FILE = "judge.json"


def report_folder(project: Project) -> Path:
    return project.root / "artefacts" / REPORT_DIR


def load_judgement(project: Project, card: Scorecard) -> JudgeScores | None:
    """The judge's last scores, each marked stale if its chapter's text changed since."""
    from ..stages.finishing import text_digest

    path = report_folder(project) / JUDGE_FILE
    if not path.exists():
        return None
    try:
        scores = JudgeScores.model_validate_json(path.read_bytes())
    except ValueError:
        return None  # a damaged file: the next judge() writes it again
    return mark_stale(scores, card, text_digest)


def mark_stale(scores: JudgeScores, card: Scorecard, digest: Any) -> JudgeScores:
    texts = card._texts
    book = digest("\n".join(texts[n] for n in sorted(texts))) if texts else ""
    for result in scores.results:
        now = (
            book
            if result.chapter == 0
            else (digest(texts[result.chapter]) if result.chapter in texts else "")
        )
        result.stale = bool(result.text_digest) and result.text_digest != now
    by_chapter = {r.chapter: r.score for r in scores.results if r.chapter and not r.stale}
    for chapter in card.chapters:
        chapter.judge = by_chapter.get(chapter.chapter)
    return scores


def score_project(project: Project, *, stage: str | None = None, variant: str = "") -> Scorecard:
    """The scorecard of the project as it stands (nothing written)."""
    from ._gather import gather

    book = gather(project, stage=stage, variant=variant)
    card = build_scorecard(book)
    if not stage:
        card.judge = load_judgement(project, card)
    return card


def write_report(card: Scorecard, folder: Path, *, charts: bool = True) -> dict[str, Path]:
    """Write the scorecard into ``folder``: scorecard.json, report.md, index.html and, when
    matplotlib is installed and ``charts``, one SVG per chart. Returns the paths by name."""
    from .charts import charts_available, draw_all, save_charts

    folder.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Path] = {}
    if charts and charts_available():
        drawn = save_charts(draw_all(card), folder)
    links = {name: path.name for name, path in drawn.items()}
    if charts and not drawn:
        card.problems.append("charts need matplotlib: pip install 'novelkit[report]'")
    files = {
        "scorecard.json": json.dumps(card.model_dump(mode="json"), indent=2, ensure_ascii=False),
        "report.md": card.to_markdown(links),
        "index.html": card.to_html(links),
    }
    out: dict[str, Path] = {f"chart:{name}": path for name, path in drawn.items()}
    for name, text in files.items():
        write_atomic(folder / name, text.encode("utf-8"), sync_dir=False)
        out[name] = folder / name
    fsync_dir(folder)
    return out


def report_project(project: Project, *, save: bool = True, charts: bool = True) -> Scorecard:
    """:meth:`Project.report`: score what exists and (``save``) write artefacts/report/."""
    card = score_project(project)
    if save:
        write_report(card, report_folder(project), charts=charts)
    return card
