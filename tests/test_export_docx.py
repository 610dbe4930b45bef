from __future__ import annotations

from pathlib import Path
from typing import Any

import docx
import pytest
from _manuscripts import HOSTILE_PLAIN, hostile_manuscript, normal_manuscript, prose_manuscript
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING
from docx.oxml.ns import qn
from docx.shared import Inches, Pt

from novelkit._errors import ExportError
from novelkit.export import Manuscript, export_manuscript
from novelkit.export._inline import plain
from novelkit.export.docx import approximate_word_count
from novelkit.export.text import chapter_title


def _open(manuscript: Manuscript, tmp_path: Path, **options: Any) -> Any:
    return docx.Document(
        str(export_manuscript(manuscript, "docx", tmp_path / "book.docx", **options))
    )


def _with_style(doc: Any, name: str) -> list[Any]:
    return [p for p in doc.paragraphs if p.style.name == name]


def _has_page_field(part: Any) -> bool:
    xml = part._element.xml
    simple = [f.get(qn("w:instr")) for f in part._element.iter(qn("w:fldSimple"))]
    complex_ = [t.text for t in part._element.iter(qn("w:instrText"))]
    return "PAGE" in xml and any(i and i.split()[0] == "PAGE" for i in simple + complex_)


@pytest.mark.parametrize(
    ("words", "stated"),
    [
        (1, 100),
        (149, 100),
        (150, 200),
        (2_176, 2_200),
        (17_449, 17_400),
        (17_500, 18_000),
        (82_499, 82_000),
        (151_388, 151_000),
    ],
)
def test_word_count_rounding(words: int, stated: int) -> None:
    assert approximate_word_count(words) == stated


@pytest.mark.parametrize("font", ["Times New Roman", "Courier New"])
def test_manuscript_page_fonts_and_spacing(font: str, tmp_path: Path) -> None:
    doc = _open(normal_manuscript(), tmp_path, font=font)
    section = doc.sections[0]
    assert (section.page_width, section.page_height) == (Inches(8.5), Inches(11))
    margins = (section.left_margin, section.right_margin, section.top_margin, section.bottom_margin)
    assert margins == (Inches(1),) * 4
    normal = doc.styles["Normal"]
    assert normal.font.name == font and normal.font.size == Pt(12)
    fonts = normal.element.rPr.rFonts
    assert fonts.get(qn("w:asciiTheme")) is None and fonts.get(qn("w:eastAsia")) == font
    assert normal.paragraph_format.line_spacing_rule == WD_LINE_SPACING.DOUBLE
    body = _with_style(doc, "Manuscript Body")
    assert len(body) == 3 * 2 * 3
    assert body[0].style.paragraph_format.first_line_indent == Inches(0.5)
    assert all(p.paragraph_format.first_line_indent is None for p in body)  # style, not direct
    assert all(not run.font.name and not run.font.size for p in body for run in p.runs)
    assert all("\t" not in p.text for p in body)


def test_manuscript_title_page_header_chapters_scene_breaks_and_end(tmp_path: Path) -> None:
    manuscript = normal_manuscript()
    doc = _open(manuscript, tmp_path)
    texts = [p.text for p in doc.paragraphs]
    assert texts[:5] == [
        "Ada Quill Marlowe\tabout 400 words",
        "12 Harbour Road",
        "Portsmouth PO1 2AB",
        "ada@example.com",
        "+44 20 7946 0000",
    ]
    assert doc.paragraphs[0].style.paragraph_format.line_spacing_rule == WD_LINE_SPACING.SINGLE
    title = doc.paragraphs[5]
    assert title.text == "The Lighthouse Keeper"
    assert title.style.paragraph_format.alignment == WD_ALIGN_PARAGRAPH.CENTER
    assert title.style.paragraph_format.space_before >= Inches(3)  # about half-way down
    assert texts[6:8] == ["A Novel", "by Ada Quill Marlowe"]

    section = doc.sections[0]
    assert section.different_first_page_header_footer
    assert not "".join(p.text for p in section.first_page_header.paragraphs).strip()
    header = section.header.paragraphs[0]
    assert header.text.startswith("Marlowe / The Lighthouse Keeper / ")
    assert header.alignment == WD_ALIGN_PARAGRAPH.RIGHT
    assert _has_page_field(section.header)

    headings = _with_style(doc, "Chapter Heading")
    assert [h.text for h in headings] == [c.title for c in manuscript.chapters]
    fmt = headings[0].style.paragraph_format
    assert fmt.page_break_before and fmt.alignment == WD_ALIGN_PARAGRAPH.CENTER
    assert Inches(2.5) <= fmt.space_before <= Inches(3)  # a third of the way down
    breaks = _with_style(doc, "Scene Break")
    assert [b.text for b in breaks] == ["#"] * 3
    assert breaks[0].style.paragraph_format.alignment == WD_ALIGN_PARAGRAPH.CENTER
    assert (
        texts[-1] == "END"
        and doc.paragraphs[-1].style.paragraph_format.alignment == WD_ALIGN_PARAGRAPH.CENTER
    )
    assert doc.core_properties.title == "The Lighthouse Keeper"
    assert doc.core_properties.author == "Ada Quill Marlowe"


def test_novel_length_word_count_rounds_to_thousands(tmp_path: Path) -> None:
    manuscript = prose_manuscript(8, 2500)
    assert manuscript.word_count == 20_285
    doc = _open(manuscript, tmp_path)
    assert doc.paragraphs[0].text == "Benchmark Author\tabout 20,000 words"


def test_kdp_profile(tmp_path: Path) -> None:
    manuscript = normal_manuscript()
    doc = _open(manuscript, tmp_path, profile="kdp")
    section = doc.sections[0]
    assert (section.page_width, section.page_height) == (Inches(6), Inches(9))
    assert {
        section.left_margin,
        section.right_margin,
        section.top_margin,
        section.bottom_margin,
    } == {Inches(0.75)}
    texts = [p.text for p in doc.paragraphs]
    assert texts[:3] == ["The Lighthouse Keeper", "A Novel", "Ada Quill Marlowe"]
    notice = doc.paragraphs[3]
    assert notice.text == "Copyright © 2024 Ada Quill Marlowe. All rights reserved."
    assert notice.style.paragraph_format.page_break_before

    headings = _with_style(doc, "Heading 1")
    assert [h.text for h in headings] == [c.title for c in manuscript.chapters]
    assert headings[0].style.paragraph_format.page_break_before
    first = _with_style(doc, "Book First Paragraph")
    body = _with_style(doc, "Book Body")
    assert len(first) == 3 * 2 and len(body) == 3 * 2 * 2
    assert body[0].style.paragraph_format.first_line_indent == Inches(0.3)
    assert body[0].style.paragraph_format.alignment == WD_ALIGN_PARAGRAPH.JUSTIFY
    assert not first[0].style.paragraph_format.first_line_indent
    assert [b.text for b in _with_style(doc, "Scene Break")] == ["* * *"] * 3
    # No tabs and no leading spaces anywhere: indents come from styles only.
    assert not list(doc.element.body.iter(qn("w:tab")))
    assert all("\t" not in t and not t.startswith(" ") for t in texts)
    assert _has_page_field(section.footer)
    assert section.different_first_page_header_footer


@pytest.mark.parametrize("profile", ["manuscript", "kdp"])
def test_hostile_text_is_kept_as_text(profile: str, tmp_path: Path) -> None:
    manuscript = hostile_manuscript()
    doc = _open(manuscript, tmp_path, profile=profile)
    texts = [p.text for p in doc.paragraphs]
    assert 'A <Title> & "Quotes" ]]> *bold*' in texts
    for chapter in manuscript.chapters:
        assert chapter_title(chapter) in texts
        for paragraph in chapter.paragraphs:
            if plain(paragraph):
                assert plain(paragraph) in texts
    assert HOSTILE_PLAIN in texts  # only the Markdown emphasis became formatting
    assert not any(ord(c) < 32 for t in texts for c in t.replace("\t", ""))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"profile": "ebook"}, "profile must be one of manuscript, kdp"),
        ({"font": "Comic Sans"}, "font must be one of"),
        ({"wrap": 72}, "'wrap'; valid options: font, profile"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=message):
        export_manuscript(normal_manuscript(), "docx", tmp_path / "x.docx", **options)
