from __future__ import annotations

from pathlib import Path

import pytest
from _manuscripts import hostile_manuscript, normal_manuscript

from novelkit._errors import ExportError
from novelkit.export import export_manuscript
from novelkit.export.text import clean, one_line


def test_unwrapped_text_has_title_block_headings_and_one_line_per_paragraph(tmp_path: Path) -> None:
    manuscript = normal_manuscript(chapters=2, scenes=2, paragraphs=2)
    text = export_manuscript(manuscript, "txt", tmp_path / "book.txt").read_text(encoding="utf-8")
    assert text.startswith(
        "The Lighthouse Keeper\nA Novel\n\nby Ada Quill Marlowe\n\n\n\nThe Keeper's Night 1\n\n"
    )
    lines = text.splitlines()
    for chapter in manuscript.chapters:
        assert chapter.title in lines
        for paragraph in chapter.paragraphs:
            assert paragraph in lines  # whole paragraph on one line
    assert lines.count("* * *") == 2


def test_wrap_keeps_every_word_and_line_width(tmp_path: Path) -> None:
    manuscript = normal_manuscript(chapters=2, scenes=2, paragraphs=3)
    text = export_manuscript(manuscript, "txt", tmp_path / "b.txt", wrap=40).read_text(
        encoding="utf-8"
    )
    assert max(len(line) for line in text.splitlines()) <= 40
    unwrapped = export_manuscript(manuscript, "txt", tmp_path / "u.txt").read_text(encoding="utf-8")
    assert text.split() == unwrapped.split()
    assert text.count("\n\n* * *\n\n") == 2


def test_hostile_text_loses_only_control_characters(tmp_path: Path) -> None:
    manuscript = hostile_manuscript()
    text = export_manuscript(manuscript, "txt", tmp_path / "h.txt").read_text(encoding="utf-8")
    assert "<script>alert('x')</script> & &amp; &#60; ]]>" in text
    assert "שלום עולם" in text and "📚" in text
    assert "Chapter 3" in text  # a blank chapter title gets a default
    assert not any(ord(c) < 32 and c != "\n" for c in text)
    assert "Control chars and a form[31m escape" in text


def test_clean_and_one_line() -> None:
    assert clean("a\x00b\x1bc\ud800d\ufffe\u00a0e\tf\ng") == "abcd\u00a0e\tf\ng"
    assert one_line("  a\t b\n\nc\u2028d  ") == "a b c d"


@pytest.mark.parametrize("wrap", [0, 5, "72", 7.5, True])
def test_bad_wrap_is_rejected(wrap: object, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="wrap"):
        export_manuscript(normal_manuscript(), "txt", tmp_path / "x.txt", wrap=wrap)


def test_unknown_option_is_named(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="'width'.*wrap"):
        export_manuscript(normal_manuscript(), "txt", tmp_path / "x.txt", width=72)
    assert not list(tmp_path.iterdir())
