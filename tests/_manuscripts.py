"""Manuscripts for the exporter tests, and a helper for tests that need an external tool."""

from __future__ import annotations

import subprocess
from pathlib import Path

from _tools import require_tool  # noqa: F401  (re-exported for the export tests)

from novelkit.export import Manuscript, ManuscriptChapter

__all__ = [
    "EMPHASIS_MARKDOWN",
    "HOSTILE_PLAIN",
    "HOSTILE_TEXT",
    "epubcheck",
    "hostile_manuscript",
    "normal_manuscript",
    "prose_manuscript",
    "require_tool",
]

# Everything a model might emit that a careless exporter turns into markup or a broken file.
HOSTILE_TEXT = (
    "<script>alert('x')</script> & &amp; &#60; ]]> <![CDATA[ x ]]> \"unmatched 'quotes",
    "*not emphasis* _nor this_ **nor** `code` [a link](http://127.0.0.1/) ![img](x.png) <b>bold</b>",
    "# not a heading",
    "1. not a list",
    "- not a bullet",
    "> not a quote",
    "\\backslash\\ and $math$ and @citation and ^super^ and ~sub~ and {.attr} | pipe |",
    "Emoji 📚🐉 and RTL: שלום עולם and مرحبا بالعالم, CJK 小说, Greek λόγος, Cyrillic роман.",
    "Control\x00 chars\x01 \x08and\x0b a\x0c form\x1b[31m escape\x7f and lone \ud800 surrogate.",
    "Tab\tinside and\nnewline inside and  double  spaces.",
    "%PDF-1.4 and <para>reportlab</para> <font color=red>tags</font> &nbsp; &bogus;",
)

# HOSTILE_TEXT[1] as a reader sees it: Markdown emphasis is drawn, all other markup stays text.
HOSTILE_PLAIN = (
    "not emphasis nor this nor `code` [a link](http://127.0.0.1/) ![img](x.png) <b>bold</b>"
)

# 12-manuscript.md as a model writes it: emphasis, every common scene-break line, curly quotes,
# em dashes, and asterisks and underscores that are not emphasis.
EMPHASIS_MARKDOWN = """\
# The *Storm* Comes

She said it *twice*, the second time **louder**, and _nobody_ answered.

“It’s ***always*** the tide—always,” said the keeper. Five * three is snake_case_name.

***

A new scene *begins* here.

* * *

Another scene, with **bold** and *italics*.

---

A third break, __strong__ too.

#

Last scene of the chapter.

# Chapter Two

The <b>second</b> chapter & its *end*.

___

Done.
"""


def normal_manuscript(chapters: int = 3, scenes: int = 2, paragraphs: int = 3) -> Manuscript:
    """A small, well-behaved novel with numbered, recognisable sentences."""
    built = []
    for c in range(1, chapters + 1):
        scene_list = []
        for s in range(1, scenes + 1):
            scene_list.append(
                tuple(
                    f"Chapter {c} scene {s} paragraph {p}. The lighthouse keeper counted the "
                    f"waves while the gulls argued over the harbour, and nobody slept."
                    for p in range(1, paragraphs + 1)
                )
            )
        built.append(ManuscriptChapter(c, f"The Keeper's Night {c}", tuple(scene_list)))
    return Manuscript(
        title="The Lighthouse Keeper",
        author="Ada Quill Marlowe",
        chapters=tuple(built),
        contact="12 Harbour Road\nPortsmouth PO1 2AB\nada@example.com\n+44 20 7946 0000",
        subtitle="A Novel",
        blurb="A keeper, a storm and a ship that should not be there.",
        date="2024-05-17",
        source_hash="0" * 64,
    )


def hostile_manuscript() -> Manuscript:
    """Titles and prose full of markup, entities, control characters, RTL and emoji."""
    chapters = (
        ManuscriptChapter(
            1, '<Chapter> & "One" ]]> *star* #1 \x07bell', (HOSTILE_TEXT[:6], HOSTILE_TEXT[6:])
        ),
        ManuscriptChapter(
            2, "שלום — 📚 {#id} [link]", ((HOSTILE_TEXT[7],), (HOSTILE_TEXT[0], "* * *"))
        ),
        ManuscriptChapter(3, "   ", ((" ", "Only\x00 this.\x1f"),)),
    )
    return Manuscript(
        title='A <Title> & "Quotes" ]]> *bold* \x01',
        author="Zoë <O'Brien> & Co.",
        chapters=chapters,
        contact="<b>addr</b> & co\n\x02phone: 555-0100",
        subtitle="---\nyaml: [injection]\n# heading",
        blurb="<p>blurb</p> & \x00",
        date="2024-05-17",
        source_hash="f" * 64,
    )


def prose_manuscript(chapters: int, words_per_chapter: int, *, seed: int = 1) -> Manuscript:
    """Deterministic pseudo-prose of about ``chapters * words_per_chapter`` words."""
    subjects = (
        "The keeper",
        "Mara",
        "The old captain",
        "A gull",
        "Her brother",
        "The fog",
        "Nobody",
    )
    verbs = ("watched", "remembered", "carried", "whispered to", "followed", "ignored", "mended")
    objects = (
        "the lamp",
        "the long tide",
        "a broken oar",
        "the ledger",
        "the harbour lights",
        "the storm",
    )
    tails = (
        "before the bell rang twice",
        "as if the sea were listening",
        "and said nothing about it",
        "while the rain found every crack in the roof",
        "because there was no one else to do it",
    )
    state = seed
    built = []
    for c in range(1, chapters + 1):
        scenes: list[tuple[str, ...]] = []
        paragraphs: list[str] = []
        words = 0
        while words < words_per_chapter:
            sentences = []
            for _ in range(4 + state % 4):
                state = (state * 1103515245 + 12345) % 2**31
                sentence = (
                    f"{subjects[state % 7]} {verbs[(state >> 3) % 7]} {objects[(state >> 6) % 6]} "
                    f"{tails[(state >> 9) % 5]}."
                )
                if state % 5 == 0:
                    sentence = f"“{sentence[:-1]},” she said, “and that was that.”"
                sentences.append(sentence)
            paragraph = " ".join(sentences)
            paragraphs.append(paragraph)
            words += len(paragraph.split())
            if len(paragraphs) == 15:
                scenes.append(tuple(paragraphs))
                paragraphs = []
        if paragraphs:
            scenes.append(tuple(paragraphs))
        built.append(ManuscriptChapter(c, f"Chapter {c}: The Tide Turns", tuple(scenes)))
    return Manuscript(
        title="The Long Tide",
        author="Benchmark Author",
        chapters=tuple(built),
        date="2024-05-17",
        source_hash="b" * 64,
    )


def epubcheck(path: Path) -> subprocess.CompletedProcess[str]:
    """Run EPUBCheck; Debian ships it as an executable jar, which needs ``java -jar`` here."""
    tool = Path(require_tool("epubcheck")).resolve()
    command = [str(tool), str(path)]
    with open(tool, "rb") as handle:
        is_jar = handle.read(2) == b"PK"
    if is_jar:
        command = [require_tool("java"), "-jar", str(tool), str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
