"""EPUB 3 that passes EPUBCheck: cover, title page, nav.xhtml and NCX, one XHTML per chapter.

Every string from the manuscript goes through :func:`html.escape` after :func:`clean`, so model
output such as ``<script>`` or ``]]>`` stays text; the prose's ``*italics*`` and ``**bold**``
become ``<em>`` and ``<strong>``, and a scene break is an ``<hr>`` (a thematic break, which
screen readers announce) drawn as a short centred rule.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from ebooklib import epub
from PIL import Image, ImageDraw, ImageFont

from .._errors import ExportError
from ._inline import runs
from ._manuscript import Manuscript, ManuscriptChapter
from .text import chapter_title, check_options, clean, one_line

__all__ = ["COVER_SIZE", "cover_image", "write"]

COVER_SIZE = (1600, 2560)
_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}$")
_COVER_TYPES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}

_CSS = """\
body { margin: 0 5%; font-family: serif; line-height: 1.4; }
h1 { text-align: center; font-weight: normal; margin: 3em 0 2em; page-break-before: always; }
p { margin: 0; text-indent: 1.5em; text-align: justify; }
p.first, hr.scene-break + p { text-indent: 0; }
hr.scene-break { border: none; border-top: 1px solid; width: 25%; margin: 1.5em auto; }
.title-page { text-align: center; margin-top: 30%; }
.title-page p { text-indent: 0; text-align: center; }
.title-page .title { font-size: 2em; margin-bottom: 0.5em; }
.title-page .subtitle { font-size: 1.3em; font-style: italic; }
.title-page .author { font-size: 1.2em; margin-top: 2em; }
"""


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = _FONT_DIR / "DejaVuSerif-Bold.ttf"
    if path.exists():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def cover_image(title: str, author: str) -> bytes:
    """A 1600x2560 PNG with the title and author on a solid background."""
    image = Image.new("RGB", COVER_SIZE, (28, 43, 64))
    draw = ImageDraw.Draw(image)
    width = COVER_SIZE[0] - 240
    y = 620
    for text, size, colour in ((title, 140, (245, 236, 215)), (author, 90, (210, 190, 150))):
        font = _font(size)
        for line in _wrap(draw, one_line(text), font, width)[:6]:
            draw.text((COVER_SIZE[0] // 2, y), line, font=font, fill=colour, anchor="ma")
            y += int(size * 1.25)
        y = max(y + 200, 1700)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def _text(value: str) -> str:
    return escape(one_line(value))


def _page(title: str, file_name: str, lang: str, body: str) -> epub.EpubHtml:
    page = epub.EpubHtml(title=title, file_name=file_name, lang=lang)
    page.content = f"<html><body>{body}</body></html>"
    page.add_link(href="style/book.css", rel="stylesheet", type="text/css")
    return page


def _prose(paragraph: str) -> str:
    parts = []
    for run in runs(paragraph):
        text = escape(run.text)
        if run.bold:
            text = f"<strong>{text}</strong>"
        parts.append(f"<em>{text}</em>" if run.italic else text)
    return "".join(parts)


def _chapter_body(chapter: ManuscriptChapter) -> str:
    parts = [f"<h1>{escape(chapter_title(chapter))}</h1>"]
    scenes = [[t for t in (_prose(p) for p in scene) if t] for scene in chapter.scenes]
    for index, scene in enumerate(s for s in scenes if s):
        if index:
            parts.append('<hr class="scene-break"/>')
        parts.append(f'<p class="first">{scene[0]}</p>')
        parts.extend(f"<p>{p}</p>" for p in scene[1:])
    return "\n".join(parts)


def _cover(option: Any, manuscript: Manuscript) -> tuple[str, bytes]:
    if option is None:
        return "images/cover.png", cover_image(manuscript.title, manuscript.author)
    path = Path(option)
    kind = _COVER_TYPES.get(path.suffix.lower())
    if kind is None:
        raise ExportError(
            f"epub option cover must be a .png, .jpg or .jpeg file, not {path.name!r}"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read the cover image {path}: {exc.strerror}") from None
    return f"images/cover{path.suffix.lower()}", data


def write(manuscript: Manuscript, path: Path, **options: Any) -> None:
    """Write an EPUB 3 (with NCX for older readers).

    Option ``cover``: a .png or .jpg path; by default a cover with the title and author is drawn.
    """
    check_options("epub", options, {"cover"})
    lang = clean(manuscript.language).strip() or "en"
    title = one_line(manuscript.title) or "Untitled"
    author = one_line(manuscript.author)
    book = epub.EpubBook()
    book.set_identifier(manuscript.identifier)
    book.set_title(title)
    book.set_language(lang)
    if author:
        book.add_author(author)
    if manuscript.blurb.strip():
        book.add_metadata("DC", "description", one_line(manuscript.blurb))
    modified = datetime.now(UTC)
    if _ISO_DATE.match(manuscript.date):
        book.add_metadata("DC", "date", manuscript.date)
        modified = datetime.fromisoformat(manuscript.date)
    if manuscript.source_hash:
        book.add_metadata(
            None, "meta", "", {"name": "novelkit:source-sha256", "content": manuscript.source_hash}
        )

    cover_name, cover_data = _cover(options.get("cover"), manuscript)
    book.set_cover(cover_name, cover_data)
    book.add_item(
        epub.EpubItem(uid="style", file_name="style/book.css", media_type="text/css", content=_CSS)
    )

    head = [f'<p class="title">{escape(title)}</p>']
    if manuscript.subtitle.strip():
        head.append(f'<p class="subtitle">{_text(manuscript.subtitle)}</p>')
    if author:
        head.append(f'<p class="author">{escape(author)}</p>')
    title_page = _page(title, "title.xhtml", lang, f'<div class="title-page">{"".join(head)}</div>')
    book.add_item(title_page)

    chapters: list[Any] = []
    for chapter in manuscript.chapters:
        page = _page(
            chapter_title(chapter),
            f"chapter-{len(chapters) + 1:03d}.xhtml",
            lang,
            _chapter_body(chapter),
        )
        book.add_item(page)
        chapters.append(page)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["cover", title_page, "nav", *chapters]
    epub.write_epub(str(path), book, {"mtime": modified})
