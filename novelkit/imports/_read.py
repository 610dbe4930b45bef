"""Read a .md, .txt, .docx or .epub file into a flat list of blocks (stdlib only).

A block is a paragraph, a heading (with its level), or a scene break, and knows whether a
page break (or, in plain text, a run of blank lines) comes before it. Chapter detection works
on these blocks alone, so every format is split by the same rules (see ``_chapters.py``).
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import IO
from xml.etree import ElementTree as ET

from .._errors import ManuscriptError

__all__ = ["Block", "Source", "read_source"]

SCENE = "scene"
TEXT = "text"
HEADING = "heading"

_SCENE_MARKS = frozenset({"* * *", "***", "*", "#", "---", "* * * *", "⁂", "~", "§"})
_NUMBER_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty"
)
DEFAULT_PATTERN = (
    rf"^(chapter|ch\.)\s+([0-9]+|[ivxlcdm]+|({_NUMBER_WORDS})([- ]({_NUMBER_WORDS}))?)\b.*$"
    r"|^(prologue|epilogue|interlude)\b.*$"
)
_CHAPTER_LINE = re.compile(DEFAULT_PATTERN, re.IGNORECASE)
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()<>#+\-.!|~^$@&:=%])")


@dataclass(frozen=True)
class Block:
    kind: str  # TEXT, HEADING or SCENE
    text: str = ""
    level: int = 0  # a heading's level, 1 = highest
    page_break: bool = False  # a page break (or, in text, a run of blank lines) comes before it
    title: bool = False  # styled as the book's title (docx "Title", EPUB title page)


@dataclass
class Source:
    """What a file holds before chapters are found: blocks, and the metadata it names."""

    name: str
    fmt: str
    blocks: list[Block]
    title: str = ""
    author: str = ""
    language: str = ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _scene_or_text(text: str, page_break: bool = False) -> Block:
    if text.strip() in _SCENE_MARKS:
        return Block(SCENE, page_break=page_break)
    return Block(TEXT, text, page_break=page_break)


def read_source(
    source: str | Path | IO[bytes] | bytes, name: str | None = None, fmt: str | None = None
) -> Source:
    """Blocks and metadata of a manuscript file; ``fmt`` overrides the file's extension."""
    if isinstance(source, str | Path):
        path = Path(source)
        name = name or path.name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ManuscriptError(f"{path} does not exist; check the path") from None
        except IsADirectoryError:
            raise ManuscriptError(
                f"{path} is a folder; give a .docx, .md, .txt or .epub file"
            ) from None
        except OSError as exc:
            raise ManuscriptError(f"cannot read {path}: {exc.strerror or exc}") from None
    elif isinstance(source, bytes):
        data = source
    else:
        data = source.read()
        name = name or str(getattr(source, "name", "") or "")
    name = name or "manuscript"
    kind = (fmt or Path(name).suffix.lstrip(".")).lower()
    if kind == "markdown":
        kind = "md"
    readers = {"md": _markdown, "txt": _text, "text": _text, "docx": _docx, "epub": _epub}
    reader = readers.get(kind)
    if reader is None:
        raise ManuscriptError(
            f"{name}: cannot import {kind or 'a file without an extension'!r}; give a .docx, "
            ".md, .txt or .epub file (or pass fmt='txt' for plain text under another name)"
        )
    if not data.strip():
        raise ManuscriptError(f"{name} is empty; there is nothing to import")
    result = reader(data, name)
    if not any(b.kind == TEXT and b.text.strip() for b in result.blocks):
        raise ManuscriptError(f"{name} holds no text (only headings or markup); nothing to import")
    return result


def _decode(data: bytes, name: str) -> str:
    """UTF-8 (with or without a BOM), UTF-16 with a BOM, or else Windows-1252 (old Word .txt)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", errors="replace")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ManuscriptError(f"{name} is not UTF-8 text; save it as UTF-8 and import again")


# -- plain text and Markdown -------------------------------------------------------------------


def _paragraphs(text: str) -> list[tuple[str, int]]:
    """Paragraphs with the number of blank lines (a form feed counts as many) before each."""
    out: list[tuple[str, int]] = []
    blank = 0
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if "\f" in raw:
            if lines:
                out.append(("\n".join(lines), blank))
                lines, blank = [], 0
            blank += 99
            raw = raw.replace("\f", "")
        if not raw.strip():
            if lines:
                out.append(("\n".join(lines), blank))
                lines, blank = [], 0
            blank += 1
            continue
        lines.append(raw)
    if lines:
        out.append(("\n".join(lines), blank))
    return out


def _text(data: bytes, name: str) -> Source:
    blocks = []
    for para, blank in _paragraphs(_decode(data, name)):
        first, _, rest = para.partition("\n")
        if rest.strip() and len(first) <= 80 and _CHAPTER_LINE.match(first.strip()):
            # "CHAPTER ONE" with the text on the next line: a title line of its own
            blocks.append(Block(TEXT, first.strip(), page_break=blank >= 2))
            blocks.append(_scene_or_text(_one_line(rest)))
            continue
        blocks.append(_scene_or_text(_one_line(para), page_break=blank >= 2))
    title = author = ""
    # novelkit's own txt export (and many manuscripts) open with the title and "by AUTHOR"
    if len(blocks) >= 2 and blocks[1].kind == TEXT and blocks[1].text.lower().startswith("by "):
        title, author = blocks[0].text, blocks[1].text[3:].strip()
        blocks[0] = Block(TEXT, title, title=True)
    return Source(name, "txt", blocks, title=title, author=author)


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")


def _unescape(text: str) -> str:
    return _ESCAPED.sub(r"\1", text)


def _markdown(data: bytes, name: str) -> Source:
    text = _decode(data, name)
    meta: dict[str, str] = {}
    if text.startswith("---\n") or text.startswith("---\r\n"):
        end = re.search(r"^(---|\.\.\.)\s*$", text[4:], re.MULTILINE)
        if end:
            for line in text[4 : 4 + end.start()].splitlines():
                key, sep, value = line.partition(":")
                if sep:
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                        value = value[1:-1].replace('\\"', '"')
                    meta[key.strip().lower()] = _unescape(value)
            text = text[4 + end.end() :]
    blocks: list[Block] = []
    for para, blank in _paragraphs(text):
        lines = para.split("\n")
        first = _HEADING.match(lines[0])
        if first:
            blocks.append(
                Block(HEADING, _unescape(first.group(2)), len(first.group(1)), blank >= 2)
            )
            rest = "\n".join(lines[1:])
            if rest.strip():
                blocks.append(_scene_or_text(_unescape(_one_line(rest))))
            continue
        if len(lines) == 2 and _SETEXT.match(lines[1]) and lines[0].strip():
            level = 1 if lines[1].startswith("=") else 2
            blocks.append(Block(HEADING, _unescape(lines[0].strip()), level, blank >= 2))
            continue
        stripped = para.strip()
        if stripped in _SCENE_MARKS or re.fullmatch(r"(\*\s*){3,}|(-\s*){3,}|(_\s*){3,}", stripped):
            blocks.append(Block(SCENE))
            continue
        if stripped.startswith("<!--") and stripped.endswith("-->"):
            continue
        blocks.append(Block(TEXT, _unescape(_one_line(para)), page_break=blank >= 2))
    return Source(
        name,
        "md",
        blocks,
        title=meta.get("title", ""),
        author=meta.get("author", ""),
        language=meta.get("lang", meta.get("language", "")),
    )


# -- docx ------------------------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _zip(data: bytes, name: str, what: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ManuscriptError(
            f"{name} is not {what} file (it is not a zip archive); if it is another format, "
            "save it as .docx, .epub, .md or .txt"
        ) from None


@dataclass
class _Style:
    name: str = ""
    based_on: str = ""
    outline: int | None = None
    page_break: bool = False


def _styles(archive: zipfile.ZipFile) -> dict[str, _Style]:
    try:
        root = ET.fromstring(archive.read("word/styles.xml"))
    except KeyError:
        return {}
    out: dict[str, _Style] = {}
    for node in root.iter(f"{_W}style"):
        style = _Style()
        sid = node.get(f"{_W}styleId", "")
        name = node.find(f"{_W}name")
        style.name = name.get(f"{_W}val", "") if name is not None else sid
        based = node.find(f"{_W}basedOn")
        style.based_on = based.get(f"{_W}val", "") if based is not None else ""
        ppr = node.find(f"{_W}pPr")
        if ppr is not None:
            level = ppr.find(f"{_W}outlineLvl")
            if level is not None:
                style.outline = int(level.get(f"{_W}val", "9"))
            style.page_break = _on(ppr.find(f"{_W}pageBreakBefore"))
        out[sid] = style
    return out


def _on(node: ET.Element | None) -> bool:
    return node is not None and node.get(f"{_W}val", "true") not in ("0", "false", "off")


def _heading_level(style_id: str, styles: dict[str, _Style], outline: int | None) -> int:
    if outline is not None and outline < 9:
        return outline + 1
    seen = 0
    while style_id and seen < 10:
        style = styles.get(style_id)
        if style is None:
            break
        lower = style.name.lower()
        match = re.fullmatch(r"heading\s*(\d)", lower)
        if match:
            return int(match.group(1))
        if "chapter" in lower and ("heading" in lower or "title" in lower):
            return 1
        if style.outline is not None and style.outline < 9:
            return style.outline + 1
        style_id, seen = style.based_on, seen + 1
    return 0


def _style_page_break(style_id: str, styles: dict[str, _Style]) -> bool:
    seen = 0
    while style_id and seen < 10:
        style = styles.get(style_id)
        if style is None:
            return False
        if style.page_break:
            return True
        style_id, seen = style.based_on, seen + 1
    return False


def _docx(data: bytes, name: str) -> Source:
    archive = _zip(data, name, "a .docx")
    try:
        document = archive.open("word/document.xml")
    except KeyError:
        raise ManuscriptError(
            f"{name} has no word/document.xml; it is not a Word .docx file"
        ) from None
    styles = _styles(archive)
    blocks: list[Block] = []
    pending_break = False
    title = author = ""
    try:
        for _, node in ET.iterparse(document, events=("end",)):
            if node.tag != f"{_W}p":
                continue
            ppr = node.find(f"{_W}pPr")
            style_id, outline, brk = "", None, pending_break
            pending_break = False
            if ppr is not None:
                ref = ppr.find(f"{_W}pStyle")
                style_id = ref.get(f"{_W}val", "") if ref is not None else ""
                level = ppr.find(f"{_W}outlineLvl")
                outline = int(level.get(f"{_W}val", "9")) if level is not None else None
                brk = brk or _on(ppr.find(f"{_W}pageBreakBefore"))
                if ppr.find(f"{_W}sectPr") is not None:
                    pending_break = True  # a section break ends this paragraph's page
            brk = brk or _style_page_break(style_id, styles)
            parts: list[str] = []
            for item in node.iter():
                tag = item.tag
                if tag == f"{_W}t":
                    parts.append(item.text or "")
                elif tag == f"{_W}tab":
                    parts.append("\t")
                elif tag == f"{_W}br":
                    if item.get(f"{_W}type") == "page":
                        if "".join(parts).strip():
                            pending_break = True
                        else:
                            brk = True
                    else:
                        parts.append(" ")
            text = _one_line("".join(parts))
            node.clear()
            if not text:
                continue
            level = _heading_level(style_id, styles, outline)
            style_name = styles.get(style_id, _Style()).name.lower()
            if style_name in ("title", "manuscript title", "front title"):
                blocks.append(Block(TEXT, text, page_break=brk, title=True))
                title = title or text
            elif style_name in ("byline", "front author") and text.lower().startswith("by "):
                author = author or text[3:].strip()
                blocks.append(Block(TEXT, text, page_break=brk))
            elif style_name in ("end mark",):
                continue
            elif level:
                blocks.append(Block(HEADING, text, level, brk))
            else:
                blocks.append(_scene_or_text(text, brk))
    except ET.ParseError as exc:
        raise ManuscriptError(
            f"{name}: word/document.xml is damaged ({exc}); open and re-save it in Word"
        ) from None
    try:
        core = ET.fromstring(archive.read("docProps/core.xml"))
        dc = "{http://purl.org/dc/elements/1.1/}"
        found = core.find(f"{dc}title")
        if found is not None and found.text and not title:
            title = found.text.strip()
        found = core.find(f"{dc}creator")
        if found is not None and found.text and not author:
            author = found.text.strip()
    except (KeyError, ET.ParseError):
        pass
    return Source(name, "docx", blocks, title=title, author=author)


# -- EPUB ------------------------------------------------------------------------------------

_OPF = "{http://www.idpf.org/2007/opf}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_ENC = "{http://www.w3.org/2001/04/xmlenc#}"
# font obfuscation is not DRM: the text stays readable
_FONT_OBFUSCATION = (
    "http://www.idpf.org/2008/embedding",
    "http://ns.adobe.com/pdf/enc#RC",
)


def _epub(data: bytes, name: str) -> Source:
    archive = _zip(data, name, "an EPUB")
    names = set(archive.namelist())
    if "META-INF/container.xml" not in names:
        raise ManuscriptError(
            f"{name} is not an EPUB (no META-INF/container.xml); export it again as EPUB, or "
            "import the .docx or .md instead"
        )
    _check_drm(archive, names, name)
    try:
        container = ET.fromstring(archive.read("META-INF/container.xml"))
        rootfile = container.find(f".//{_CONTAINER}rootfile")
        opf_path = rootfile.get("full-path", "") if rootfile is not None else ""
        opf = ET.fromstring(archive.read(opf_path))
    except (KeyError, ET.ParseError):
        raise ManuscriptError(
            f"{name}: its package document is missing or damaged; it is not a readable EPUB"
        ) from None
    base = posixpath.dirname(opf_path)
    manifest: dict[str, tuple[str, str, str]] = {}
    for item in opf.iter(f"{_OPF}item"):
        href = posixpath.normpath(posixpath.join(base, item.get("href", "")))
        manifest[item.get("id", "")] = (
            href,
            item.get("media-type", ""),
            item.get("properties", ""),
        )
    title_node = opf.find(f".//{_DC}title")
    author_node = opf.find(f".//{_DC}creator")
    lang_node = opf.find(f".//{_DC}language")
    blocks: list[Block] = []
    for ref in opf.iter(f"{_OPF}itemref"):
        entry = manifest.get(ref.get("idref", ""))
        if entry is None or "nav" in entry[2].split() or "html" not in entry[1]:
            continue
        if ref.get("linear", "yes") == "no":
            continue
        try:
            html = archive.read(entry[0]).decode("utf-8", errors="replace")
        except KeyError:
            continue
        parser = _HTMLBlocks()
        parser.feed(html)
        parser.close()
        page = parser.blocks
        if page:
            first = page[0]
            page[0] = Block(first.kind, first.text, first.level, True, first.title)
        blocks += page
    return Source(
        name,
        "epub",
        blocks,
        title=(title_node.text or "").strip() if title_node is not None else "",
        author=(author_node.text or "").strip() if author_node is not None else "",
        language=(lang_node.text or "").strip() if lang_node is not None else "",
    )


def _check_drm(archive: zipfile.ZipFile, names: set[str], name: str) -> None:
    protected = "META-INF/rights.xml" in names
    if "META-INF/encryption.xml" in names and not protected:
        try:
            root = ET.fromstring(archive.read("META-INF/encryption.xml"))
        except ET.ParseError:
            root = None
        if root is not None:
            for method in root.iter(f"{_ENC}EncryptionMethod"):
                if method.get("Algorithm", "") not in _FONT_OBFUSCATION:
                    protected = True
    if protected:
        raise ManuscriptError(
            f"{name} is protected by DRM (its text is encrypted); novelkit cannot read it. "
            "Import a DRM-free copy: your own .docx or .md, or the EPUB your publisher "
            "or writing tool exports without protection"
        )


class _HTMLBlocks(HTMLParser):
    """Headings, paragraphs and scene breaks of one XHTML page, in order."""

    _BLOCKS = frozenset(
        {"p", "div", "li", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "br"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._parts: list[str] = []
        self._tag = ""
        self._classes = ""
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title", "nav"):
            self._skip += 1
            return
        if tag in self._BLOCKS:
            if tag == "br":
                self._parts.append(" ")
                return
            self._flush()
            if tag == "hr":
                self.blocks.append(Block(SCENE))
                return
            self._tag = tag
            self._classes = dict(attrs).get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title", "nav"):
            self._skip = max(0, self._skip - 1)
            return
        if tag in self._BLOCKS and tag not in ("br", "hr"):
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._parts.append(data)

    def _flush(self) -> None:
        text = _one_line("".join(self._parts))
        self._parts = []
        tag, classes = self._tag, self._classes.split()
        self._tag, self._classes = "", ""
        if not text:
            return
        if "scene-break" in classes:
            self.blocks.append(Block(SCENE))
        elif len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self.blocks.append(Block(HEADING, text, int(tag[1])))
        elif "title" in classes:
            self.blocks.append(Block(TEXT, text, title=True))
        else:
            self.blocks.append(_scene_or_text(text))

    def close(self) -> None:
        super().close()
        self._flush()
