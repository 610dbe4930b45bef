from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _manuscripts import hostile_manuscript, normal_manuscript, require_tool

from novelkit._errors import ExportError
from novelkit.export import Manuscript, export_manuscript
from novelkit.export._inline import plain
from novelkit.export.markdown import escape, render
from novelkit.export.markdown import prose as markdown_prose
from novelkit.export.text import chapter_title, one_line

# Inline nodes prose may legitimately produce; anything else (Link, RawInline...) is markup.
PLAIN_INLINES = {"Str", "Space", "SoftBreak", "Quoted"}
# The prose's own emphasis, which the export keeps; collected as "Emph:words".
EMPHASIS = {"Emph", "Strong"}


def _text(
    inlines: list[dict[str, Any]], markup: list[str], emphasis: list[str] | None = None
) -> str:
    out = []
    for node in inlines:
        kind = node["t"]
        if kind in EMPHASIS and emphasis is not None:
            words = _text(node["c"], markup, emphasis)
            emphasis.append(f"{kind}:{words}")
            out.append(words)
        elif kind not in PLAIN_INLINES:
            markup.append(kind)
        elif kind == "Str":
            out.append(node["c"])
        elif kind in ("Space", "SoftBreak"):
            out.append(" ")
        else:
            quote = '"' if node["c"][0]["t"] == "DoubleQuote" else "'"
            out.append(quote + _text(node["c"][1], markup, emphasis) + quote)
    return "".join(out)


def _pandoc(markdown: str, reader: str) -> tuple[dict[str, Any], str]:
    pandoc = require_tool("pandoc")
    result = subprocess.run(
        [pandoc, "-f", reader, "-t", "json"],
        input=markdown,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout), result.stderr


def _expected(manuscript: Manuscript) -> list[tuple[str, str]]:
    blocks = []
    for chapter in manuscript.chapters:
        blocks.append(("h1", chapter_title(chapter)))
        scenes = [[plain(p) for p in scene if plain(p)] for scene in chapter.scenes]
        for index, scene in enumerate(s for s in scenes if s):
            if index:
                blocks.append(("hr", ""))
            blocks += [("p", p) for p in scene]
    return blocks


def _blocks(
    doc: dict[str, Any], markup: list[str], emphasis: list[str] | None = None
) -> list[tuple[str, str]]:
    blocks = []
    for block in doc["blocks"]:
        if block["t"] == "Header":
            blocks.append((f"h{block['c'][0]}", _text(block["c"][2], markup)))
        elif block["t"] == "HorizontalRule":
            blocks.append(("hr", ""))
        elif block["t"] == "Para":
            blocks.append(("p", _text(block["c"], markup, emphasis)))
        else:
            markup.append(block["t"])
    return blocks


def _meta(doc: dict[str, Any], key: str) -> str:
    return _text(doc["meta"][key]["c"], [])


@pytest.mark.slow
@pytest.mark.parametrize(
    "build", [normal_manuscript, hostile_manuscript], ids=["normal", "hostile"]
)
@pytest.mark.parametrize("reader", ["markdown", "markdown-smart"])
def test_pandoc_reads_it_back_without_warnings_or_markup(
    build: Any, reader: str, tmp_path: Path
) -> None:
    manuscript = build()
    path = export_manuscript(manuscript, "md", tmp_path / "book.md")
    doc, stderr = _pandoc(path.read_text(encoding="utf-8"), reader)
    assert stderr == ""
    markup: list[str] = []
    emphasis: list[str] = []
    blocks = _blocks(doc, markup, emphasis)
    assert markup == []
    if build is hostile_manuscript:  # HOSTILE_TEXT[1]'s Markdown emphasis, and nothing else
        assert emphasis == ["Emph:not emphasis", "Emph:nor this", "Strong:nor"]
    else:
        assert emphasis == []
    if reader == "markdown-smart":  # without smart quotes the text must round-trip exactly
        assert blocks == _expected(manuscript)
        assert _meta(doc, "title") == one_line(manuscript.title)
        assert _meta(doc, "author") == one_line(manuscript.author)
        assert _meta(doc, "subtitle") == one_line(manuscript.subtitle)
        assert _meta(doc, "lang") == manuscript.language
        assert _meta(doc, "date") == manuscript.date
    else:  # smart punctuation may curl quotes, but the structure must not change
        assert [kind for kind, _ in blocks] == [kind for kind, _ in _expected(manuscript)]


def test_front_matter_heading_and_scene_break_layout() -> None:
    text = render(normal_manuscript(chapters=2, scenes=2, paragraphs=1))
    assert text.startswith(
        '---\ntitle: "The Lighthouse Keeper"\nauthor: "Ada Quill Marlowe"\nsubtitle: "A Novel"\n'
        'lang: "en"\ndate: "2024-05-17"\n---\n\n# The Keeper\'s Night 1\n\n'
    )
    assert text.count("\n* * *\n") == 2
    assert text.count("\n# ") == 2


@pytest.mark.parametrize(
    ("prose", "markdown"),
    [
        ("*emphasis* and _this_", r"\*emphasis\* and \_this\_"),
        ("# heading", r"\# heading"),
        ("1. list", r"1\. list"),
        ("(a) list", r"(a\) list"),
        ("- bullet", r"\- bullet"),
        (": definition", r"\: definition"),
        ("<b>&amp;</b>", r"\<b\>\&amp;\</b\>"),
        ("C:\\path [x](y)", r"C:\\path \[x\](y)"),
        ("line\none\x00", "line one"),
    ],
)
def test_escape(prose: str, markdown: str) -> None:
    assert escape(prose) == markdown


@pytest.mark.parametrize(
    ("prose", "markdown"),
    [
        ("*Hush*, <b>she</b> said", r"*Hush*, \<b\>she\</b\> said"),
        ("_a_ and __b__", "*a* and **b**"),
        ("*a **b** c*", "*a **b** c*"),
        ("***both*** then", "***both*** then"),
        ("1. *x* 5 * 3 snake_case", r"1\. *x* 5 \* 3 snake\_case"),
        ("- dialogue", r"\- dialogue"),
    ],
)
def test_prose_keeps_emphasis_and_escapes_the_rest(prose: str, markdown: str) -> None:
    assert markdown_prose(prose) == markdown


def test_unknown_option_is_named(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="'wrap'.*none"):
        export_manuscript(normal_manuscript(), "md", tmp_path / "x.md", wrap=72)
