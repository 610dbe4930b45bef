"""Compare two variants of a stage's artefact side by side, and choose one as the active one.

    project.run_stage("draft", chapters=[2], variant="warm", temperature=1.1).wait()
    compare_variants(project, "draft", "", "warm", chapter=2)   # "" is the active artefact
    VariantView(project, "draft")                                # pick any two, then choose

Prose is compared word by word in two columns; JSON artefacts field by field. Everything
here runs on the kernel's shell thread (cell code and button clicks); no background thread.
"""

from __future__ import annotations

import difflib
import json
import re
from html import escape
from typing import Any

try:
    import ipywidgets as w
except ImportError:
    raise ImportError(
        "variant views need ipywidgets; install it with pip install 'novelkit[widgets]'"
    ) from None

from pydantic import BaseModel

from .._errors import NovelkitError, PipelineError
from .._project import Project
from .panel import close_tree

__all__ = ["VariantComparison", "VariantView", "compare_variants", "field_diff", "word_diff"]

MISSING: Any = object()  # a field only one side has
_TOKEN = re.compile(r"\s+|\S+\s*")
_COLUMN = (
    "flex:1;min-width:0;white-space:pre-wrap;word-break:break-word;max-height:28em;overflow-y:auto;"
    "border:1px solid #8884;border-radius:4px;padding:6px 8px;font-size:12.5px;line-height:1.45"
)
_DEL = "background:#f8514940;text-decoration:line-through"
_INS = "background:#2ea04340;text-decoration:none"
_TD = "padding:2px 10px 2px 0;vertical-align:top;border-bottom:1px solid #8883"


def word_diff(a: str, b: str) -> tuple[str, str, float]:
    """Two HTML columns (A with deletions marked, B with insertions marked) and the similarity."""
    ta, tb = _TOKEN.findall(a), _TOKEN.findall(b)
    matcher = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    left: list[str] = []
    right: list[str] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        old, new = escape("".join(ta[i1:i2])), escape("".join(tb[j1:j2]))
        if op == "equal":
            left.append(old)
            right.append(new)
            continue
        if old:
            left.append(f'<del class="nk-del" style="{_DEL}">{old}</del>')
        if new:
            right.append(f'<ins class="nk-ins" style="{_INS}">{new}</ins>')
    return "".join(left), "".join(right), matcher.ratio()


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}[{index}]", out)
    else:
        out[prefix or "(value)"] = value
    return out


def field_diff(a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """The fields (dotted paths) whose values differ between two JSON-like values."""
    fa, fb = _flatten(a, "", {}), _flatten(b, "", {})
    keys = list(fa) + [k for k in fb if k not in fa]
    return [
        (key, fa.get(key, MISSING), fb.get(key, MISSING))
        for key in keys
        if fa.get(key, MISSING) != fb.get(key, MISSING)
    ]


def _cell(value: Any) -> str:
    if value is MISSING:
        return '<i style="opacity:.6">absent</i>'
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return escape(text)


def _label(variant: str) -> str:
    return "active" if not variant else variant


class VariantComparison(w.VBox):  # type: ignore[misc]
    """Two variants of one artefact side by side, with "Choose A" / "Choose B" buttons."""

    def __init__(
        self, project: Project, stage: str | int, a: str, b: str, chapter: int | None = None
    ) -> None:
        target = project.pipeline.get(stage)
        if target.per_chapter and chapter is None:
            raise PipelineError(
                f"stage {target.name!r} has one artefact per chapter; pass chapter=N"
            )
        self.project, self.stage, self.chapter, self.variants = (
            project,
            target.name,
            chapter,
            (a, b),
        )
        left = project.read_variant(target.name, a, chapter)
        right = project.read_variant(target.name, b, chapter)
        where = f"{target.name}" + (f", chapter {chapter}" if chapter is not None else "")
        title = f"<b>{escape(where)}</b>: A = {escape(_label(a))}, B = {escape(_label(b))}"
        self.summary, body = self._body(left, right)
        self._notice = w.HTML()
        self._choose_a = self._button(a, "A")
        self._choose_b = self._button(b, "B")
        super().__init__(
            children=[
                w.HTML(f'<div class="nk-compare-title">{title}<br>{escape(self.summary)}</div>'),
                w.HTML(body, layout=w.Layout(width="100%")),
                w.HBox([self._choose_a, self._choose_b]),
                self._notice,
            ]
        )

    def _body(self, left: Any, right: Any) -> tuple[str, str]:
        if isinstance(left, BaseModel) and hasattr(left, "text") and hasattr(right, "text"):
            left, right = left.text, right.text
        if isinstance(left, str) and isinstance(right, str):
            old, new, ratio = word_diff(left, right)
            summary = (
                f"A has {len(left.split()):,} words, B has {len(right.split()):,}; "
                f"{ratio:.0%} of the text is shared"
            )
            body = (
                '<div class="nk-prose-diff" style="display:flex;gap:8px">'
                f'<div class="nk-a" style="{_COLUMN}">{old}</div>'
                f'<div class="nk-b" style="{_COLUMN}">{new}</div></div>'
            )
            return summary, body
        da = left.model_dump(mode="json") if isinstance(left, BaseModel) else left
        db = right.model_dump(mode="json") if isinstance(right, BaseModel) else right
        rows = field_diff(da, db)
        total = len(_flatten(da, "", {}) | _flatten(db, "", {}))
        summary = f"{len(rows)} of {total} fields differ" if rows else "the two are identical"
        cells = "".join(
            f'<tr class="nk-field"><td style="{_TD}"><code>{escape(key)}</code></td>'
            f'<td style="{_TD}">{_cell(x)}</td><td style="{_TD}">{_cell(y)}</td></tr>'
            for key, x, y in rows
        )
        body = (
            '<table class="nk-field-diff" style="border-collapse:collapse;width:100%">'
            f'<tr><th style="{_TD}">field</th><th style="{_TD}">A</th><th style="{_TD}">B</th></tr>'
            f"{cells}</table>"
        )
        return summary, body

    def _button(self, variant: str, side: str) -> w.Button:
        active = not variant
        button = w.Button(
            description=f"Choose {side} ({_label(variant)})",
            disabled=active,
            tooltip="already the active artefact"
            if active
            else f"make {variant!r} the active artefact",
            layout=w.Layout(width="auto"),
        )
        button.on_click(lambda _: self.choose(variant))
        return button

    def close(self) -> None:
        close_tree(self, super().close)

    def choose(self, variant: str) -> None:
        """Make ``variant`` the active artefact (downstream stages turn stale)."""
        chapters = [self.chapter] if self.chapter is not None else None
        try:
            self.project.choose_variant(self.stage, variant, chapters=chapters)
        except NovelkitError as exc:
            self._notice.value = (
                f'<div class="nk-notice" style="color:#c62828">{escape(str(exc))}</div>'
            )
            return
        self._notice.value = (
            f'<div class="nk-notice">{escape(self.stage)} now uses variant {escape(variant)!r}; '
            "the stages after it are stale (project.start() regenerates them)</div>"
        )


def compare_variants(
    project: Project, stage: str | int, a: str, b: str, chapter: int | None = None
) -> VariantComparison:
    """Compare variant ``a`` with ``b`` of ``stage`` ("" is the active artefact).

    Prose stages show a word-level diff in two columns; JSON stages a table of the fields
    that differ. "Choose A" / "Choose B" call ``project.choose_variant``.
    """
    return VariantComparison(project, stage, a, b, chapter)


class VariantView(w.VBox):  # type: ignore[misc]
    """The variants of one stage: pick two (and a chapter), compare them, choose one."""

    def __init__(self, project: Project, stage: str | int) -> None:
        target = project.pipeline.get(stage)
        self.project, self.stage = project, target.name
        names = project.variants(target.name)
        options = [("active", ""), *[(name, name) for name in names]]
        self._a = w.Dropdown(options=options, value="", description="A")
        self._b = w.Dropdown(options=options, value=names[0] if names else "", description="B")
        chapters = project.chapter_numbers() if target.per_chapter else []
        self._chapter = w.Dropdown(
            options=chapters,
            value=chapters[0] if chapters else None,
            description="Chapter",
            disabled=not target.per_chapter,
        )
        self._compare = w.Button(description="Compare", disabled=not names)
        self._result = w.VBox()
        self._compare.on_click(lambda _: self.compare())
        number = project.pipeline.number(target)
        listing = (
            ", ".join(escape(n) for n in names)
            if names
            else (f"none yet: project.run_stage({target.name!r}, variant='warm', temperature=1.1)")
        )
        super().__init__(
            children=[
                w.HTML(f"<b>Variants of {number} {escape(target.name)}</b>: {listing}"),
                w.HBox([self._a, self._b, self._chapter, self._compare]),
                self._result,
            ]
        )

    def close(self) -> None:
        close_tree(self, super().close)

    def compare(self) -> None:
        chapter = self._chapter.value if not self._chapter.disabled else None
        try:
            view: w.Widget = compare_variants(
                self.project, self.stage, self._a.value, self._b.value, chapter
            )
        except NovelkitError as exc:
            view = w.HTML(f'<div class="nk-notice" style="color:#c62828">{escape(str(exc))}</div>')
        for old in self._result.children:
            close_tree(old)
        self._result.children = (view,)
