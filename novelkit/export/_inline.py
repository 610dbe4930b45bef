"""Emphasis in model prose: ``*italics*``, ``_italics_``, ``**bold**`` as runs every exporter draws.

Models write Markdown. A paragraph of the manuscript is read with markdown-it-py (CommonMark's
rules for where a ``*`` or ``_`` opens and closes emphasis, so ``5 * 3`` and ``snake_case`` stay
as they are) with only emphasis and backslash escapes switched on: raw HTML, entities, links,
code and every block construct stay literal text, because model text is data. Each exporter
escapes the runs' text for its own format.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Run", "plain", "runs", "scene_break"]

# A line that stands for a scene break: a CommonMark thematic break (***, * * *, ---, ___),
# a lone # (as in manuscript format), or the typographic asterism.
_SCENE_BREAK = re.compile(r"([*_-])(?:[ \t]*\1){2,}|#|⁂")


@dataclass(frozen=True)
class Run:
    """A stretch of text with one look."""

    text: str
    italic: bool = False
    bold: bool = False


@functools.cache
def _parser() -> Any:
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        raise ImportError(
            "exporting a manuscript needs markdown-it-py: pip install markdown-it-py "
            "(or any of 'novelkit[docx]', 'novelkit[epub]', 'novelkit[pdf]')"
        ) from None
    return MarkdownIt("zero").enable(["emphasis", "escape"])


@functools.lru_cache(maxsize=8192)  # a book exported to several formats parses each once
def runs(paragraph: str) -> tuple[Run, ...]:
    """``paragraph`` (one line of Markdown prose) as runs; adjacent runs of one look merged.

    ``runs("a *b* **c**")`` gives ``Run("a "), Run("b", italic=True), Run(" "),
    Run("c", bold=True)``.
    """
    from .text import one_line  # text.py imports this module

    text = one_line(paragraph)
    if not text:
        return ()
    if "*" not in text and "_" not in text and "\\" not in text:
        return (Run(text),)
    out: list[Run] = []
    italic = bold = 0
    for token in _parser().parseInline(text)[0].children or ():
        kind = token.type
        if kind == "em_open":
            italic += 1
        elif kind == "em_close":
            italic -= 1
        elif kind == "strong_open":
            bold += 1
        elif kind == "strong_close":
            bold -= 1
        elif token.content:
            run = Run(token.content, italic > 0, bold > 0)
            if out and (out[-1].italic, out[-1].bold) == (run.italic, run.bold):
                run = Run(out.pop().text + run.text, run.italic, run.bold)
            out.append(run)
    return tuple(out)


def plain(paragraph: str) -> str:
    """The words of ``paragraph`` without emphasis markers: ``"*Hush*, she said"`` → ``"Hush, she said"``."""
    return "".join(run.text for run in runs(paragraph))


def scene_break(line: str) -> bool:
    """Whether a line of a manuscript (stripped) marks a scene break."""
    return _SCENE_BREAK.fullmatch(line.strip()) is not None
