"""``nk.import_manuscript``: a manuscript file becomes a project whose chapters are kept.

Nothing is written until the file has been read and split into chapters and the settings
validate. The folder only becomes a project (novel.toml) when the extraction has finished;
until then it holds the source chapters and ``.novelkit/import.json``, and the same import
run again resumes it (finished model calls are answered from the store, never paid twice).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .. import _artefacts as a
from .._config import validate_config
from .._errors import ManuscriptError, ProjectError
from .._freshness import KEPT
from .._pipeline import Pipeline, unit_name
from .._status import JobState
from ._chapters import Book, find_chapters
from ._extract import SOURCE, extraction_stages, source_path
from ._read import read_source
from ._voice import profile_from_files, voice_profile, write_voice

if TYPE_CHECKING:
    from .._job import Job
    from .._project import Project
    from ..llm.base import Backend

__all__ = ["IMPORTED", "import_info", "import_manuscript", "read_manuscript"]

IMPORTED = f"{KEPT}imported"
MARKER = "import.json"  # under .novelkit/ while an import is unfinished


def read_manuscript(
    source: str | os.PathLike[str] | IO[bytes] | bytes,
    *,
    chapter_pattern: str | None = None,
    fmt: str | None = None,
    name: str | None = None,
) -> Book:
    """Read a .docx, .md, .txt or .epub file and split it into chapters (nothing is written)."""
    path = Path(source) if isinstance(source, str | os.PathLike) else source
    return find_chapters(read_source(path, name=name, fmt=fmt), chapter_pattern)


def _settings(book: Book, config: dict[str, Any]) -> dict[str, Any]:
    count = len(book.chapters)
    given = config.get("chapters")
    if given is not None and given != count:
        raise ManuscriptError(
            f"{book.source} has {count} chapters (found by {book.method}), but chapters={given} "
            "was given; leave chapters out to import them all, then add more with "
            f"project.extend(chapters={max(1, given - count)})"
            if given > count
            else f"{book.source} has {count} chapters (found by {book.method}), but "
            f"chapters={given} was given; leave chapters out, or fix the chapter headings"
        )
    mean = book.words // max(1, count)
    settings: dict[str, Any] = {
        "premise": f"Imported from {book.source}" + (f": {book.title}" if book.title else ""),
        "chapters": count,
        "words_per_chapter": min(20_000, max(100, mean)),
    }
    if book.title:
        settings["title"] = book.title[:300]
    if book.author:
        settings["author"] = book.author[:200]
    if book.language and validate_language(book.language):
        settings["language"] = book.language
    return {**settings, **{k: v for k, v in config.items() if v is not None}}


def validate_language(value: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", value) is not None


def _source_digest(book: Book) -> str:
    blob = json.dumps(
        [book.title, book.author, [(c.title, c.text) for c in book.chapters]], ensure_ascii=False
    )
    return a.sha256(blob.encode("utf-8"))


def import_manuscript(
    source: str | os.PathLike[str] | IO[bytes] | bytes,
    project_dir: str | os.PathLike[str],
    *,
    chapter_pattern: str | None = None,
    fmt: str | None = None,
    name: str | None = None,
    style_samples: list[str | os.PathLike[str]] | None = None,
    backend_instance: Backend | None = None,
    follow: Callable[[Job], object] | None = None,
    **config: Any,
) -> Project:
    """Import a manuscript into a new project folder and extract its story bible.

    The chapters become the draft (and polished) text, kept as written; premise, world,
    cast, structure, outline and scenes are read from them with the backend. Then
    ``project.start()`` checks continuity and assembles, and ``project.extend(chapters=K)``
    writes more in the voice measured from the imported text (or from ``style_samples``).
    Run the same import again to resume one that stopped. ``follow(job)``, if given, is
    called with the extraction job and returns when it has stopped (the command line shows
    its progress this way).

        project = nk.import_manuscript("draft.docx", "novels/mine", backend="offline")
    """
    from .._project import CONFIG, Project

    book = read_manuscript(source, chapter_pattern=chapter_pattern, fmt=fmt, name=name)
    settings = validate_config(_settings(book, config), where="import_manuscript()")
    if style_samples is not None:
        voice = profile_from_files(style_samples)
    else:
        voice = voice_profile((c.text for c in book.chapters), [book.source])
    root = Path(project_dir)
    if (root / CONFIG).exists():
        raise ProjectError(
            f"{root} already holds a project; import into a new folder (nothing was changed)"
        )
    digest = _source_digest(book)
    marker = root / ".novelkit" / MARKER
    if marker.exists():
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            recorded = {}
        if recorded.get("source") != digest:
            raise ProjectError(
                f"{root} holds an unfinished import of {recorded.get('name', 'another file')}; "
                "run that import again to finish it, or import into another folder"
            )
    elif root.exists() and any(p.name != ".novelkit" for p in root.iterdir()):
        raise ProjectError(
            f"{root} is not empty; import into a new or empty folder (nothing was changed)"
        )
    if settings.backend == "offline" and backend_instance is None:
        from ..llm import make_backend

        make_backend(settings, root)  # bad backend_options fail before anything is written
    # the store first: artefacts without a store would read as a project whose store was lost
    _make_folders(root)
    project = Project(root, settings, backend=backend_instance)
    try:
        _write_source(root, book, digest, marker)
        write_voice(root, voice)
        _extract(project, book, follow)
        _keep_imported(project, len(book.chapters))
        premise = project.artefacts["premise"]
        final = settings
        if settings.premise.startswith("Imported from "):
            final = validate_config(
                {**settings.model_dump(exclude_none=True), "premise": premise.premise},
                where="import_manuscript()",
            )
        a.write_atomic(root / CONFIG, final.to_toml().encode("utf-8"))
        marker.unlink(missing_ok=True)
    finally:
        project.close()
    from .._project import open_project

    return open_project(root, backend_instance=backend_instance)


def _make_folders(root: Path) -> None:
    try:
        for sub in ("artefacts", "exports", ".novelkit"):
            (root / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProjectError(f"cannot create the project at {root}: {exc.strerror or exc}") from None


def _write_source(root: Path, book: Book, digest: str, marker: Path) -> None:
    """The chapters as found, front and back matter apart, and the unfinished-import marker."""
    try:
        base = root / "artefacts"
        for chapter in book.chapters:
            kept = a.ChapterText(chapter=chapter.number, title=chapter.title, text=chapter.text)
            path = base / source_path(unit_name(chapter.number))
            data = kept.to_markdown().encode("utf-8")
            if not path.exists() or path.read_bytes() != data:
                a.write_atomic(path, data, sync_dir=False)
        for part, text in (
            ("front-matter.md", book.front_matter),
            ("back-matter.md", book.back_matter),
        ):
            if text.strip():
                a.write_atomic(base / SOURCE / part, (text.strip() + "\n").encode("utf-8"))
        info = {
            "name": book.source,
            "source": digest,
            "title": book.title,
            "author": book.author,
            "chapters": len(book.chapters),
            "words": book.words,
            "found_by": book.method,
        }
        a.write_atomic(
            base / SOURCE / "book.json",
            (json.dumps(info, indent=2) + "\n").encode(),
            sync_dir=False,
        )
        a.fsync_dir(base / SOURCE)  # one directory sync makes every rename above durable
        if not marker.exists():
            a.write_atomic(marker, json.dumps(info).encode("utf-8"))
    except PermissionError:
        raise ProjectError(
            f"cannot write to {root}: permission denied; choose a folder you can write"
        ) from None
    except OSError as exc:
        raise ProjectError(f"cannot create the project at {root}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def using_pipeline(project: Project, pipeline: Pipeline) -> Iterator[None]:
    """Run ``project`` with ``pipeline`` for a while (its stand-in stages), then the default."""
    default = project.pipeline
    project.pipeline = project.freshness.pipeline = pipeline
    try:
        yield
    finally:
        project.pipeline = project.freshness.pipeline = default


def _extract(project: Project, book: Book, follow: Callable[[Job], object] | None) -> None:
    """Run the extraction stages as a job (a resumed import continues the stopped one)."""
    with using_pipeline(project, Pipeline(extraction_stages())):
        job = project.start()
        if follow is not None:
            follow(job)
        state = job.wait()
    if state is not JobState.SUCCEEDED:
        status = job.status
        raise ProjectError(
            f"the import of {book.source} stopped while reading the story from the text "
            f"({state.value}: {status.error or status.message}); run the same import again to "
            "resume: finished calls are not paid again"
        )


def _keep_imported(project: Project, chapters: int) -> None:
    """Mark the extracted and imported units kept, and copy the text as revised and polished."""
    store = project.store
    for stage in extraction_stages():
        for unit, record in store.units(stage.name).items():
            if record["state"] == "done":
                store.set_unit(stage.name, unit, "done", fingerprint=IMPORTED)
    for number in range(1, chapters + 1):
        unit = unit_name(number)
        text = project.paths[f"07-draft/{unit}.md"].read_bytes()
        for name in ("revision", "polish"):
            relative = project.pipeline.get(name).output_paths(unit)[0]
            a.write_atomic(project.paths[relative], text)
            store.set_unit(
                name, unit, "done", fingerprint=IMPORTED, outputs={relative: a.sha256(text)}
            )


def import_info(root: str | os.PathLike[str]) -> dict[str, Any]:
    """What an import found: source file, title, author, chapters, words, how they were found
    (``artefacts/00-import/book.json``); empty for a project that was not imported."""
    path = Path(root) / "artefacts" / SOURCE / "book.json"
    try:
        info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return info
