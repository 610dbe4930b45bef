"""What a person brings to a new project: a cast, an outline, a world, style samples, or the
book before (``sequel_of``). Everything is read and validated before the folder is created;
the artefacts are then written as kept (``kept:given``): used as given, never rewritten
unless the stage is run with ``force=True``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .. import _artefacts as a
from .._errors import ProjectError
from .._freshness import KEPT
from .._pipeline import SINGLE
from ._material import SERIES
from ._parts import load_cast, load_outline, load_world, structure_from_outline
from ._voice import VoiceProfile, profile_from_files, write_voice

if TYPE_CHECKING:
    from .._project import Project

__all__ = ["GIVEN", "Given", "prepare"]

GIVEN = f"{KEPT}given"
SUMMARY_WORDS = 60  # of each chapter, in the book-before summary a sequel carries
THREADS = 8


@dataclass
class Given:
    """Validated parts, ready to be written into a new project."""

    artefacts: dict[str, BaseModel] = field(default_factory=dict)  # by stage name
    voice: VoiceProfile | None = None
    series: dict[str, Any] | None = None

    def apply(self, project: Project) -> None:
        self._fill_plans()
        if "chapters" in self.artefacts and "structure" not in self.artefacts:
            # the structure only feeds the outline: with the outline given, it is not run
            outline = self.artefacts["chapters"]
            assert isinstance(outline, a.Outline)
            self.artefacts["structure"] = structure_from_outline(outline, project.config.premise)
        for name, value in self.artefacts.items():
            stage = project.pipeline.get(name)
            relative = stage.output_paths(SINGLE)[0]
            data = a.serialize(value)
            a.write_atomic(project.paths[relative], data)
            project.store.set_unit(
                name, SINGLE, "done", fingerprint=GIVEN, outputs={relative: a.sha256(data)}
            )
        if self.voice is not None:
            write_voice(project.root, self.voice)
        if self.series is not None:
            data = (json.dumps(self.series, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
            a.write_atomic(project.paths[SERIES], data)

    def _fill_plans(self) -> None:
        """A given outline's missing POV and location, from the given cast and world: the
        first one its plan names, or the protagonist and the first place."""
        outline, cast, world = (self.artefacts.get(k) for k in ("chapters", "characters", "world"))
        if not isinstance(outline, a.Outline):
            return
        names = cast.names() if isinstance(cast, a.Cast) else []
        places = [loc.name for loc in world.locations] if isinstance(world, a.World) else []
        plans = []
        for plan in outline.chapters:
            said = " ".join([plan.title, plan.summary, *plan.beats])
            update = {}
            if not plan.pov and names:
                update["pov"] = next((n for n in names if n.split()[0] in said), names[0])
            if not plan.location and places:
                update["location"] = next((p for p in places if p in said), places[0])
            plans.append(plan.model_copy(update=update))
        self.artefacts["chapters"] = a.Outline(chapters=plans)


def prepare(
    config: dict[str, Any],
    *,
    cast: str | os.PathLike[str] | a.Cast | None = None,
    outline: str | os.PathLike[str] | a.Outline | None = None,
    world: str | os.PathLike[str] | a.World | None = None,
    style_samples: list[str | os.PathLike[str]] | None = None,
    sequel_of: Project | str | os.PathLike[str] | None = None,
) -> Given:
    """Read and check every part; sets ``config["chapters"]`` from a given outline."""
    given = Given()
    if sequel_of is not None:
        book = _book_before(sequel_of)
        given.artefacts["characters"], given.artefacts["world"] = (
            book.pop("cast"),
            book.pop("world"),
        )
        given.series = book
    if cast is not None:
        given.artefacts["characters"] = cast if isinstance(cast, a.Cast) else load_cast(Path(cast))
    if world is not None:
        given.artefacts["world"] = world if isinstance(world, a.World) else load_world(Path(world))
    if outline is not None:
        words = int(config.get("words_per_chapter") or 2000)
        plan = (
            outline
            if isinstance(outline, a.Outline)
            else load_outline(
                Path(outline), chapters=config.get("chapters"), words_per_chapter=words
            )
        )
        if isinstance(outline, a.Outline) and config.get("chapters") not in (
            None,
            len(plan.chapters),
        ):
            from .._errors import ManuscriptError

            raise ManuscriptError(
                f"the outline has {len(plan.chapters)} chapters but chapters={config['chapters']}; "
                f"set chapters={len(plan.chapters)} or leave it out"
            )
        config["chapters"] = len(plan.chapters)
        given.artefacts["chapters"] = plan
    if style_samples is not None:
        given.voice = profile_from_files(style_samples)
    return given


def _book_before(previous: Project | str | os.PathLike[str]) -> dict[str, Any]:
    """Book one's cast (with their state at its end), world, summary and open threads."""
    from .._project import Project

    root = previous.root if isinstance(previous, Project) else Path(previous)
    base = root / "artefacts"

    def need(relative: str, model: type[BaseModel]) -> Any:
        path = base / relative
        if not path.exists():
            raise ProjectError(
                f"sequel_of={str(root)!r} has no {relative}; run that book's pipeline at least to "
                "its chapters (or give cast= and world= yourself)"
            )
        return a.parse(model, path, path.read_bytes())

    cast: a.Cast = need("03-characters.json", a.Cast)
    world: a.World = need("02-world.json", a.World)
    title = root.name
    meta_path = base / "11-metadata.json"
    if meta_path.exists():
        title = a.parse(a.Metadata, meta_path, meta_path.read_bytes()).title
    summaries: list[a.ChapterSummary] = []
    for path in sorted((base / "07-draft").glob("ch*.summary.json")):
        summaries.append(a.parse(a.ChapterSummary, path, path.read_bytes()))
    ending = ""
    structure_path = base / "04-structure.json"
    threads: list[str] = []
    if structure_path.exists():
        structure: a.Structure = a.parse(a.Structure, structure_path, structure_path.read_bytes())
        ending = structure.ending
        threads += structure.acts[-1].beats
    for path in sorted((base / "08-continuity").glob("ch*.json")):  # what was left open
        checked: a.ContinuityReport = a.parse(a.ContinuityReport, path, path.read_bytes())
        threads += [
            f"unresolved in chapter {f.chapter}: {f.explanation}"
            for f in checked.findings
            if f.severity == "error"
        ]

    threads += [s.summary for s in summaries[-2:]]
    end_states: dict[str, str] = {}
    carried = []
    for character in cast.characters:
        first = character.name.split()[0]
        last = next(
            (
                s
                for s in reversed(summaries)
                if character.name in s.characters or first in s.summary
            ),
            None,
        )
        state = character.status + (
            f"; last seen in chapter {last.chapter}: {_words(last.summary, 40)}" if last else ""
        )
        end_states[character.name] = state
        note = f" At the end of {title}: {state}."
        carried.append(
            character.model_copy(update={"description": (character.description + note).strip()})
        )
    previous_books: list[dict[str, Any]] = []
    series_path = base / SERIES
    if series_path.exists():  # book one was itself a sequel: carry the whole series
        previous_books = json.loads(series_path.read_text(encoding="utf-8")).get("books", [])
    book = {
        "title": title,
        "folder": str(root),
        "summary": " ".join(f"{s.chapter}. {_words(s.summary, SUMMARY_WORDS)}" for s in summaries),
        "ending": ending,
        "threads": list(dict.fromkeys(t for t in threads if t))[:THREADS],
        "end_states": end_states,
        "setting": world.setting,
    }
    return {
        "cast": a.Cast(characters=carried),
        "world": world,
        "books": [*previous_books, book],
    }


def _words(text: str, count: int) -> str:
    parts = text.split()
    return " ".join(parts[:count]) + ("…" if len(parts) > count else "")
