"""Stages 11 and 12: metadata, then the assembled manuscript and its integrity report."""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections import Counter
from dataclasses import dataclass

from .. import _artefacts as a
from .._answers import Shape
from .._pipeline import Outputs, Stage, unit_name
from .._runner import UnitContext
from .continuity import check_chapter

REPORT_NGRAM = 12  # the report counts repeated 12-grams
_NGRAM_WORD = re.compile(r"[\w'’]+")


class Metadata(Stage):
    name = "metadata"
    version = "2"  # answers shaped by _answers.Shape
    description = "Title, blurb, chapter titles, author and language."
    inputs = ("premise", "world", "chapters", "polish")
    path = "11-metadata.json"
    model = a.Metadata
    config_keys = ("title", "author", "language", "genre")
    prompt = (
        "Give the novel a title (unless the material fixes one), a subtitle (may be empty), a "
        "blurb of about 80 words and keywords."
    )

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        premise: a.Premise = ctx.read("premise", shared=True)
        world: a.World = ctx.read("world", shared=True)
        outline: a.Outline = ctx.read("chapters", shared=True)
        c = ctx.config
        context = {
            "premise": premise.premise,
            "genre": c.genre,
            "title": c.title or "",
            "author": c.author,
            "language": c.language,
            "locations": [loc.name for loc in world.locations],
            "chapter_titles": [plan.title for plan in outline.chapters],
        }
        fixed: dict[str, object] = {
            "author": c.author,
            "language": c.language,
            "chapter_titles": context["chapter_titles"],
        }
        if c.title:
            fixed["title"] = c.title
        shape = Shape(items={"keywords": (0, 7)}, fixed=fixed)
        return {self.path: await ctx.json("metadata", context, a.Metadata, shape)}


@dataclass(frozen=True)
class NgramProfile:
    """One text's word n-grams (each as the hash of its space-joined words): how many, which,
    which repeat in it."""

    total: int
    distinct: frozenset[int]
    repeated: dict[int, int]  # n-gram → count, for those seen more than once


@functools.lru_cache(maxsize=128)
def chapter_words(text: str) -> int:
    """Cached by text, like :func:`ngram_profile`."""
    return a.count_words(text)


@functools.lru_cache(maxsize=128)
def ngram_profile(text: str, n: int) -> NgramProfile:
    """Cached by text: polish profiles each chapter when it is written, assemble only adds up.

    N-grams are kept as the hashes of their word tuples (the words' own hashes are cached, so
    no n-gram string is built): a fraction of the memory of strings (a 150,000-word book holds
    150,000 n-grams), and adding up is cheap set algebra. Two n-grams of one book sharing a
    64-bit hash is a one-in-10^9 chance.
    """
    words = _NGRAM_WORD.findall(text.lower())
    counts = Counter(map(hash, zip(*(words[i:] for i in range(n)), strict=False)))
    return NgramProfile(
        total=max(0, len(words) - n + 1),
        distinct=frozenset(counts),
        repeated={gram: count for gram, count in counts.items() if count > 1},
    )


@functools.lru_cache(maxsize=128)
def text_digest(text: str) -> str:
    """The text's hash with its whitespace collapsed: equal for two copies of one chapter.
    Cached by text, like :func:`ngram_profile`."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


# (chapter, text) → the cast and world it was checked against, and what was found
_checked: dict[tuple[int, str], tuple[a.Cast, a.World, list[a.Finding]]] = {}
_checked_lock = threading.Lock()  # two projects' runs in one process may check at once


def final_findings(chapter: int, text: str, cast: a.Cast, world: a.World) -> list[a.Finding]:
    """:func:`check_chapter` of a chapter's final text, cached like :func:`ngram_profile`.

    A shared read hands every unit the same cast and world, so a hit is usually an identity
    check; an equal copy counts too."""
    key = (chapter, text)
    hit = _checked.get(key)
    if (
        hit is not None
        and (hit[0] is cast or hit[0] == cast)
        and (hit[1] is world or hit[1] == world)
    ):
        found = hit[2]
    else:
        found = check_chapter(chapter, text, cast, world)
        with _checked_lock:
            if len(_checked) >= 128 and key not in _checked:
                _checked.pop(next(iter(_checked)), None)
            _checked[key] = (cast, world, found)
    return [finding.model_copy() for finding in found]


def warm_report(chapter: int, text: str, cast: a.Cast, world: a.World) -> None:
    """Work out a final chapter's figures for the report (all cached by text), so that
    assemble only adds them up."""
    chapter_words(text)
    text_digest(text)
    ngram_profile(text, REPORT_NGRAM)
    final_findings(chapter, text, cast, world)
    from ..report.metrics import chapter_figures
    from ..report.slop import slop_hits

    chapter_figures(text)
    slop_hits(text)


def repeated_ngram_share(texts: list[str], n: int = REPORT_NGRAM) -> float:
    """Share of word n-grams that occur more than once across the whole manuscript."""
    profiles = [ngram_profile(text, n) for text in texts]
    seen: set[int] = set()
    shared: set[int] = set()  # in more than one text
    for profile in profiles:
        shared |= seen & profile.distinct
        seen |= profile.distinct
    repeated = 0
    for profile in profiles:
        counts = profile.repeated
        repeated += sum(counts.get(gram, 1) for gram in shared & profile.distinct)
        repeated += sum(count for gram, count in counts.items() if gram not in shared)
    total = sum(profile.total for profile in profiles)
    return repeated / total if total else 0.0


class Assemble(Stage):
    name = "assemble"
    description = "The manuscript in one Markdown file, plus report.json and report.md."
    inputs = (
        "premise",
        "characters",
        "world",
        "structure",
        "chapters",
        "continuity",
        "polish",
        "metadata",
    )
    version = "2"  # 2: report.json/report.md are the scorecard (novelkit.report)
    path = "12-manuscript.md"
    extra_paths = ("report.json", "report.md")
    calls_llm = False

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        outline: a.Outline = ctx.read("chapters", shared=True)
        meta: a.Metadata = ctx.read("metadata", shared=True)
        cast: a.Cast = ctx.read("characters", shared=True)
        world: a.World = ctx.read("world", shared=True)
        chapters: list[a.ChapterText] = []
        missing: list[int] = []
        for plan in outline.chapters:
            if ctx.exists("polish", plan.number):
                chapters.append(ctx.read("polish", plan.number, shared=True))
            else:
                missing.append(plan.number)
        titles = meta.chapter_titles
        parts = []
        for chapter in chapters:
            title = titles[chapter.chapter - 1] if chapter.chapter <= len(titles) else chapter.title
            parts.append(f"# {title}\n\n{chapter.text.strip()}\n")
        manuscript = "\n".join(parts)

        open_findings: list[a.Finding] = []
        for chapter in chapters:
            open_findings += final_findings(chapter.chapter, chapter.text, cast, world)
            if ctx.exists("continuity", chapter.chapter):
                report: a.ContinuityReport = ctx.read("continuity", chapter.chapter, shared=True)
                open_findings += [
                    f
                    for f in report.findings
                    if f.source == "model" and f.quote and f.quote in chapter.text
                ]
        from ..report.scorecard import Book, BookChapter, build_scorecard

        book = Book(
            title=meta.title,
            chapters=[
                BookChapter(
                    c.chapter,
                    titles[c.chapter - 1] if c.chapter <= len(titles) else c.title,
                    c.text,
                    "polish",
                )
                for c in chapters
            ],
            outline=outline,
            premise=ctx.read("premise", shared=True),
            cast=cast,
            world=world,
            structure=ctx.read("structure", shared=True),
            open_findings=open_findings,
            missing=missing,
            # who wrote it is left to project.report(): an artefact depends on its inputs only
            # (a replayed run must reproduce the recorded one byte for byte)
        )
        card = build_scorecard(book)
        return {
            self.path: manuscript,
            "report.json": card.model_dump_json(indent=2) + "\n",
            "report.md": card.to_markdown()
            + "\nCharts and the HTML page: `novelkit report DIR` (artefacts/report/).\n",
        }


def render_report(report: a.Report) -> str:
    lines = [
        f"# Report: {report.title}",
        "",
        report.headline(),
        "",
        "## Chapters",
        "",
        "| # | title | target | actual | within ±10% |",
        "|---|---|---|---|---|",
    ]
    for c in report.chapters:
        lines.append(
            f"| {c.chapter} | {c.title} | {c.target_words} | {c.actual_words} | "
            f"{'yes' if c.within_tolerance else 'NO'} |"
        )
    lines += ["", "## Open continuity findings", ""]
    if not report.open_findings:
        lines.append("None.")
    for f in report.open_findings:
        lines.append(
            f"- Chapter {f.chapter} ({f.kind}, {f.severity}): {f.explanation}. "
            f"Quote: “{f.quote}” — {f.bible_entry}"
        )
    return "\n".join(lines) + "\n"


__all__ = ["Assemble", "Metadata", "render_report", "repeated_ngram_share", "unit_name"]
