"""Word documents: Shunn standard manuscript format, or a KDP-ready 6x9 book interior.

All layout lives in paragraph styles (no tabs, no direct paragraph formatting), which is what
Word, KDP and a copy-editor expect, and keeps python-docx fast on a 150,000-word novel. The
only run formatting is the prose's own emphasis: ``*italics*`` and ``**bold**`` become italic
and bold runs.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from docx import Document
from docx.enum.style import WD_STYLE_TYPE
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING, WD_TAB_ALIGNMENT
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Emu, Inches, Length, Pt, RGBColor

from .._errors import ExportError
from ._inline import Run, runs
from ._manuscript import Manuscript
from .text import chapter_title, check_options, clean, one_line

__all__ = ["FONTS", "PROFILES", "approximate_word_count", "write"]

PROFILES = ("manuscript", "kdp")
FONTS = ("Times New Roman", "Courier New")

_P, _PPR, _PSTYLE, _R, _RPR, _B, _I, _T, _VAL = (
    qn(tag) for tag in ("w:p", "w:pPr", "w:pStyle", "w:r", "w:rPr", "w:b", "w:i", "w:t", "w:val")
)
_XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
_THEME_FONT_ATTRS = ("w:asciiTheme", "w:hAnsiTheme", "w:eastAsiaTheme", "w:cstheme")


def approximate_word_count(words: int) -> int:
    """Round a word count the way a manuscript's title page states it.

    Shunn: round short fiction to the nearest 100 and book-length work to the nearest 1,000;
    the line sits at 17,500 words (where SFWA's novelette ends and the novella begins).
    """
    unit = 100 if words < 17_500 else 1_000
    return max(unit, (words + unit // 2) // unit * unit)


def _fix_fonts(rpr_parent: Any, font: str) -> None:
    # Theme font attributes outrank explicit names, so drop them or Word shows Calibri/Cambria.
    rpr = rpr_parent.get_or_add_rPr()
    fonts = rpr.get_or_add_rFonts()
    for attr in _THEME_FONT_ATTRS:
        fonts.attrib.pop(qn(attr), None)
    for attr in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attr), font)


def _style(
    doc: Any,
    name: str,
    *,
    base: str = "Normal",
    align: int | None = None,
    indent: Length | None = None,
    before: Length | None = None,
    after: Length | None = None,
    page_break: bool = False,
    size: float | None = None,
) -> Any:
    style = doc.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
    style.base_style = doc.styles[base]
    style.quick_style = True
    fmt = style.paragraph_format
    if align is not None:
        fmt.alignment = align
    fmt.first_line_indent = indent if indent is not None else Inches(0)
    if before is not None:
        fmt.space_before = before
    if after is not None:
        fmt.space_after = after
    if page_break:
        fmt.page_break_before = True
        fmt.keep_with_next = True
    if size is not None:
        style.font.size = Pt(size)
    return style


def _page_field(paragraph: Any) -> None:
    field = OxmlElement("w:fldSimple")
    field.set(qn("w:instr"), " PAGE ")
    run = OxmlElement("w:r")
    text = OxmlElement("w:t")
    text.text = "1"
    run.append(text)
    field.append(run)
    paragraph._p.append(field)


def _base(doc: Any, manuscript: Manuscript, font: str, size: float, spacing: Any) -> None:
    styles = doc.styles
    defaults = styles.element.find(qn("w:docDefaults"))
    rpr = defaults.find(f"{qn('w:rPrDefault')}/{qn('w:rPr')}") if defaults is not None else None
    if rpr is not None:
        rpr.remove_all("w:rFonts")
        for lang in rpr.iterchildren(qn("w:lang")):
            lang.set(qn("w:val"), clean(manuscript.language) or "en")
    normal = styles["Normal"]
    _fix_fonts(normal.element, font)
    normal.font.size = Pt(size)
    fmt = normal.paragraph_format
    fmt.space_before = fmt.space_after = Pt(0)
    fmt.widow_control = True
    if isinstance(spacing, float):
        fmt.line_spacing = spacing
    else:
        fmt.line_spacing_rule = spacing
    props = doc.core_properties
    props.title = one_line(manuscript.title)
    props.author = props.last_modified_by = one_line(manuscript.author)
    props.language = clean(manuscript.language)
    props.identifier = manuscript.identifier
    props.comments = f"novelkit source sha256:{manuscript.source_hash}"


def _add(doc: Any, text: str, style: Any) -> Any:
    return doc.add_paragraph(text, style)


class _Body:
    """Appends styled paragraphs as raw XML: python-docx's ``add_paragraph(text, style)``
    rescans every style per call, which made a novel take seconds."""

    def __init__(self, doc: Any) -> None:
        self._end = doc.element.body.sectPr
        self._make = doc.element.body.makeelement

    def add(self, text: str | tuple[Run, ...], style: Any) -> None:
        make = self._make
        paragraph, props, style_ref = (make(tag) for tag in (_P, _PPR, _PSTYLE))
        style_ref.set(_VAL, style.style_id)
        props.append(style_ref)
        paragraph.append(props)
        for part in (Run(text),) if isinstance(text, str) else text:
            run, node = make(_R), make(_T)
            if part.bold or part.italic:
                run_props = make(_RPR)
                run_props.extend(
                    make(tag) for tag, on in ((_B, part.bold), (_I, part.italic)) if on
                )
                run.append(run_props)
            node.set(_XML_SPACE, "preserve")
            node.text = part.text
            run.append(node)
            paragraph.append(run)
        self._end.addprevious(paragraph)


def _chapters(
    doc: Any,
    manuscript: Manuscript,
    heading: Any,
    body: Any,
    first: Any,
    scene_break: Any,
    mark: str,
) -> None:
    out = _Body(doc)
    for chapter in manuscript.chapters:
        out.add(chapter_title(chapter), heading)
        scenes = [[r for r in (runs(p) for p in scene) if r] for scene in chapter.scenes]
        for index, scene in enumerate(s for s in scenes if s):
            if index:
                out.add(mark, scene_break)
            out.add(scene[0], first)
            for paragraph in scene[1:]:
                out.add(paragraph, body)


def _manuscript(doc: Any, manuscript: Manuscript, font: str) -> None:
    _base(doc, manuscript, font, 12, WD_LINE_SPACING.DOUBLE)
    section = doc.sections[0]
    section.page_width, section.page_height = Inches(8.5), Inches(11)
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Inches(1))
    section.header_distance = Inches(0.5)
    section.different_first_page_header_footer = True
    header = section.header.paragraphs[0]
    header.alignment = WD_ALIGN_PARAGRAPH.RIGHT
    surname, title = one_line(manuscript.author_surname), one_line(manuscript.title)
    header.add_run(f"{surname} / {title} / ")
    _page_field(header)

    contact = _style(doc, "Contact Block")
    contact.paragraph_format.line_spacing_rule = WD_LINE_SPACING.SINGLE
    contact.paragraph_format.tab_stops.add_tab_stop(Inches(6.5), WD_TAB_ALIGNMENT.RIGHT)
    lines = [one_line(line) for line in manuscript.contact.splitlines()]
    count = approximate_word_count(manuscript.word_count)
    _add(doc, f"{one_line(manuscript.author)}\tabout {count:,} words", contact)
    for line in filter(None, lines):
        _add(doc, line, contact)
    # Title about half-way down: 4.5 in below the top margin, less the contact block above it.
    drop = Inches(4.5) - Pt(14) * (1 + len(lines))
    centred = WD_ALIGN_PARAGRAPH.CENTER
    _add(
        doc, title, _style(doc, "Manuscript Title", align=centred, before=Emu(max(drop, Inches(1))))
    )
    if manuscript.subtitle.strip():
        _add(doc, one_line(manuscript.subtitle), _style(doc, "Manuscript Subtitle", align=centred))
    _add(doc, f"by {one_line(manuscript.author)}", _style(doc, "Byline", align=centred))

    # A third of the way down the page: 2 2/3 in below the top margin.
    heading = _style(
        doc, "Chapter Heading", align=centred, before=Pt(192), after=Pt(24), page_break=True
    )
    body = _style(doc, "Manuscript Body", indent=Inches(0.5))
    scene_break = _style(doc, "Scene Break", align=centred)
    _chapters(doc, manuscript, heading, body, body, scene_break, "#")
    _add(doc, "END", _style(doc, "End Mark", align=centred, before=Pt(24)))


def _copyright_year(manuscript: Manuscript) -> str:
    match = re.match(r"\d{4}", manuscript.date.strip())
    return match.group(0) if match else str(date.today().year)


def _kdp(doc: Any, manuscript: Manuscript, font: str) -> None:
    _base(doc, manuscript, font, 11, 1.15)
    section = doc.sections[0]
    # 6x9 in trim; 0.75 in on every side clears KDP's inside-margin minimum at any page count.
    section.page_width, section.page_height = Inches(6), Inches(9)
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Inches(0.75))
    section.header_distance = section.footer_distance = Inches(0.4)
    section.different_first_page_header_footer = True
    footer = section.footer.paragraphs[0]
    footer.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _page_field(footer)

    centred = WD_ALIGN_PARAGRAPH.CENTER
    _add(
        doc,
        one_line(manuscript.title),
        _style(doc, "Front Title", align=centred, before=Inches(2), after=Pt(18), size=28),
    )
    if manuscript.subtitle.strip():
        _add(
            doc,
            one_line(manuscript.subtitle),
            _style(doc, "Front Subtitle", align=centred, size=16),
        )
    _add(
        doc,
        one_line(manuscript.author),
        _style(doc, "Front Author", align=centred, before=Inches(1), size=14),
    )
    notice = f"Copyright © {_copyright_year(manuscript)} {one_line(manuscript.author)}. All rights reserved."
    _add(doc, notice, _style(doc, "Copyright Notice", align=centred, page_break=True, size=9))

    heading = doc.styles["Heading 1"]
    _fix_fonts(heading.element, font)
    heading.font.size = Pt(18)
    heading.font.bold = False
    heading.font.color.rgb = RGBColor(0, 0, 0)
    fmt = heading.paragraph_format
    fmt.alignment = centred
    fmt.page_break_before = True
    fmt.space_before, fmt.space_after = Inches(1.5), Pt(24)
    body = _style(doc, "Book Body", indent=Inches(0.3), align=WD_ALIGN_PARAGRAPH.JUSTIFY)
    first = _style(doc, "Book First Paragraph", base="Book Body", indent=Inches(0))
    scene_break = _style(doc, "Scene Break", align=centred, before=Pt(12), after=Pt(12))
    _chapters(doc, manuscript, heading, body, first, scene_break, "* * *")


def write(manuscript: Manuscript, path: Path, **options: Any) -> None:
    """Write a .docx.

    Options: ``profile`` — ``"manuscript"`` (default; Shunn standard manuscript format, Letter)
    or ``"kdp"`` (6x9 in book interior with title and copyright pages and Heading 1 chapters);
    ``font`` — ``"Times New Roman"`` (default) or ``"Courier New"``.
    """
    check_options("docx", options, {"profile", "font"})
    profile = options.get("profile", "manuscript")
    font = options.get("font", "Times New Roman")
    if profile not in PROFILES:
        raise ExportError(
            f"docx option profile must be one of {', '.join(PROFILES)}, not {profile!r}"
        )
    if font not in FONTS:
        raise ExportError(f"docx option font must be one of {', '.join(FONTS)}, not {font!r}")
    doc = Document()
    if profile == "manuscript":
        _manuscript(doc, manuscript, font)
    else:
        _kdp(doc, manuscript, font)
    doc.save(str(path))
