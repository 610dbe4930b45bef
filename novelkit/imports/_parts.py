"""Parts a person brings: a cast, an outline, a world document, each read into its artefact.

Formats: JSON (the artefact's own shape, or a bare list), TOML, and Markdown written by hand:

    cast.md                          outline.md                       world.md
    - **Mara Quill** (protagonist):  1. The Letter — Mara finds...    # Harbour town, 1920s
      keeper of the light              or                             ## Locations
      - goal: learn the truth        ## The Letter                    - Lantern Point: the light
      - flaw: cannot ask for help    Mara finds the letter.           ## Rules
                                     - beat: she hides it              - The tide keeps the hours

Every error names the file, the line and the field, and says how to fix it.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import _artefacts as a
from .._errors import ManuscriptError

__all__ = ["load_cast", "load_outline", "load_world", "structure_from_outline"]

_CHARACTER_FIELDS = ("role", "description", "goal", "flaw", "arc", "voice")


def _read(path: str | Path) -> tuple[Path, str]:
    file = Path(path)
    try:
        return file, file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManuscriptError(f"{file} does not exist; check the path") from None
    except UnicodeDecodeError:
        raise ManuscriptError(f"{file} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise ManuscriptError(f"cannot read {file}: {exc.strerror or exc}") from None


def _structured(file: Path, text: str) -> Any:
    if file.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManuscriptError(
                f"{file}, line {exc.lineno}: not valid JSON ({exc.msg}); fix it and try again"
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManuscriptError(f"{file}: not valid TOML ({exc}); fix it and try again") from None


def _item_lines(file: Path, text: str) -> dict[int, int]:
    """The line where each item of the file's main list starts (JSON objects, TOML tables)."""
    if file.suffix.lower() != ".json":
        headers = [n for n, line in enumerate(text.splitlines(), 1) if re.match(r"^\s*\[\[", line)]
        return dict(enumerate(headers))
    lines: list[int] = []
    depth, list_depth, in_string, escaped, line = 0, -1, False, False, 1
    for char in text:
        if char == "\n":
            line += 1
        if in_string:
            escaped = not escaped and char == "\\"
            if char == '"' and not escaped:
                in_string = False
            continue
        if char == '"':
            in_string, escaped = True, False
        elif char in "[{":
            if char == "[" and list_depth < 0:
                list_depth = depth + 1
            elif char == "{" and depth == list_depth:
                lines.append(line)
            depth += 1
        elif char in "]}":
            depth -= 1
    return dict(enumerate(lines))


def _validate(
    model: type[BaseModel], data: Any, file: Path, lines: dict[int, int], what: str
) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [p for p in error["loc"]]
        index = next((p for p in loc if isinstance(p, int)), None)
        field = ".".join(str(p) for p in loc if not isinstance(p, int)) or "(top level)"
        line = lines.get(index if index is not None else -1, 0)
        where = f"line {line}, " if line else ""
        item = f"{what} {index + 1}, " if index is not None else ""
        message = error["msg"].removeprefix("Value error, ")
        raise ManuscriptError(
            f"{file}, {where}{item}field {field!r}: {message}; fix it and try again"
        ) from None


# -- cast --------------------------------------------------------------------------------------

_CAST_ITEM = re.compile(
    r"^[-*+]\s+(?:\*\*(?P<bold>[^*]+)\*\*|(?P<plain>.+?))\s*"
    r"(?:\((?P<role>[^)]*)\))?(?:(?:\s*:|\s+[—–-])\s+(?P<rest>.*))?\s*$"
)
_FIELD = re.compile(r"^\s+[-*+]\s+(?P<key>[A-Za-z_ ]+?)\s*:\s*(?P<value>.+)$")


def load_cast(path: str | Path) -> a.Cast:
    """A cast from ``characters.json``, a TOML file or a Markdown list."""
    file, text = _read(path)
    lines: dict[int, int] = {}
    if file.suffix.lower() in (".json", ".toml"):
        data = _structured(file, text)
        if isinstance(data, list):
            data = {"characters": data}
        if isinstance(data, dict) and "character" in data and "characters" not in data:
            data = {"characters": data.pop("character"), **data}
        people = data.get("characters") if isinstance(data, dict) else None
        if not isinstance(people, list) or not people:
            raise ManuscriptError(
                f"{file}: no characters found; give a list of characters (JSON: "
                '{"characters": [{"name": ...}]}, TOML: [[characters]] tables)'
            )
        lines = _item_lines(file, text)
        for person in people:
            if isinstance(person, dict):
                for name in _CHARACTER_FIELDS:
                    person.setdefault(name, "")
    else:
        people = []
        for number, line in enumerate(text.splitlines(), 1):
            item = _CAST_ITEM.match(line)
            if item and not line.startswith((" ", "\t")):
                name = (item.group("bold") or item.group("plain") or "").strip()
                person = {k: "" for k in _CHARACTER_FIELDS}
                person.update(
                    name=name,
                    role=(item.group("role") or "").strip(),
                    description=(item.group("rest") or "").strip(),
                )
                lines[len(people)] = number
                people.append(person)
                continue
            field = _FIELD.match(line)
            if field and people:
                key = field.group("key").strip().lower().replace(" ", "_")
                value: Any = field.group("value").strip()
                if key == "relationships":
                    value = [
                        {"name": n.strip(), "kind": k.strip()}
                        for n, _, k in (p.partition(":") for p in value.split(";"))
                    ]
                if key not in a.Character.model_fields:
                    raise ManuscriptError(
                        f"{file}, line {number}: unknown field {key!r}; use one of "
                        f"{', '.join(sorted(a.Character.model_fields))}"
                    )
                people[-1][key] = value
            elif line.strip() and people and line.startswith((" ", "\t")):
                people[-1]["description"] = (people[-1]["description"] + " " + line.strip()).strip()
        if not people:
            raise ManuscriptError(
                f"{file}: no characters found; write one per line as '- **Name** (role): "
                "description', with '  - goal: ...' lines under it"
            )
    cast: a.Cast = _validate(a.Cast, {"characters": people}, file, lines, "character")
    seen: dict[str, int] = {}
    for i, character in enumerate(cast.characters):
        if character.name in seen:
            raise ManuscriptError(
                f"{file}, line {lines.get(i, 0)}: character {character.name!r} is listed twice; "
                "give each character one entry"
            )
        seen[character.name] = i
    return cast


# -- outline -----------------------------------------------------------------------------------

_NUMBERED = re.compile(r"^\s*(?:[-*+]|\d+[.)]|chapter\s+\d+[.:]?)\s*(?P<rest>.+)$", re.IGNORECASE)
_SPLIT = re.compile(r"\s+[—–-]{1,2}\s+|:\s+")
_HEADING = re.compile(r"^#{1,3}\s+(?P<title>.+?)\s*$")


def load_outline(
    path: str | Path, *, chapters: int | None = None, words_per_chapter: int = 2000
) -> a.Outline:
    """An outline from Markdown (one line per chapter, or a heading per chapter with its
    summary under it), JSON or TOML. ``chapters``, when given, must match its count."""
    file, text = _read(path)
    lines: dict[int, int] = {}
    plans: list[dict[str, Any]] = []
    if file.suffix.lower() in (".json", ".toml"):
        data = _structured(file, text)
        if isinstance(data, list):
            data = {"chapters": data}
        items = data.get("chapters") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items:
            raise ManuscriptError(f"{file}: no chapters found; give a list under 'chapters'")
        lines = _item_lines(file, text)
        for i, item in enumerate(items):
            if isinstance(item, dict):
                plans.append(item)
            else:
                raise ManuscriptError(
                    f"{file}, line {lines.get(i, 0)}: chapter {i + 1} is not a table"
                )
    elif any(_HEADING.match(line) for line in text.splitlines()):
        for number, line in enumerate(text.splitlines(), 1):
            heading = _HEADING.match(line)
            if heading:
                lines[len(plans)] = number
                plans.append({"title": heading.group("title"), "summary": "", "beats": []})
            elif plans and line.strip():
                beat = re.match(r"^\s*[-*+]\s+(?:beat:\s*)?(.+)$", line)
                if beat:
                    plans[-1]["beats"].append(beat.group(1).strip())
                else:
                    plans[-1]["summary"] = (plans[-1]["summary"] + " " + line.strip()).strip()
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            match = _NUMBERED.match(line)
            rest = match.group("rest") if match else line.strip()
            title, summary = _title_summary(rest)
            lines[len(plans)] = number
            plans.append({"title": title, "summary": summary, "beats": []})
    if not plans:
        raise ManuscriptError(
            f"{file}: no chapters found; write one line per chapter ('1. Title — summary') or a "
            "'## Title' heading per chapter with its summary under it"
        )
    for i, plan in enumerate(plans, 1):
        plan.setdefault("number", i)
        plan.setdefault("summary", "")
        plan.setdefault("pov", "")
        plan.setdefault("location", "")
        plan.setdefault("target_words", words_per_chapter)
        if not plan.get("beats"):
            plan["beats"] = [plan["summary"] or plan.get("title", "")]
    outline: a.Outline = _validate(a.Outline, {"chapters": plans}, file, lines, "chapter")
    numbers = [p.number for p in outline.chapters]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ManuscriptError(
            f"{file}: chapter numbers run {numbers}; number them 1, 2, 3, ... in order"
        )
    if chapters is not None and chapters != len(outline.chapters):
        raise ManuscriptError(
            f"{file} has {len(outline.chapters)} chapters but chapters={chapters}; set "
            f"chapters={len(outline.chapters)} (or leave it out), or "
            + (
                f"add {chapters - len(outline.chapters)} chapters to the outline"
                if chapters > len(outline.chapters)
                else f"remove {len(outline.chapters) - chapters} chapters from the outline"
            )
        )
    return outline


def _title_summary(rest: str) -> tuple[str, str]:
    parts = _SPLIT.split(rest, maxsplit=1)
    title = parts[0].strip().strip("*").strip()
    return title, parts[1].strip() if len(parts) > 1 else ""


def structure_from_outline(outline: a.Outline, premise: str) -> a.Structure:
    """Three acts read off a given outline, so the structure stage need not run."""
    plans = outline.chapters
    size = max(1, -(-len(plans) // 3))
    acts = [
        a.Act(
            number=i // size + 1,
            name=f"Act {i // size + 1}",
            summary=plans[i].summary or plans[i].title,
            beats=[p.title for p in plans[i : i + size]],
        )
        for i in range(0, len(plans), size)
    ]
    return a.Structure(
        central_conflict=premise, acts=acts, ending=plans[-1].summary or plans[-1].title
    )


# -- world -------------------------------------------------------------------------------------

_SECTION = re.compile(r"^#{1,3}\s+(?P<name>.+?)\s*$")
_ITEM = re.compile(
    r"^\s*[-*+]\s+(?:\*\*)?(?P<name>.+?)(?:\*\*)?(?:(?:\s*:|\s+[—–-])\s+(?P<rest>.*))?$"
)


def load_world(path: str | Path) -> a.World:
    """A world from JSON or TOML (the artefact's shape), or a Markdown document with
    '## Locations', '## Rules' and '## History' sections (the rest is the setting)."""
    file, text = _read(path)
    if file.suffix.lower() in (".json", ".toml"):
        data = _structured(file, text)
        found = _item_lines(file, text)
        if isinstance(data, dict):
            data.setdefault("era", "")
            data.setdefault("setting", "")
        world: a.World = _validate(a.World, data, file, found, "location")
        return world
    setting: list[str] = []
    era = ""
    section = ""
    locations: list[dict[str, str]] = []
    rules: list[str] = []
    history: list[str] = []
    lines: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        heading = _SECTION.match(line)
        if heading:
            name = heading.group("name").lower()
            section = next(
                (s for s in ("location", "place", "rule", "history", "era") if s in name), ""
            )
            if not section and not setting:
                setting.append(heading.group("name"))
            continue
        if not line.strip():
            continue
        item = _ITEM.match(line)
        if section in ("location", "place") and item:
            lines[len(locations)] = number
            locations.append(
                {
                    "name": item.group("name").strip(),
                    "description": (item.group("rest") or "").strip(),
                }
            )
        elif section == "rule":
            rules.append(item.group(0).strip().lstrip("-*+ ").strip() if item else line.strip())
        elif section == "history":
            history.append(line.strip())
        elif section == "era":
            era = (era + " " + line.strip()).strip()
        else:
            setting.append(line.strip())
    if not locations:
        raise ManuscriptError(
            f"{file} lists no locations; add a '## Locations' section with one "
            "'- Name: description' line per place"
        )
    data = {
        "setting": " ".join(setting),
        "era": era,
        "locations": locations,
        "rules": rules,
        "history": " ".join(history),
    }
    parsed: a.World = _validate(a.World, data, file, lines, "location")
    return parsed
