"""Plain UTF-8 text, optionally wrapped; also the text-cleaning helpers every exporter shares.

Model output is never trusted: :func:`clean` drops the characters XML 1.0 forbids (C0 controls
other than tab and newline, lone surrogates, U+FFFE/U+FFFF) and :func:`one_line` folds a
paragraph's whitespace into single spaces, so every format sees the same words.

Plain text has no italics: the emphasis markers of model prose (``*word*``, ``**word**``) are
dropped and the words kept; scenes are separated by a centred-by-convention ``* * *`` line.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .._errors import ExportError
from ._inline import plain
from ._manuscript import Manuscript, ManuscriptChapter

__all__ = ["check_options", "chapter_title", "clean", "one_line", "render", "write"]

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
# Not \s: that would also fold no-break spaces, which writers use on purpose.
_SPACE_RUN = re.compile("[\t\n\v\f\r \x85\u2028\u2029]+")


def clean(text: str) -> str:
    """Drop control characters and lone surrogates that no XML format (or terminal) accepts."""
    return _XML_ILLEGAL.sub("", text)


def one_line(text: str) -> str:
    """Clean ``text`` and fold its whitespace runs (newlines included) into single spaces."""
    return _SPACE_RUN.sub(" ", clean(text)).strip()


def chapter_title(chapter: ManuscriptChapter) -> str:
    """The chapter's title on one line without emphasis markers, or "Chapter N" when blank."""
    return plain(chapter.title) or f"Chapter {chapter.number}"


def check_options(fmt: str, options: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Raise :class:`ExportError` naming the first unknown option and the valid ones."""
    allowed = sorted(valid)
    for name in options:
        if name not in allowed:
            choices = ", ".join(allowed) or "none"
            raise ExportError(f"unknown {fmt} export option {name!r}; valid options: {choices}")


def _block(text: str, wrap: int | None) -> str:
    if wrap is None:
        return text
    return textwrap.fill(text, width=wrap, break_long_words=False, break_on_hyphens=False)


def render(manuscript: Manuscript, *, wrap: int | None = None) -> str:
    """The whole manuscript as plain text (see :func:`write`)."""
    if wrap is not None and (isinstance(wrap, bool) or not isinstance(wrap, int) or wrap < 20):
        raise ExportError(f"txt option wrap must be None or an integer >= 20, not {wrap!r}")
    head = [one_line(manuscript.title)]
    if manuscript.subtitle.strip():
        head.append(one_line(manuscript.subtitle))
    blocks = [
        "\n".join(_block(line, wrap) for line in head),
        _block(f"by {one_line(manuscript.author)}", wrap),
    ]
    for chapter in manuscript.chapters:
        blocks.append(f"\n\n{_block(chapter_title(chapter), wrap)}")
        scenes = []
        for scene in chapter.scenes:
            paragraphs = (plain(p) for p in scene)
            scenes.append("\n\n".join(_block(p, wrap) for p in paragraphs if p))
        blocks.append("\n\n* * *\n\n".join(s for s in scenes if s))
    return "\n\n".join(blocks) + "\n"


def write(manuscript: Manuscript, path: Path, **options: Any) -> None:
    """Write UTF-8 text: title block, chapter headings, ``* * *`` between scenes; emphasis
    markers in the prose are dropped (plain text has no italics).

    Option ``wrap``: ``None`` (default) keeps one line per paragraph; an integer such as 72
    wraps paragraphs at that width.
    """
    check_options("txt", options, {"wrap"})
    Path(path).write_text(render(manuscript, wrap=options.get("wrap")), encoding="utf-8")
