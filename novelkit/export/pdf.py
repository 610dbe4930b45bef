"""A readable 6x9 in book PDF with ReportLab: title page, contents with page numbers, chapters.

Text reaches ReportLab's paragraph mini-markup only through :func:`html.escape`, and DejaVu
Serif (when installed) covers Latin, Greek, Cyrillic, Hebrew and Arabic letters. The prose's
``*italics*`` and ``**bold**`` are set in the italic and bold faces; a scene break is a centred
asterism (⁂), or ``* * *`` with the built-in Times when DejaVu is missing.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any

from reportlab.lib.enums import TA_CENTER, TA_JUSTIFY
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    TableStyle,
)
from reportlab.platypus.tableofcontents import TableOfContents

from ._inline import runs
from ._manuscript import Manuscript
from .text import chapter_title, check_options, one_line

__all__ = ["PAGE_SIZE", "write"]

PAGE_SIZE = (6 * inch, 9 * inch)
_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
# Hebrew and Arabic runs (with the spaces between their words), drawn right to left.
_RTL_RUN = re.compile(
    "[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]+(?:[ \u00a0]+[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]+)*"
)
_FACES = {
    "": "DejaVuSerif",
    "-Bold": "DejaVuSerif-Bold",
    "-Italic": "DejaVuSerif-Italic",
    "-BoldItalic": "DejaVuSerif-BoldItalic",
}


class _Fonts:
    """The body font, plus DejaVu Sans for letters DejaVu Serif lacks (Hebrew, Arabic...)."""

    def __init__(self) -> None:
        registered = set(pdfmetrics.getRegisteredFontNames())
        files = {name: _DEJAVU / f"{name}.ttf" for name in (*_FACES.values(), "DejaVuSans")}
        if not all(path.exists() for path in files.values()):
            self.name = "Times-Roman"
            self.scene_break = "* * *"
            self._serif: dict[int, int] = {}
            self._sans: dict[int, int] = {}
            return
        for name, path in files.items():
            if name not in registered:
                pdfmetrics.registerFont(TTFont(name, str(path)))
        if "DejaVuSerif" not in registered:
            pdfmetrics.registerFontFamily(
                "DejaVuSerif",
                normal="DejaVuSerif",
                bold="DejaVuSerif-Bold",
                italic="DejaVuSerif-Italic",
                boldItalic="DejaVuSerif-BoldItalic",
            )
        self.name = "DejaVuSerif"
        self.scene_break = "\u2042"
        self._serif = pdfmetrics.getFont("DejaVuSerif").face.charToGlyph
        self._sans = pdfmetrics.getFont("DejaVuSans").face.charToGlyph

    def markup(self, text: str) -> str:
        """``text`` as paragraph markup: escaped, with fallback-font runs where needed."""
        if text.isascii():
            return escape(text, quote=False)
        # No bidi algorithm here: reversing each right-to-left run puts its letters in reading
        # order; Arabic letters stay unjoined (that needs a shaping engine).
        text = _RTL_RUN.sub(lambda match: match.group(0)[::-1], text)
        if not self._serif:
            return escape(text, quote=False)
        runs: list[tuple[bool, list[str]]] = []
        for char in text:
            code = ord(char)
            fallback = code not in self._serif and code in self._sans
            if runs and runs[-1][0] == fallback:
                runs[-1][1].append(char)
            else:
                runs.append((fallback, [char]))
        parts = []
        for fallback, chars in runs:
            run = escape("".join(chars), quote=False)
            parts.append(f'<font name="DejaVuSans">{run}</font>' if fallback else run)
        return "".join(parts)

    def prose(self, paragraph: str) -> str:
        """A paragraph of model prose as markup, its emphasis in the italic and bold faces."""
        parts = []
        for run in runs(paragraph):
            text = self.markup(run.text)
            if run.bold:
                text = f"<b>{text}</b>"
            parts.append(f"<i>{text}</i>" if run.italic else text)
        return "".join(parts)


class _ChapterHeading(Paragraph):  # type: ignore[misc]
    def __init__(self, text: str, markup: str, style: ParagraphStyle, key: str) -> None:
        super().__init__(markup, style)
        self.plain = text
        self.markup = markup
        self.key = key


class _Book(BaseDocTemplate):  # type: ignore[misc]
    def __init__(self, path: Path, manuscript: Manuscript, font: str) -> None:
        margin = 0.75 * inch
        super().__init__(
            str(path),
            pagesize=PAGE_SIZE,
            leftMargin=margin,
            rightMargin=margin,
            topMargin=margin,
            bottomMargin=margin,
            title=one_line(manuscript.title),
            author=one_line(manuscript.author),
            subject=one_line(manuscript.subtitle),
            keywords=f"novelkit source sha256:{manuscript.source_hash}",
            creator="novelkit",
            lang=one_line(manuscript.language) or "en",
            initialFontName=font,  # else every page references an unembedded Helvetica
        )
        self.font = font
        frame = Frame(self.leftMargin, self.bottomMargin, self.width, self.height, id="text")
        self.addPageTemplates(
            [
                PageTemplate("front", [frame]),
                PageTemplate("body", [frame], onPage=self._footer),
            ]
        )

    def _footer(self, canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(self.font, 9)
        canvas.drawCentredString(PAGE_SIZE[0] / 2, 0.45 * inch, str(doc.page))
        canvas.restoreState()

    def afterFlowable(self, flowable: Flowable) -> None:
        if isinstance(flowable, _ChapterHeading):
            self.canv.bookmarkPage(flowable.key)
            self.canv.addOutlineEntry(flowable.plain, flowable.key, 0)
            self.notify("TOCEntry", (0, flowable.markup, self.page, flowable.key))


def _styles(font: str) -> dict[str, ParagraphStyle]:
    body = ParagraphStyle(
        "Body", fontName=font, fontSize=10.5, leading=14.5, alignment=TA_JUSTIFY, firstLineIndent=18
    )
    centred = {"alignment": TA_CENTER, "firstLineIndent": 0}
    return {
        "body": body,
        "first": ParagraphStyle("BodyFirst", parent=body, firstLineIndent=0),
        "break": ParagraphStyle("SceneBreak", parent=body, spaceBefore=7, spaceAfter=7, **centred),
        "heading": ParagraphStyle(
            "ChapterHeading", parent=body, fontSize=18, leading=24, spaceAfter=30, **centred
        ),
        "title": ParagraphStyle(
            "Title", parent=body, fontSize=26, leading=32, spaceAfter=14, **centred
        ),
        "subtitle": ParagraphStyle("Subtitle", parent=body, fontSize=15, leading=20, **centred),
        "author": ParagraphStyle(
            "Author", parent=body, fontSize=14, leading=18, spaceBefore=60, **centred
        ),
        "toc": ParagraphStyle(
            "TOCEntry", parent=body, alignment=0, firstLineIndent=0, leftIndent=0, spaceAfter=3
        ),
    }


def _story(
    manuscript: Manuscript, styles: dict[str, ParagraphStyle], fonts: _Fonts
) -> list[Flowable]:
    font = fonts.name

    def para(text: str, style: str) -> Paragraph:
        return Paragraph(fonts.markup(text), styles[style])

    story: list[Flowable] = [
        Spacer(1, 1.8 * inch),
        para(one_line(manuscript.title) or "Untitled", "title"),
    ]
    if manuscript.subtitle.strip():
        story.append(para(one_line(manuscript.subtitle), "subtitle"))
    story += [para(one_line(manuscript.author), "author"), PageBreak()]
    if manuscript.chapters:
        table = TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("FONT", (0, 0), (-1, -1), font),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
        toc = TableOfContents(levelStyles=[styles["toc"]], dotsMinLevel=0, tableStyle=table)
        story += [Spacer(1, 0.5 * inch), para("Contents", "heading"), toc]
    story.append(NextPageTemplate("body"))
    for index, chapter in enumerate(manuscript.chapters):
        story += [PageBreak(), Spacer(1, 1.2 * inch)]
        title = chapter_title(chapter)
        key = f"chapter-{index + 1}"
        story.append(_ChapterHeading(title, fonts.markup(title), styles["heading"], key))
        scenes = [[t for t in (fonts.prose(p) for p in scene) if t] for scene in chapter.scenes]
        for number, scene in enumerate(s for s in scenes if s):
            if number:
                story.append(para(fonts.scene_break, "break"))
            story.append(Paragraph(scene[0], styles["first"]))
            story.extend(Paragraph(text, styles["body"]) for text in scene[1:])
    return story


def write(manuscript: Manuscript, path: Path, **options: Any) -> None:
    """Write a 6x9 in PDF: title page, contents, each chapter on a new page, page numbers."""
    check_options("pdf", options, ())
    fonts = _Fonts()
    doc = _Book(path, manuscript, fonts.name)
    doc.multiBuild(_story(manuscript, _styles(fonts.name), fonts))
