from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from _manuscripts import hostile_manuscript, normal_manuscript, require_tool

from novelkit._errors import ExportError
from novelkit.export import Manuscript, export_manuscript
from novelkit.export.text import chapter_title

pytestmark = pytest.mark.slow  # every test shells out to poppler


def _run(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout


def _pages(path: Path) -> list[str]:
    text = _run(require_tool("pdftotext"), "-layout", str(path), "-")
    return text.split("\f")[:-1]  # pdftotext ends every page with a form feed


def _export(manuscript: Manuscript, tmp_path: Path) -> Path:
    return export_manuscript(manuscript, "pdf", tmp_path / "book.pdf")


def test_title_contents_chapters_and_page_numbers(tmp_path: Path) -> None:
    manuscript = normal_manuscript(chapters=4, scenes=3, paragraphs=6)
    path = _export(manuscript, tmp_path)
    info = _run(require_tool("pdfinfo"), str(path))
    count = int(re.search(r"Pages:\s+(\d+)", info).group(1))  # type: ignore[union-attr]
    assert count > 0
    assert re.search(r"Title:\s+The Lighthouse Keeper", info)
    pages = _pages(path)
    assert len(pages) == count
    assert "The Lighthouse Keeper" in pages[0] and "Ada Quill Marlowe" in pages[0]
    assert "Contents" in pages[1]
    for chapter in manuscript.chapters:
        entry = re.search(re.escape(chapter.title) + r"[ .]+(\d+)\s*$", pages[1], re.MULTILINE)
        assert entry, f"no contents line for {chapter.title!r}"
        page = int(entry.group(1))
        # The chapter starts on a fresh page, the one the contents names, and its number is in the footer.
        assert pages[page - 1].strip().startswith(chapter.title)
        assert pages[page - 1].strip().splitlines()[-1].strip() == str(page)
        assert chapter.title not in pages[page - 2].replace(pages[1], "")
    scene_breaks = sum(len(c.scenes) - 1 for c in manuscript.chapters)
    assert sum(len(re.findall(r"^\s*\u2042\s*$", p, re.MULTILINE)) for p in pages) == scene_breaks
    fonts = _run(require_tool("pdffonts"), str(path)).splitlines()[2:]
    assert fonts and all(line.split()[-5] == "yes" for line in fonts)  # every font embedded


def test_hostile_text_comes_out_as_text(tmp_path: Path) -> None:
    manuscript = hostile_manuscript()
    pages = _pages(_export(manuscript, tmp_path))
    # pdftotext wraps right-to-left runs in bidi embedding controls; a reader sees none.
    text = re.sub(r"\s+", " ", re.sub("[\u200e\u200f\u202a-\u202e]", "", "".join(pages)))
    assert chapter_title(manuscript.chapters[0]) in text and "Chapter 3" in text
    assert "{#id} [link]" in text  # the emoji in that title has no glyph in DejaVu
    assert "<script>alert('x')</script> & &amp; &#60; ]]>" in text
    assert "<para>reportlab</para> <font color=red>tags</font> &nbsp; &bogus;" in text
    assert "Greek λόγος, Cyrillic роман" in text
    if Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists():
        assert "שלום עולם" in text and "مرحبا بالعالم" in text
        assert "שלום" in pages[1]  # the right-to-left chapter title is in the contents


def test_unknown_option_is_named(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="'toc'; valid options: none"):
        export_manuscript(normal_manuscript(), "pdf", tmp_path / "x.pdf", toc=False)
