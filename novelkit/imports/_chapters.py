"""Find the chapters of a manuscript's blocks; keep front and back matter apart.

The rules, in order: a pattern the user gives; headings (the highest level that occurs at
least twice: a single heading above it is the book's title); lines such as "Chapter 3" or
"CHAPTER THREE"; page breaks (in plain text, runs of blank lines) followed by a short line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._artefacts import SCENE_BREAK, count_words
from .._errors import ManuscriptError
from ._read import DEFAULT_PATTERN, HEADING, SCENE, TEXT, Block, Source

__all__ = ["Book", "ImportedChapter", "find_chapters"]

# headings that are front or back matter, never chapters
_MATTER = re.compile(
    r"^(dedication|contents|table of contents|copyright|acknowledge?ments?|epigraph|"
    r"about the author|also by .*|praise for .*|title page|half title|colophon|"
    r"author'?s note|a note on .*|notes|glossary|cast of characters|dramatis personae|"
    r"the end|end)$",
    re.IGNORECASE,
)
SHORT = 80  # characters: longer lines are prose, not a chapter title


@dataclass(frozen=True)
class ImportedChapter:
    number: int
    title: str
    text: str  # paragraphs separated by blank lines, scenes by "* * *"

    @property
    def words(self) -> int:
        return count_words(self.text)


@dataclass
class Book:
    """A manuscript split into chapters, with what came before and after them."""

    title: str
    author: str
    chapters: list[ImportedChapter]
    front_matter: str = ""
    back_matter: str = ""
    language: str = ""
    method: str = ""  # how the chapters were found: pattern, headings, chapter lines, breaks
    source: str = ""

    @property
    def words(self) -> int:
        return sum(c.words for c in self.chapters)


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ManuscriptError(
            f"chapter pattern {pattern!r} is not a valid regular expression: {exc}"
        ) from None


def find_chapters(source: Source, pattern: str | None = None) -> Book:
    """Split ``source`` into chapters; a clear error when no chapter breaks can be found."""
    blocks = source.blocks
    starts: list[int] = []
    method = ""
    if pattern:
        regex = _compile(pattern)
        starts = [
            i
            for i, b in enumerate(blocks)
            if b.kind in (TEXT, HEADING) and len(b.text) <= SHORT * 2 and regex.search(b.text)
        ]
        method = "pattern"
        if not starts:
            raise ManuscriptError(
                f"{source.name}: no line matches the chapter pattern {pattern!r}; "
                f"{_candidates(blocks)}"
            )
    if not starts:
        starts = _by_headings(blocks)
        method = "headings"
    if len(starts) < 2:
        regex = re.compile(DEFAULT_PATTERN, re.IGNORECASE)
        lines = [
            i
            for i, b in enumerate(blocks)
            if b.kind in (TEXT, HEADING) and len(b.text) <= SHORT and regex.match(b.text)
        ]
        if len(lines) >= 2 or (lines and not starts):
            starts, method = lines, "chapter lines"
    if len(starts) < 2:
        breaks = _by_breaks(blocks)
        if len(breaks) >= 2:
            starts, method = breaks, "page breaks"
    if not starts:
        raise ManuscriptError(
            f"{source.name}: found no chapter headings. {_candidates(blocks)} Mark each chapter "
            "with a heading (Heading 1 in Word, '# Title' in Markdown), or give a pattern that "
            "matches your chapter lines: import_manuscript(..., chapter_pattern=r'^Part \\d+') "
            "or novelkit import FILE --out DIR --chapter-pattern '^Part \\d+'"
        )
    return _assemble(source, starts, method)


def _candidates(blocks: list[Block]) -> str:
    breaks = sum(1 for b in blocks if b.page_break)
    short = sum(
        1
        for b in blocks
        if b.kind == TEXT
        and len(b.text) <= 40
        and not b.text.rstrip().endswith((".", ",", ";", "?", "!", '"', "”"))
    )
    return (
        f"Candidate breaks found: {breaks} page breaks or blank-line runs, {short} short lines "
        "that could be titles."
    )


def _by_headings(blocks: list[Block]) -> list[int]:
    levels = sorted({b.level for b in blocks if b.kind == HEADING})
    for level in levels:
        found = [
            i
            for i, b in enumerate(blocks)
            if b.kind == HEADING and b.level == level and not _MATTER.match(b.text.strip())
        ]
        if len(found) >= 2:
            return found
        if len(found) == 1 and level == levels[-1]:
            return found  # one chapter
    return []


def _by_breaks(blocks: list[Block]) -> list[int]:
    starts = []
    for i, b in enumerate(blocks):
        if not b.page_break or b.kind != TEXT or b.title:
            continue
        if len(b.text) > SHORT or b.text.rstrip().endswith((".", ",", ";")) and len(b.text) > 40:
            continue
        if i + 1 < len(blocks) and blocks[i + 1].kind == TEXT and not blocks[i + 1].page_break:
            starts.append(i)
    # the first break usually ends a title page, not a chapter: one short block on its own
    return [s for s in starts if not _MATTER.match(blocks[s].text.strip())]


def _join(blocks: list[Block]) -> str:
    scenes: list[list[str]] = [[]]
    for b in blocks:
        if b.kind == SCENE:
            if scenes[-1]:
                scenes.append([])
        elif b.text.strip():
            scenes[-1].append(b.text.strip())
    return f"\n\n{SCENE_BREAK}\n\n".join("\n\n".join(s) for s in scenes if s)


def _assemble(source: Source, starts: list[int], method: str) -> Book:
    blocks = source.blocks
    front = blocks[: starts[0]]
    chapters: list[ImportedChapter] = []
    back: list[Block] = []
    ends = [*starts[1:], len(blocks)]
    for start, end in zip(starts, ends, strict=True):
        heading = blocks[start]
        body = blocks[start + 1 : end]
        # back matter after the last chapter: a heading such as "Acknowledgements"
        if start == starts[-1]:
            for j, b in enumerate(body):
                if b.kind == HEADING and _MATTER.match(b.text.strip()):
                    back = body[j:]
                    body = body[:j]
                    break
        title = heading.text.strip()
        text = _join(body)
        if not text.strip():
            continue  # a part title or an empty page: no chapter
        chapters.append(ImportedChapter(len(chapters) + 1, title, text))
    if not chapters:
        raise ManuscriptError(f"{source.name}: the chapter headings have no text under them")
    title = source.title
    if not title:
        titled = [b.text for b in front if b.title or b.kind == HEADING]
        title = titled[0] if titled else ""
    return Book(
        title=title.strip(),
        author=source.author.strip(),
        chapters=chapters,
        front_matter=_front(front),
        back_matter=_join(back),
        language=source.language,
        method=method,
        source=source.name,
    )


def _front(blocks: list[Block]) -> str:
    lines = []
    for b in blocks:
        if b.kind == HEADING:
            lines.append("#" * b.level + " " + b.text)
        elif b.kind == SCENE:
            lines.append(SCENE_BREAK)
        else:
            lines.append(b.text)
    return "\n\n".join(lines)
