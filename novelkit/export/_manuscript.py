"""The assembled manuscript as a structure every exporter reads."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import date

from .._artefacts import count_words
from ._inline import scene_break

__all__ = ["Manuscript", "ManuscriptChapter"]


@dataclass(frozen=True)
class ManuscriptChapter:
    number: int
    title: str
    scenes: tuple[tuple[str, ...], ...]
    """Scenes in order; each scene is a tuple of paragraphs: prose whose ``*italics*`` and
    ``**bold**`` the exporters draw (see ``_inline``); any other markup is kept as text."""

    @property
    def paragraphs(self) -> list[str]:
        return [p for scene in self.scenes for p in scene]

    @property
    def word_count(self) -> int:
        return sum(count_words(p) for p in self.paragraphs)


@dataclass(frozen=True)
class Manuscript:
    title: str
    author: str
    chapters: tuple[ManuscriptChapter, ...]
    language: str = "en"
    contact: str = ""
    subtitle: str = ""
    blurb: str = ""
    date: str = field(default_factory=lambda: date.today().isoformat())
    source_hash: str = ""
    """sha256 of the manuscript Markdown this was built from (exports record it)."""

    @property
    def word_count(self) -> int:
        return sum(c.word_count for c in self.chapters)

    @property
    def identifier(self) -> str:
        """A stable urn:uuid for EPUB, derived from title, author and the text."""
        seed = f"{self.title}\n{self.author}\n{self.source_hash}"
        return f"urn:uuid:{uuid.UUID(hashlib.sha256(seed.encode()).hexdigest()[:32])}"

    @property
    def author_surname(self) -> str:
        parts = self.author.split()
        return parts[-1] if parts else self.author

    @classmethod
    def from_markdown(
        cls,
        text: str,
        *,
        title: str,
        author: str,
        language: str = "en",
        contact: str = "",
        subtitle: str = "",
        blurb: str = "",
        date: str | None = None,
    ) -> Manuscript:
        """Parse ``12-manuscript.md``: ``# Title`` per chapter; ``* * *`` (or ``***``, ``---``,
        ``___``, a lone ``#``, ``⁂``) between scenes. Paragraphs stay line-based, not Markdown
        blocks, so a line of dialogue that starts with "- " or "1." is prose, not a list."""
        chapters: list[ManuscriptChapter] = []
        heading: str | None = None
        scenes: list[list[str]] = [[]]
        para: list[str] = []

        def end_paragraph() -> None:
            if para:
                scenes[-1].append(" ".join(line.strip() for line in para))
                para.clear()

        def end_chapter() -> None:
            end_paragraph()
            if heading is not None:
                kept = tuple(tuple(s) for s in scenes if s)
                chapters.append(ManuscriptChapter(len(chapters) + 1, heading, kept))

        for line in text.splitlines():
            stripped = line.strip()
            if line.startswith("# ") and stripped != "#":
                end_chapter()
                heading, scenes, para = line[2:].strip(), [[]], []
            elif scene_break(stripped):
                end_paragraph()
                scenes.append([])
            elif not stripped:
                end_paragraph()
            elif heading is not None:
                para.append(stripped)
        end_chapter()
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        extra = {"date": date} if date else {}
        return cls(
            title=title,
            author=author,
            chapters=tuple(chapters),
            language=language,
            contact=contact,
            subtitle=subtitle,
            blurb=blurb,
            source_hash=digest,
            **extra,
        )
