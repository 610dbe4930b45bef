"""The scorecard of a book: figures per chapter and for the whole, and the faults found, each
with its evidence. Built from text and the plan alone (:func:`build_scorecard`); no model.

``report.json`` holds :class:`Scorecard` as JSON. Its first keys are those of the first
report (title, total_words, chapters with target and actual words, repeated_12gram_share,
missing and duplicated chapters, open findings), so readers of that file keep working.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from .. import _artefacts as a
from . import metrics, slop
from .cast import Alias, StrayName, cast_presence

__all__ = ["Book", "BookChapter", "ChapterScore", "Issue", "Scorecard", "build_scorecard"]

FORMAT = "novelkit-scorecard-1"
TOLERANCE = 0.10  # words within ±10% of the chapter's target
SEAM_ECHO = 0.25  # an opening that repeats a quarter of the previous chapter's last paragraph
REPEATED_PARAGRAPH_WORDS = 8  # shorter paragraphs ("No.", a stock reply) may repeat
OPENING_WORDS = 4
REPEATED_OPENING = 5  # a paragraph opening used this often (and by ≥1% of paragraphs)
REPORT_NGRAM = 12


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Issue(_Model):
    """One fault, where it is, and the text that shows it."""

    kind: str
    severity: str = "warning"  # info, warning or error
    chapters: list[int] = Field(default_factory=list)
    message: str
    evidence: str = ""


class ChapterScore(_Model):
    chapter: int
    title: str
    target_words: int
    actual_words: int
    within_tolerance: bool
    source: str = ""  # the stage whose text was scored: polish, revision or draft
    dialogue_share: float = 0.0
    sentence_mean: float = 0.0
    sentence_spread: float = 0.0
    readability: float = 0.0
    mattr: float = 0.0
    tense: str = "unknown"
    person: str = "unknown"
    cut_off: bool = False
    repeated_ngram_share: float = 0.0
    slop_per_1k: float = 0.0
    slop: dict[str, int] = Field(default_factory=dict)
    seam_overlap: float = 0.0
    tension: int | None = None
    act: int | None = None
    judge: float | None = None


class Repeat(_Model):
    text: str
    chapters: list[int]
    count: int


class ActSpan(_Model):
    number: int
    name: str
    chapters: list[int]
    beats: list[str] = Field(default_factory=list)


class Edge(_Model):
    source: str
    target: str
    kind: str


class JudgeCriterion(_Model):
    name: str
    score: float  # 0–20 as the judge gave it
    negative: bool = False  # a fault: lower is better


class JudgeResult(_Model):
    """What the LLM judge said about one chapter (``chapter`` 0 is the whole book)."""

    chapter: int
    criteria: list[JudgeCriterion]
    score: float  # 0–10: the mean of the criteria, faults inverted
    comment: str = ""
    text_digest: str = ""  # the text it judged: a later edit makes the score stale
    stale: bool = False


class JudgeScores(_Model):
    rubric: str
    model: str
    results: list[JudgeResult]
    book_score: float | None = None
    cost: float = 0.0


class Scorecard(_Model):
    """The scorecard of a book (see :func:`novelkit.Project.report`)."""

    title: str
    total_words: int
    chapters: list[ChapterScore]
    repeated_12gram_share: float = 0.0
    missing_chapters: list[int] = Field(default_factory=list)
    duplicated_chapters: list[int] = Field(default_factory=list)
    open_findings: list[a.Finding] = Field(default_factory=list)
    # added by the scorecard
    format: str = ""  # FORMAT; empty in a report.json of the first format
    backend: str = ""
    models: list[str] = Field(default_factory=list)
    placeholder: bool = False  # written by the offline backend: placeholder prose
    expected_pov: str = ""
    expected_tense: str = ""
    target_words: int = 0
    mattr: float = 0.0
    dialogue_share: float = 0.0
    readability: float = 0.0
    sentence_spread: float = 0.0
    slop_per_1k: float = 0.0
    slop_version: str = slop.VERSION
    duplicate_titles: dict[str, list[int]] = Field(default_factory=dict)
    repeated_paragraphs: list[Repeat] = Field(default_factory=list)
    repeated_openings: list[Repeat] = Field(default_factory=list)
    repeated_chapter_openings: list[Repeat] = Field(default_factory=list)
    presence: dict[str, list[int]] = Field(default_factory=dict)
    stray_names: list[StrayName] = Field(default_factory=list)
    absent_cast: list[str] = Field(default_factory=list)
    aliases: list[Alias] = Field(default_factory=list)
    relationships: list[Edge] = Field(default_factory=list)
    acts: list[ActSpan] = Field(default_factory=list)
    issues: list[Issue] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)  # what is missing or unreadable
    judge: JudgeScores | None = None
    _texts: dict[int, str] = PrivateAttr(default_factory=dict)  # what was scored, for the judge
    _charts: dict[str, str] | None = PrivateAttr(default=None)

    def headline(self) -> str:
        within = sum(c.within_tolerance for c in self.chapters)
        text = (
            f"{self.total_words:,} words in {len(self.chapters)} chapters "
            f"({within}/{len(self.chapters)} within ±10% of target); "
            f"repeated 12-grams {self.repeated_12gram_share:.1%}; "
            f"{len(self.open_findings)} open continuity findings"
            + (f"; missing chapters {self.missing_chapters}" if self.missing_chapters else "")
            + (
                f"; duplicated chapters {self.duplicated_chapters}"
                if self.duplicated_chapters
                else ""
            )
        )
        if self.format:  # a scorecard, not a first-format report read back
            text += f"; slop {self.slop_per_1k:.2f}/1k words; MATTR {self.mattr:.2f}"
            text += f"; {len(self.issues)} issue{'s' * (len(self.issues) != 1)}"
        if self.placeholder:
            text += " (placeholder prose from the offline backend)"
        return text

    def figures(self) -> dict[str, Any]:
        """The book's figures as one flat row (what :func:`novelkit.compare` lines up)."""
        judged = self.judge.book_score if self.judge else None
        return {
            "title": self.title,
            "backend": self.backend,
            "model": ", ".join(self.models),
            "chapters": len(self.chapters),
            "words": self.total_words,
            "target_words": self.target_words,
            "within_tolerance": sum(c.within_tolerance for c in self.chapters),
            "missing": len(self.missing_chapters),
            "duplicated": len(self.duplicated_chapters),
            "repeated_12gram_share": self.repeated_12gram_share,
            "repeated_paragraphs": len(self.repeated_paragraphs),
            "slop_per_1k": self.slop_per_1k,
            "mattr": self.mattr,
            "dialogue_share": self.dialogue_share,
            "sentence_spread": self.sentence_spread,
            "readability": self.readability,
            "stray_names": len(self.stray_names),
            "absent_cast": len(self.absent_cast),
            "open_findings": len(self.open_findings),
            "issues": len(self.issues),
            "judge": judged,
        }

    def issues_of(self, kind: str) -> list[Issue]:
        return [issue for issue in self.issues if issue.kind == kind]

    def to_markdown(self, charts: dict[str, str] | None = None) -> str:
        from .render import markdown

        return markdown(self, charts or {})

    def to_html(self, charts: dict[str, str] | None = None) -> str:
        """A standalone HTML page; ``charts`` maps a chart's name to its SVG text or file name."""
        from .render import html_page

        return html_page(self, charts or {})

    def _repr_html_(self) -> str:
        from .render import html_fragment

        return html_fragment(self, self._inline_charts())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _inline_charts(self) -> dict[str, str]:
        from .charts import charts_available, draw_all

        if not charts_available():
            return {}
        if self._charts is None:
            self._charts = draw_all(self)
        return self._charts

    def __repr__(self) -> str:
        return f"<Scorecard {self.title!r}: {self.headline()}>"


@dataclass
class BookChapter:
    number: int
    title: str
    text: str
    source: str = ""


@dataclass
class Book:
    """What the scorecard reads: the plan, the chapters that exist, and who wrote them."""

    title: str
    chapters: list[BookChapter]
    outline: a.Outline | None = None
    premise: a.Premise | None = None
    cast: a.Cast | None = None
    world: a.World | None = None
    structure: a.Structure | None = None
    open_findings: list[a.Finding] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    backend: str = ""
    models: list[str] = field(default_factory=list)
    default_target: int = 0


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _opening(paragraph: str) -> str:
    return " ".join(metrics.plain_words(paragraph[:120])[:OPENING_WORDS])


def _acts(structure: a.Structure | None, numbers: Sequence[int]) -> list[ActSpan]:
    """Chapters shared out among the acts in order, as evenly as they go (the plan does not
    say which chapter belongs to which act)."""
    if structure is None or not numbers:
        return []
    acts = sorted(structure.acts, key=lambda act: act.number)
    out = []
    for i, act in enumerate(acts):
        start = round(i * len(numbers) / len(acts))
        end = round((i + 1) * len(numbers) / len(acts))
        out.append(
            ActSpan(
                number=act.number, name=act.name, chapters=list(numbers[start:end]), beats=act.beats
            )
        )
    return out


def _relationships(cast: a.Cast | None) -> list[Edge]:
    if cast is None:
        return []
    names = cast.names()
    by_part = {part: name for name in names for part in name.split()}
    edges: dict[frozenset[str], Edge] = {}
    for person in cast.characters:
        for rel in person.relationships:
            other = (
                rel.name
                if rel.name in names
                else by_part.get(rel.name.split()[0] if rel.name else "")
            )
            if other and other != person.name:
                edges.setdefault(
                    frozenset((person.name, other)),
                    Edge(source=person.name, target=other, kind=rel.kind),
                )
    return list(edges.values())


def build_scorecard(book: Book) -> Scorecard:
    """Score ``book``: every figure and fault of the scorecard, from text and plan alone."""
    from ..stages.finishing import repeated_ngram_share, text_digest

    plans = {p.number: p for p in book.outline.chapters} if book.outline else {}
    chapters = sorted(book.chapters, key=lambda c: c.number)
    issues: list[Issue] = []
    expected_tense = book.premise.tense if book.premise else ""
    expected_pov = book.premise.pov if book.premise else ""
    expected_person = next(
        (p for p in ("first", "second", "third") if p in expected_pov.lower()), ""
    )
    acts = _acts(book.structure, [c.number for c in chapters] or sorted(plans))
    act_of = {n: span.number for span in acts for n in span.chapters}

    scores: list[ChapterScore] = []
    previous_end = ""
    all_slop: Counter[str] = Counter()
    for chapter in chapters:
        figures = metrics.chapter_figures(chapter.text)
        words = figures.words  # the same count as count_words (and chapter_words)
        plan = plans.get(chapter.number)
        target = plan.target_words if plan else book.default_target
        hits = slop.slop_hits(chapter.text)
        all_slop.update(hits)
        paras = metrics.paragraphs(chapter.text)
        seam = metrics.seam_overlap(previous_end, paras[0]) if previous_end and paras else 0.0
        previous_end = paras[-1] if paras else ""
        scores.append(
            ChapterScore(
                chapter=chapter.number,
                title=chapter.title,
                target_words=target,
                actual_words=words,
                within_tolerance=abs(words - target) <= TOLERANCE * target if target else True,
                source=chapter.source,
                dialogue_share=figures.dialogue_share,
                sentence_mean=figures.sentence_mean,
                sentence_spread=figures.sentence_spread,
                readability=figures.readability,
                mattr=figures.mattr,
                tense=figures.tense,
                person=figures.person,
                cut_off=figures.cut_off,
                repeated_ngram_share=figures.repeated_ngram_share,
                slop_per_1k=round(1000 * sum(hits.values()) / words, 2) if words else 0.0,
                slop=hits,
                seam_overlap=seam,
                tension=getattr(plan, "tension", None) if plan else None,
                act=act_of.get(chapter.number),
            )
        )
        n = chapter.number
        if not chapter.text.strip():
            issues.append(
                Issue(
                    kind="empty-chapter",
                    severity="error",
                    chapters=[n],
                    message=f"chapter {n} is empty ({chapter.source})",
                )
            )
            continue
        if figures.cut_off:
            issues.append(
                Issue(
                    kind="cut-off",
                    severity="error",
                    chapters=[n],
                    message=f"chapter {n} stops mid-sentence",
                    evidence=_short(paras[-1][-160:]),
                )
            )
        if target and abs(words - target) > TOLERANCE * target:
            issues.append(
                Issue(
                    kind="length",
                    chapters=[n],
                    message=f"chapter {n} has {words:,} words against a target of {target:,}",
                )
            )
        if (
            expected_tense
            and figures.tense in ("past", "present")
            and figures.tense != expected_tense
        ):
            issues.append(
                Issue(
                    kind="tense",
                    chapters=[n],
                    message=f"chapter {n} is told in the {figures.tense} tense; the premise says {expected_tense}",
                )
            )
        elif expected_tense and figures.tense == "mixed":
            issues.append(
                Issue(
                    kind="tense",
                    severity="info",
                    chapters=[n],
                    message=f"chapter {n} mixes past and present tense in its narration",
                )
            )
        if expected_person and figures.person not in ("unknown", expected_person):
            issues.append(
                Issue(
                    kind="pov",
                    chapters=[n],
                    message=f"chapter {n} is narrated in the {figures.person} person; the premise says {expected_pov!r}",
                )
            )
        if hits:
            listed = ", ".join(f"“{p}” ×{c}" for p, c in sorted(hits.items()))
            issues.append(
                Issue(
                    kind="slop",
                    severity="info",
                    chapters=[n],
                    message=f"chapter {n} uses {sum(hits.values())} stock phrase(s)",
                    evidence=listed,
                )
            )
        if seam > SEAM_ECHO:
            issues.append(
                Issue(
                    kind="seam-echo",
                    severity="info",
                    chapters=[n],
                    message=f"chapter {n} opens by repeating the end of chapter {scores[-2].chapter}",
                    evidence=_short(paras[0]),
                )
            )

    for number in book.missing:
        issues.append(
            Issue(
                kind="missing-chapter",
                severity="error",
                chapters=[number],
                message=f"chapter {number} is planned but has no text",
            )
        )

    # duplicates: the same text twice, the same title twice
    seen: dict[str, int] = {}
    duplicated = []
    for chapter in chapters:
        if not chapter.text.strip():
            continue
        digest = text_digest(chapter.text)
        if digest in seen:
            duplicated.append(chapter.number)
            issues.append(
                Issue(
                    kind="duplicated-chapter",
                    severity="error",
                    chapters=[seen[digest], chapter.number],
                    message=f"chapter {chapter.number} repeats chapter {seen[digest]} word for word",
                )
            )
        seen.setdefault(digest, chapter.number)
    titles: dict[str, list[int]] = {}
    for chapter in chapters:
        titles.setdefault(" ".join(chapter.title.lower().split()), []).append(chapter.number)
    duplicate_titles = {
        next(c.title for c in chapters if c.number == numbers[0]): numbers
        for numbers in titles.values()
        if len(numbers) > 1
    }
    for title, numbers in duplicate_titles.items():
        issues.append(
            Issue(
                kind="duplicate-title",
                chapters=numbers,
                message=f"chapters {', '.join(map(str, numbers))} share the title “{title}”",
            )
        )

    # repetition across the book: paragraphs, paragraph openings, chapter openings
    paragraph_places: dict[str, list[int]] = {}
    originals: dict[str, str] = {}
    openings: dict[str, list[int]] = {}
    chapter_openings: dict[str, list[int]] = {}
    total_paragraphs = 0
    for chapter in chapters:
        paras = metrics.paragraphs(chapter.text)
        if paras:
            chapter_openings.setdefault(_opening(paras[0]), []).append(chapter.number)
        for paragraph in paras:
            total_paragraphs += 1
            size = paragraph.count(" ") + 1  # _paragraphs collapsed the whitespace
            if size >= REPEATED_PARAGRAPH_WORDS:
                key = paragraph.lower()
                paragraph_places.setdefault(key, []).append(chapter.number)
                originals.setdefault(key, paragraph)
            if size >= OPENING_WORDS:
                openings.setdefault(_opening(paragraph), []).append(chapter.number)
    repeated_paragraphs = [
        Repeat(text=_short(originals[key]), chapters=sorted(set(where)), count=len(where))
        for key, where in paragraph_places.items()
        if len(where) > 1
    ]
    for repeat in repeated_paragraphs:
        issues.append(
            Issue(
                kind="repeated-paragraph",
                chapters=repeat.chapters,
                message=f"a paragraph appears {repeat.count} times (chapters {', '.join(map(str, repeat.chapters))})",
                evidence=repeat.text,
            )
        )
    floor = max(REPEATED_OPENING, total_paragraphs // 100)
    repeated_openings = sorted(
        (
            Repeat(text=opening, chapters=sorted(set(where)), count=len(where))
            for opening, where in openings.items()
            if len(where) >= floor
        ),
        key=lambda r: -r.count,
    )[:20]
    for repeat in repeated_openings:
        issues.append(
            Issue(
                kind="repeated-opening",
                severity="info",
                chapters=repeat.chapters,
                message=f"{repeat.count} paragraphs open with “{repeat.text} …”",
            )
        )
    repeated_chapter_openings = [
        Repeat(text=opening, chapters=where, count=len(where))
        for opening, where in chapter_openings.items()
        if len(where) > 1 and opening
    ]
    for repeat in repeated_chapter_openings:
        issues.append(
            Issue(
                kind="repeated-chapter-opening",
                chapters=repeat.chapters,
                message=f"chapters {', '.join(map(str, repeat.chapters))} open the same way: “{repeat.text} …”",
            )
        )

    # the cast
    cast_names = book.cast.names() if book.cast else []
    places = [loc.name for loc in book.world.locations] if book.world else []
    people = cast_presence([(c.number, c.text) for c in chapters], cast_names, places)
    for stray in people.stray:
        issues.append(
            Issue(
                kind="stray-name",
                chapters=stray.chapters,
                message=f"{stray.name} speaks or acts but is not in the cast",
                evidence=stray.quote,
            )
        )
    if len(chapters) >= len(plans) and not book.missing:  # only a whole book can show absence
        for name in people.absent:
            issues.append(
                Issue(
                    kind="absent-character",
                    severity="info",
                    message=f"{name} is in the cast but never appears",
                )
            )
    for alias in people.aliases:
        issues.append(
            Issue(
                kind="alias", severity="info", message=f"{' / '.join(alias.names)}: {alias.reason}"
            )
        )
    presence_by_chapter = {n: i for i, n in enumerate(people.chapters)}
    for chapter in chapters:
        plan = plans.get(chapter.number)
        if plan is None or plan.pov not in people.presence or not chapter.text.strip():
            continue
        if not people.presence[plan.pov][presence_by_chapter[chapter.number]]:
            issues.append(
                Issue(
                    kind="pov",
                    chapters=[chapter.number],
                    message=f"chapter {chapter.number}'s point-of-view character {plan.pov} never appears in it",
                )
            )

    for finding in book.open_findings:
        issues.append(
            Issue(
                kind="continuity",
                severity=finding.severity,
                chapters=[finding.chapter],
                message=finding.explanation,
                evidence=finding.quote,
            )
        )

    texts = [c.text for c in chapters if c.text.strip()]
    sums = [metrics.chapter_figures(t).mattr_sums for t in texts]
    windows = sum(n for _, n in sums)
    total = sum(s.actual_words for s in scores)
    spreads = [s.sentence_spread for s in scores if s.actual_words]
    card = Scorecard(
        format=FORMAT,
        title=book.title,
        total_words=total,
        chapters=scores,
        repeated_12gram_share=round(repeated_ngram_share(texts, REPORT_NGRAM), 4),
        missing_chapters=list(book.missing),
        duplicated_chapters=duplicated,
        open_findings=list(book.open_findings),
        backend=book.backend,
        models=list(book.models),
        # the ledger says the offline backend wrote it (text written by hand or imported is not)
        placeholder="offline" in book.models,
        expected_pov=expected_pov,
        expected_tense=expected_tense,
        target_words=sum(p.target_words for p in plans.values()),
        mattr=round(sum(total for total, _ in sums) / windows, 4) if windows else 0.0,
        dialogue_share=round(sum(s.dialogue_share * s.actual_words for s in scores) / total, 4)
        if total
        else 0.0,
        readability=round(sum(s.readability * s.actual_words for s in scores) / total, 1)
        if total
        else 0.0,
        sentence_spread=round(statistics.fmean(spreads), 2) if spreads else 0.0,
        slop_per_1k=round(1000 * sum(all_slop.values()) / total, 2) if total else 0.0,
        duplicate_titles=duplicate_titles,
        repeated_paragraphs=repeated_paragraphs,
        repeated_openings=repeated_openings,
        repeated_chapter_openings=repeated_chapter_openings,
        presence=people.presence,
        stray_names=people.stray,
        absent_cast=people.absent if len(chapters) >= len(plans) and not book.missing else [],
        aliases=people.aliases,
        relationships=_relationships(book.cast),
        acts=acts,
        issues=issues,
        problems=list(book.problems),
    )
    card._texts = {c.number: c.text for c in chapters}
    return card
