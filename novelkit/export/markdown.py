"""Pandoc Markdown with a YAML metadata block.

The prose's emphasis (``*italics*``, ``**bold**``) is written back as emphasis; every other
character that Markdown would read as markup is escaped, so model text never becomes a link,
raw HTML, a list or a heading.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ._inline import runs
from ._manuscript import Manuscript
from .text import chapter_title, check_options, one_line

__all__ = ["escape", "prose", "render", "write"]

# Inline markup anywhere in a line: emphasis, code, links, notes, spans, raw HTML and entities,
# math, citations, sub/superscript, strikeout, attributes and pipe tables.
_INLINE = re.compile(r"([\\`*_{}\[\]<>#~^$@|&])")
# Block markup at the start of a paragraph: bullet and fancy-list markers, definition lists,
# fenced divs and horizontal rules made of hyphens.
_LIST_MARKER = re.compile(r"^(\(?(?:[0-9]+|[A-Za-z]|[ivxlcdmIVXLCDM]+))([.)])(?=\s|$)")
_LEADING = re.compile(r"^([-+:=%])")


def escape(text: str) -> str:
    r"""Return ``text`` (one paragraph) as Markdown that pandoc reads back as the same words.

    ``escape("*Not* a [link]")`` gives ``\*Not\* a \[link\]``.
    """
    return _escape_start(_INLINE.sub(r"\\\1", one_line(text)))


def _escape_start(text: str) -> str:
    return _LEADING.sub(r"\\\1", _LIST_MARKER.sub(r"\1\\\2", text))


def prose(paragraph: str) -> str:
    r"""One paragraph of model prose as Markdown: its emphasis kept, everything else escaped.

    ``prose("*Hush*, <b>she</b> said")`` gives ``*Hush*, \<b\>she\</b\> said``.
    """
    out: list[str] = []
    italic = bold = False
    for index, run in enumerate(runs(paragraph)):
        text = _INLINE.sub(r"\\\1", run.text)  # runs are one line already; keep their spaces
        if index == 0 and not (run.italic or run.bold):
            text = _escape_start(text)
        # close before open, inner (bold) before outer (italic), as the parser nested them
        if bold and not run.bold:
            out.append("**")
            bold = False
        if italic and not run.italic:
            out.append("*")
            italic = False
        if run.italic and not italic:
            out.append("*")
            italic = True
        if run.bold and not bold:
            out.append("**")
            bold = True
        out.append(text)
    out.append("**" * bold + "*" * italic)
    return "".join(out)


def _yaml(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar; pandoc reads the value as Markdown.
    return json.dumps(escape(value), ensure_ascii=False)


def render(manuscript: Manuscript) -> str:
    """The manuscript as one pandoc Markdown document."""
    meta = [("title", manuscript.title), ("author", manuscript.author)]
    if manuscript.subtitle.strip():
        meta.append(("subtitle", manuscript.subtitle))
    meta += [("lang", manuscript.language), ("date", manuscript.date)]
    out = ["---", *(f"{key}: {_yaml(value)}" for key, value in meta), "---", ""]
    for chapter in manuscript.chapters:
        out += [f"# {escape(chapter_title(chapter))}", ""]
        scenes = [[prose(p) for p in scene if one_line(p)] for scene in chapter.scenes]
        for index, scene in enumerate(s for s in scenes if s):
            if index:
                out += ["* * *", ""]
            for paragraph in scene:
                out += [paragraph, ""]
    return "\n".join(out)


def write(manuscript: Manuscript, path: Path, **options: Any) -> None:
    """Write pandoc-compatible Markdown (``pandoc -f markdown`` reads it without warnings)."""
    check_options("md", options, ())
    Path(path).write_text(render(manuscript), encoding="utf-8")
