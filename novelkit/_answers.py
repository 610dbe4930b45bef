"""What novelkit asks of a structured answer, and how it reads what a real model gives back.

A model is asked for the artefact's fields minus those the config fixes (chapter numbers,
target words), with every constraint in the JSON schema it is sent: exact counts where the
config fixes them (``minItems``/``maxItems``), names from the cast and places from the world
as ``enum``, non-empty strings, and a bound on every string and array so that one answer cannot
run on to the token limit. The answer is then read the way real models write it — a
``<think>`` block first, a code fence, a sentence of prose around the JSON — checked against
the same constraints, completed with the fixed values and validated against the artefact.

    shape = Shape(items={"chapters": (3, 3)}, fixed={"chapters[].number": INDEX})
    schema = answer_schema(Outline, shape)
    outline = read_answer(Outline, shape, text)      # raises Invalid with every problem
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

__all__ = [
    "INDEX",
    "CountProblem",
    "Invalid",
    "Shape",
    "answer_schema",
    "clean_prose",
    "extract_json",
    "output_budget",
    "read_answer",
    "strip_reasoning",
]

M = TypeVar("M", bound=BaseModel)

INDEX = object()  # a fixed value: the item's 1-based position in its array
STRING_LIMIT = 160  # characters of one string value, unless the shape says otherwise
ARRAY_LIMIT = 6  # items of an array the config does not count
LONG_FIELDS = {"summary": 400, "description": 240, "history": 400, "blurb": 600, "explanation": 240}
NAME_FIELDS = {
    "name": 40,
    "title": 80,
    "genre": 60,
    "era": 60,
    "role": 60,
    "kind": 60,
    "language": 20,
}


@dataclass(frozen=True)
class Shape:
    """What an answer must be beyond its artefact's own schema.

    Paths are dotted, with ``[]`` for the items of an array: ``"chapters"`` is the outline's
    array, ``"chapters[].pov"`` each chapter's POV, ``"scenes[].cast[]"`` each name in a
    scene's cast.

    - ``items``: (least, most) items of an array; a count the config fixes is (n, n).
    - ``choices``: the only values a string may take (names from the cast, places).
    - ``fixed``: values novelkit sets after reading the answer; the model is not asked for
      them. ``INDEX`` stands for the item's 1-based position.
    - ``strings``: a character bound for a string field, beside the defaults.
    - ``repair``: fixes novelkit makes itself to the validated object (a duplicate dropped),
      before ``check``.
    - ``check``: the stage's own checks of the validated object; each string it returns is a
      problem the model is asked to fix, like a schema error.
    """

    items: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fixed: Mapping[str, object] = field(default_factory=dict)
    strings: Mapping[str, int] = field(default_factory=dict)
    repair: Callable[[Any], Any] | None = None
    check: Callable[[Any], list[str]] | None = None

    def key(self) -> str:
        """A stable text of what goes into the schema (``check`` does not)."""
        return json.dumps(
            {
                "items": sorted(self.items.items()),
                "choices": sorted(self.choices.items()),
                "fixed": sorted(self.fixed),
                "strings": sorted(self.strings.items()),
            }
        )


@dataclass(frozen=True)
class CountProblem:
    """An array with the wrong number of items, for the message after the re-asks run out."""

    path: str
    asked: tuple[int, int]
    got: int

    def asked_text(self) -> str:
        low, high = self.asked
        return str(low) if low == high else f"{low} to {high}"


class Invalid(Exception):
    """The answer does not meet the shape; ``problems`` name each fault for the re-ask."""

    def __init__(self, problems: list[str], counts: list[CountProblem] | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.counts = counts or []


# -- the schema that is sent ---------------------------------------------------------------------


def answer_schema(model: type[BaseModel], shape: Shape) -> dict[str, Any]:
    """The JSON schema a model is asked to answer with (a copy; safe to change)."""
    key = (model, shape.key())
    schema = _SCHEMAS.get(key)
    if schema is None:
        if len(_SCHEMAS) >= 256:
            _SCHEMAS.clear()
        raw = model.model_json_schema()
        defs = raw.pop("$defs", {})
        schema = _SCHEMAS[key] = _shape_node(_inline(raw, defs), "", shape, field_name="")
    return copy.deepcopy(schema)


_SCHEMAS: dict[tuple[type[BaseModel], str], dict[str, Any]] = {}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            return _inline(defs[ref.rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _shape_node(node: dict[str, Any], path: str, shape: Shape, field_name: str) -> dict[str, Any]:
    optional = "default" in node  # a field with a default may be left empty
    node = {k: v for k, v in node.items() if k not in ("title", "default", "examples")}
    kind = node.get("type")
    if kind == "object":
        props = {}
        for name, sub in node.get("properties", {}).items():
            sub_path = f"{path}.{name}" if path else name
            if sub_path in shape.fixed:
                continue
            props[name] = _shape_node(sub, sub_path, shape, name)
        node["properties"] = props
        node["required"] = list(props)
        node["additionalProperties"] = False
    elif kind == "array":
        node["items"] = _shape_node(node.get("items", {}), f"{path}[]", shape, field_name)
        low, high = shape.items.get(path, (node.get("minItems", 0), ARRAY_LIMIT))
        node["minItems"], node["maxItems"] = low, max(low, high)
    elif kind == "string" and "enum" not in node:
        choices = shape.choices.get(path)
        if choices:
            node["enum"] = list(choices)
            node.pop("minLength", None)
        else:
            node["minLength"] = int(node.get("minLength", 0 if optional else 1))
            node["maxLength"] = shape.strings.get(path, _string_limit(field_name))
    return node


def _string_limit(name: str) -> int:
    return NAME_FIELDS.get(name) or LONG_FIELDS.get(name) or STRING_LIMIT


def output_budget(schema: Mapping[str, Any]) -> int:
    """Tokens enough for the longest answer the schema allows (about 3.5 characters a token,
    JSON punctuation included), so a structured call's ``max_tokens`` fits what it needs."""
    return math.ceil(_chars(schema) / 3.5) + 32


def _chars(node: Mapping[str, Any]) -> int:
    kind = node.get("type")
    if "enum" in node:
        return max((len(json.dumps(v)) for v in node["enum"]), default=8)
    if kind == "object":
        props = node.get("properties", {})
        return 2 + sum(len(name) + 4 + _chars(sub) for name, sub in props.items())
    if kind == "array":
        return 2 + int(node.get("maxItems", ARRAY_LIMIT)) * (_chars(node.get("items", {})) + 2)
    if kind == "string":
        return int(node.get("maxLength", STRING_LIMIT)) + 2
    return 12  # a number, a boolean


# -- reading what comes back ---------------------------------------------------------------------

_REASONING = re.compile(
    r"<(think|thinking|reasoning|thought)>.*?(</\1>|\Z)", re.DOTALL | re.IGNORECASE
)
_DANGLING = re.compile(r"^.*?</(think|thinking|reasoning|thought)>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*?)(```|\Z)", re.DOTALL)


def strip_reasoning(text: str) -> str:
    """The answer without reasoning blocks (``<think>…</think>`` and the like, closed or cut
    off), including a closing tag whose opening the server had already removed."""
    if re.search(r"</(think|thinking|reasoning|thought)>", text, re.IGNORECASE) and not (
        re.search(r"<(think|thinking|reasoning|thought)>", text, re.IGNORECASE)
    ):
        text = _DANGLING.sub("", text, count=1)
    return _REASONING.sub("", text).strip()


_PREAMBLE = re.compile(
    r"\A\s*(sure|certainly|of course|okay|ok|absolutely|here is|here's|below is)\b[^\n]{0,120}:[ \t]*\n",
    re.IGNORECASE,
)
_SIGN_OFF = re.compile(
    r"\n[ \t]*(let me know|i hope|hope this|feel free|would you like)\b[^\n]{0,200}\s*\Z",
    re.IGNORECASE,
)


def clean_prose(text: str) -> str:
    """Prose as a reader should get it: no reasoning block, no chat around it ("Sure! Here is
    the chapter:" … "Let me know if…"), no code fence around the whole of it."""
    text = strip_reasoning(text)
    fenced = [m.group(1) for m in _FENCE.finditer(text)]
    if len(fenced) == 1 and len(fenced[0]) > len(text) / 2:
        text = fenced[0]
    text = _SIGN_OFF.sub("", _PREAMBLE.sub("", text))
    return text.strip()


def extract_json(text: str) -> str:
    """The JSON object in an answer: reasoning blocks, code fences and prose around it removed.
    Of the objects that parse, the longest is taken (not a ``{}`` quoted in a sentence before
    it); with none, the best candidate is returned for the parser to reject."""
    text = strip_reasoning(text)
    best = ""
    for start in itertools.islice(_starts(text), MAX_STARTS):
        try:
            value, end = _LENIENT.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and end - start > len(best):
            best = text[start:end]
    if best:
        return best
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end < start:
        return text.strip() or "{}"
    return text[start : end + 1]


# grammar-constrained servers (llama-cpp-python) let raw newlines into strings
_LENIENT = json.JSONDecoder(strict=False)
MAX_STARTS = 64


def _starts(text: str) -> Iterator[int]:
    index = text.find("{")
    while index != -1:
        yield index
        index = text.find("{", index + 1)


def read_answer(model: type[M], shape: Shape, text: str) -> M:
    """The artefact in ``text``: counts and choices checked, fixed values set, validated,
    then the stage's own checks. Raises :class:`Invalid` naming every problem found."""
    raw = extract_json(text)
    try:
        data = _LENIENT.decode(raw)
    except json.JSONDecodeError as exc:
        raise Invalid([f"the answer is not JSON ({exc.msg} at character {exc.pos})"]) from None
    if not isinstance(data, dict):
        raise Invalid(["the answer must be one JSON object"])
    problems: list[str] = []
    counts: list[CountProblem] = []
    for path, (low, high) in shape.items.items():
        for where, value in _walk(data, path):
            if isinstance(value, list) and not low <= len(value) <= high:
                counts.append(CountProblem(where, (low, high), len(value)))
    for count in counts:
        problems.append(
            f"{count.path}: {count.asked_text()} items are required, the answer has {count.got}"
        )
    for path, allowed in shape.choices.items():
        for where, value in _walk(data, path):
            if isinstance(value, str) and value not in allowed:
                problems.append(f"{where}: {_short(value)} is not one of {', '.join(allowed)}")
    _fill(data, shape.fixed)
    _clamp(answer_schema(model, shape), data)
    try:
        value = model.model_validate(data)
    except ValidationError as exc:
        problems.extend(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors()[:8]
        )
        raise Invalid(problems, counts) from None
    if shape.repair is not None:
        value = cast(M, shape.repair(value))
    if shape.check is not None:
        problems.extend(shape.check(value))
    if problems:
        raise Invalid(problems, counts)
    return value


def _short(value: str, limit: int = 60) -> str:
    return json.dumps(value if len(value) <= limit else value[:limit] + "…", ensure_ascii=False)


def _walk(data: Any, path: str, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every (concrete path, value) that ``path`` names in ``data``."""
    if not path:
        yield where or "(root)", data
        return
    head, _, rest = path.partition(".")
    many = head.endswith("[]")
    name = head.removesuffix("[]")
    if not isinstance(data, dict) or name not in data:
        return
    value = data[name]
    here = f"{where}.{name}" if where else name
    if not many:
        yield from _walk(value, rest, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, rest, f"{here}[{index}]")


def _clamp(schema: Mapping[str, Any], data: Any) -> None:
    """Numbers outside the schema's bounds are brought inside them: a grammar that does not
    enforce ``minimum``/``maximum`` (llama-cpp-python's) lets a model rate tension 20 of 10."""
    if isinstance(data, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in data:
                data[name] = _clamped(sub, data[name])
    elif isinstance(data, list) and "items" in schema:
        for index, item in enumerate(data):
            data[index] = _clamped(schema["items"], item)


def _clamped(schema: Mapping[str, Any], value: Any) -> Any:
    for option in schema.get("anyOf", [schema]):
        kind = option.get("type")
        if kind in ("integer", "number") and isinstance(value, int | float):
            if not isinstance(value, bool):
                low, high = option.get("minimum"), option.get("maximum")
                value = max(value, low) if low is not None else value
                return min(value, high) if high is not None else value
        if kind in ("object", "array"):
            _clamp(option, value)
    return value


def _fill(data: dict[str, Any], fixed: Mapping[str, object]) -> None:
    for path, value in fixed.items():
        _set(data, path.split("."), value)


def _set(data: Any, parts: list[str], value: object) -> None:
    head, rest = parts[0], parts[1:]
    name = head.removesuffix("[]")
    if not isinstance(data, dict):
        return
    if not rest:
        data[name] = value
        return
    target = data.get(name)
    if head.endswith("[]") and isinstance(target, list):
        for index, item in enumerate(target, 1):
            if len(rest) == 1 and isinstance(item, dict):
                item[rest[0]] = index if value is INDEX else value
            else:
                _set(item, rest, value)
    elif isinstance(target, dict):
        _set(target, rest, value)
