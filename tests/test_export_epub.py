from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from _manuscripts import HOSTILE_PLAIN, epubcheck, hostile_manuscript, normal_manuscript
from lxml import etree
from PIL import Image

from novelkit._errors import ExportError
from novelkit.export import Manuscript, export_manuscript
from novelkit.export._inline import plain
from novelkit.export.text import chapter_title

NS = {
    "opf": "http://www.idpf.org/2007/opf",
    "dc": "http://purl.org/dc/elements/1.1/",
    "x": "http://www.w3.org/1999/xhtml",
    "ncx": "http://www.daisy.org/z3986/2005/ncx/",
    "epub": "http://www.idpf.org/2007/ops",
}


def _export(manuscript: Manuscript, tmp_path: Path, **options: Any) -> Path:
    return export_manuscript(manuscript, "epub", tmp_path / "book.epub", **options)


def _xml(book: zipfile.ZipFile, name: str) -> Any:
    return etree.fromstring(book.read(name))  # strict XML: fails on anything ill-formed


@pytest.mark.slow
@pytest.mark.parametrize(
    "build", [normal_manuscript, hostile_manuscript], ids=["normal", "hostile"]
)
def test_epubcheck_reports_no_errors(build: Any, tmp_path: Path) -> None:
    result = epubcheck(_export(build(), tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"Messages: 0 fatals / 0 errors / 0 warnings", output), output


def test_package_metadata_nav_ncx_and_chapters(tmp_path: Path) -> None:
    manuscript = normal_manuscript()
    with zipfile.ZipFile(_export(manuscript, tmp_path)) as book:
        first = book.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert book.read("mimetype") == b"application/epub+zip"
        opf = _xml(book, "EPUB/content.opf")
        meta = opf.find("opf:metadata", NS)
        assert meta.findtext("dc:identifier", namespaces=NS) == manuscript.identifier
        assert meta.findtext("dc:title", namespaces=NS) == "The Lighthouse Keeper"
        assert meta.findtext("dc:creator", namespaces=NS) == "Ada Quill Marlowe"
        assert meta.findtext("dc:language", namespaces=NS) == "en"
        assert meta.findtext("dc:date", namespaces=NS) == "2024-05-17"
        assert (
            meta.findtext("opf:meta[@property='dcterms:modified']", namespaces=NS)
            == "2024-05-17T00:00:00Z"
        )

        nav = _xml(book, "EPUB/nav.xhtml")
        toc = nav.find(".//x:nav[@epub:type='toc']", NS)
        titles = [c.title for c in manuscript.chapters]
        assert [a.text for a in toc.iterfind(".//x:a", NS)] == titles
        ncx = _xml(book, "EPUB/toc.ncx")
        assert [t.text for t in ncx.iterfind(".//ncx:navPoint/ncx:navLabel/ncx:text", NS)] == titles

        chapters = sorted(
            n for n in book.namelist() if re.fullmatch(r"EPUB/chapter-\d{3}\.xhtml", n)
        )
        assert len(chapters) == len(manuscript.chapters)
        for name, chapter in zip(chapters, manuscript.chapters, strict=True):
            page = _xml(book, name)
            assert page.findtext(".//x:h1", namespaces=NS) == chapter.title
            assert [p.text for p in page.iterfind(".//x:p", NS)] == chapter.paragraphs
            assert len(page.findall(".//x:hr[@class='scene-break']", NS)) == len(chapter.scenes) - 1
        assert "The Lighthouse Keeper" in "".join(_xml(book, "EPUB/title.xhtml").itertext())

        cover = opf.find("opf:manifest/opf:item[@properties='cover-image']", NS)
        image = Image.open(io.BytesIO(book.read(f"EPUB/{cover.get('href')}")))
        assert (image.format, image.size) == ("PNG", (1600, 2560))


def test_hostile_text_comes_out_as_text(tmp_path: Path) -> None:
    manuscript = hostile_manuscript()
    with zipfile.ZipFile(_export(manuscript, tmp_path)) as book:
        for name in book.namelist():
            if name.endswith((".xhtml", ".opf", ".ncx")):
                tree = _xml(book, name)
                assert tree.find(".//x:script", NS) is None and tree.find(".//x:b", NS) is None
        assert _xml(book, "EPUB/content.opf").findtext(".//dc:title", namespaces=NS) == (
            'A <Title> & "Quotes" ]]> *bold*'
        )
        for index, chapter in enumerate(manuscript.chapters, start=1):
            page = _xml(book, f"EPUB/chapter-{index:03d}.xhtml")
            assert page.findtext(".//x:h1", namespaces=NS) == chapter_title(chapter)
            texts = ["".join(p.itertext()) for p in page.iterfind(".//x:p", NS)]
            assert texts == [plain(p) for p in chapter.paragraphs if plain(p)]
        first = _xml(book, "EPUB/chapter-001.xhtml").findall(".//x:p", NS)[1]
        assert "".join(first.itertext()) == HOSTILE_PLAIN
        assert [e.text for e in first.iterfind("x:em", NS)] == ["not emphasis", "nor this"]
        assert [e.text for e in first.iterfind("x:strong", NS)] == ["nor"]


def test_cover_option(tmp_path: Path) -> None:
    cover = tmp_path / "mine.png"
    Image.new("RGB", (400, 600), (200, 0, 0)).save(cover)
    with zipfile.ZipFile(_export(normal_manuscript(), tmp_path, cover=cover)) as book:
        assert book.read("EPUB/images/cover.png") == cover.read_bytes()
    with pytest.raises(ExportError, match="cover must be a .png, .jpg or .jpeg"):
        _export(normal_manuscript(), tmp_path, cover=tmp_path / "cover.gif")
    with pytest.raises(ExportError, match="cannot read the cover image"):
        _export(normal_manuscript(), tmp_path, cover=tmp_path / "missing.jpg")
    with pytest.raises(ExportError, match="'covr'; valid options: cover"):
        _export(normal_manuscript(), tmp_path, covr=cover)
