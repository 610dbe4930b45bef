"""Pydantic schemas of every artefact, their file formats, and atomic file writes."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import ArtefactError

__all__ = [
    "Act",
    "ChapterPlan",
    "ChapterScenes",
    "ChapterSummary",
    "ChapterText",
    "Character",
    "Cast",
    "ContinuityReport",
    "Finding",
    "Location",
    "Metadata",
    "Outline",
    "Premise",
    "Relationship",
    "Report",
    "Scene",
    "StagedFile",
    "Structure",
    "World",
    "write_atomic",
]

SCENE_BREAK = "* * *"


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)


class Premise(Schema):
    logline: str = Field(min_length=1)
    genre: str
    themes: list[str] = Field(min_length=1)
    tone: str
    pov: str = Field(description="Point of view, e.g. 'third person limited'.")
    tense: Literal["past", "present"] = "past"
    premise: str = Field(description="The premise as the author gave it.")


class Location(Schema):
    name: str = Field(min_length=1)
    description: str


class World(Schema):
    setting: str
    era: str
    locations: list[Location] = Field(min_length=1)
    rules: list[str] = Field(default_factory=list)
    history: str = ""


class Relationship(Schema):
    name: str
    kind: str


class Character(Schema):
    name: str = Field(min_length=1)
    role: str
    description: str
    goal: str
    flaw: str
    arc: str
    voice: str
    status: Literal["alive", "dead", "absent"] = "alive"
    relationships: list[Relationship] = Field(default_factory=list)


class Cast(Schema):
    characters: list[Character] = Field(min_length=1)

    def names(self) -> list[str]:
        return [c.name for c in self.characters]


class Act(Schema):
    number: int = Field(ge=1)
    name: str
    summary: str
    beats: list[str] = Field(min_length=1)


class Structure(Schema):
    central_conflict: str
    acts: list[Act] = Field(min_length=1)
    ending: str


class ChapterPlan(Schema):
    number: int = Field(ge=1)
    title: str = Field(min_length=1)
    summary: str
    pov: str
    location: str
    beats: list[str] = Field(min_length=1)
    target_words: int = Field(ge=50)
    tension: int | None = Field(
        default=None,
        ge=1,
        le=10,
        description="How high the tension and stakes run in this chapter: 1 calm, 10 the climax.",
    )


class Outline(Schema):
    chapters: list[ChapterPlan] = Field(min_length=1)

    def chapter(self, number: int) -> ChapterPlan:
        for plan in self.chapters:
            if plan.number == number:
                return plan
        raise ArtefactError(f"the outline has no chapter {number}")


class Scene(Schema):
    number: int = Field(ge=1)
    goal: str
    conflict: str
    outcome: str
    location: str
    cast: list[str] = Field(min_length=1)
    beat: str


class ChapterScenes(Schema):
    chapter: int = Field(ge=1)
    scenes: list[Scene] = Field(min_length=1)


class ChapterSummary(Schema):
    chapter: int = Field(ge=1)
    summary: str
    characters: list[str] = Field(default_factory=list)
    ending: str = Field(default="", description="The chapter's last lines, for the next one.")


class Finding(Schema):
    kind: str = Field(description="e.g. unknown-character, dead-character-acts, spelling")
    severity: Literal["info", "warning", "error"] = "warning"
    chapter: int = Field(ge=1)
    quote: str
    bible_entry: str = Field(description="The story-bible entry the quote contradicts.")
    explanation: str
    source: Literal["model", "check"] = "check"
    wrong: str = Field(default="", description="For a spelling finding: the variant in the text.")
    right: str = Field(default="", description="For a spelling finding: the bible's spelling.")


class ContinuityReport(Schema):
    chapter: int = Field(ge=1)
    findings: list[Finding] = Field(default_factory=list)


class Metadata(Schema):
    title: str = Field(min_length=1)
    subtitle: str = ""
    blurb: str
    chapter_titles: list[str] = Field(min_length=1)
    author: str
    language: str
    keywords: list[str] = Field(default_factory=list)


class ChapterLength(Schema):
    chapter: int
    title: str
    target_words: int
    actual_words: int
    within_tolerance: bool


class Report(Schema):
    title: str
    total_words: int
    chapters: list[ChapterLength]
    repeated_12gram_share: float = Field(ge=0.0, le=1.0)
    missing_chapters: list[int] = Field(default_factory=list)
    duplicated_chapters: list[int] = Field(default_factory=list)
    open_findings: list[Finding] = Field(default_factory=list)

    def headline(self) -> str:
        within = sum(c.within_tolerance for c in self.chapters)
        return (
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


class ChapterText(Schema):
    """Prose of one chapter: a title and scenes of paragraphs, stored as Markdown."""

    chapter: int = Field(ge=1)
    title: str
    text: str

    @property
    def words(self) -> int:
        return count_words(self.text)

    def scenes(self) -> list[str]:
        return [s.strip() for s in self.text.split(f"\n{SCENE_BREAK}\n") if s.strip()]

    def to_markdown(self) -> str:
        return f"# {self.title}\n\n{self.text.strip()}\n"

    @classmethod
    def from_markdown(cls, chapter: int, text: str) -> ChapterText:
        lines = text.lstrip("\ufeff").splitlines()
        title = f"Chapter {chapter}"
        if lines and lines[0].startswith("# "):
            title = lines[0][2:].strip()
            lines = lines[1:]
        return cls(chapter=chapter, title=title, text="\n".join(lines).strip())


WORD = re.compile(r"[\w'’-]+")


def count_words(text: str) -> int:
    return len(WORD.findall(text))


class Paths(dict[str, Path]):
    """Absolute paths under ``base`` by relative path, each joined once: pathlib's joins cost
    microseconds, and every unit looks up the same few dozen files."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base

    def __missing__(self, relative: str) -> Path:
        path = self[relative] = self.base / relative
        return path


def file_version(path: Path) -> tuple[int, int, int]:
    """Changes whenever the file does: an atomic write gives it a new inode, an edit in place a
    new mtime or size. Raises FileNotFoundError for a missing file."""
    return stat_version(os.stat(path))


def stat_version(st: os.stat_result) -> tuple[int, int, int]:
    """:func:`file_version` from a stat already taken."""
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# what ``UnitContext.read(..., shared=True)`` parsed, by path: ((model, version), object). The
# version is the staged digest while a file is on its way to disk, then its file_version
SharedReads = dict[Path, tuple[tuple[type[BaseModel], object], Any]]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize(value: BaseModel) -> bytes:
    if isinstance(value, ChapterText):
        return value.to_markdown().encode("utf-8")
    return (value.model_dump_json(indent=2) + "\n").encode("utf-8")


def parse(model: type[BaseModel], path: Path, data: bytes, chapter: int | None = None) -> Any:
    """Read an artefact file; a file that no longer validates names the file and the field."""
    try:
        if model is ChapterText:
            return ChapterText.from_markdown(chapter or 1, data.decode("utf-8"))
        return model.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        raise ArtefactError(
            f"{path} does not validate as {model.__name__}: {problems}. "
            "Fix the file (or delete it to regenerate); nothing was overwritten."
        ) from None
    except UnicodeDecodeError:
        raise ArtefactError(f"{path} is not UTF-8 text; fix or delete it") from None


@dataclass(frozen=True, eq=False)
class StagedFile:
    """An artefact serialised and hashed, on its way to ``path``."""

    relative: str
    path: Path
    data: bytes
    digest: str


def write_atomic(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` so a crash leaves either the old file or the new one.

    ``sync_dir=False`` leaves the directory fsync to the caller (one for many files).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


def clean_temp_files(folder: Path) -> int:
    """Remove temp files a crash left behind; returns how many."""
    removed = 0
    if folder.exists():
        for tmp in folder.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


# novelkit's JSON artefact models, whose objects read back equal to what was written (exact
# types: a subclass may exclude fields or serialise differently)
JSON_SCHEMAS: frozenset[type[BaseModel]] = frozenset(
    model
    for model in list(globals().values())
    if isinstance(model, type) and issubclass(model, Schema) and model not in (Schema, ChapterText)
)
