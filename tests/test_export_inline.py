"""Model Markdown in every export: emphasis drawn as emphasis, scene breaks as scene breaks."""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import docx
import pytest
from _manuscripts import EMPHASIS_MARKDOWN, HOSTILE_PLAIN, HOSTILE_TEXT, epubcheck, require_tool
from docx.oxml.ns import qn
from lxml import etree

from novelkit.export import Manuscript, export_manuscript
from novelkit.export._inline import Run, plain, runs, scene_break
from novelkit.export.text import chapter_title

XHTML = {"x": "http://www.w3.org/1999/xhtml"}
ITALIC = ["twice", "nobody", "always", "begins", "italics", "end"]
BOLD = ["louder", "always", "bold", "strong"]
# The chapter-one paragraph with a run in bold italics, as a reader sees it.
QUOTE = "“It’s always the tide—always,” said the keeper. Five * three is snake_case_name."


def _book() -> Manuscript:
    return Manuscript.from_markdown(EMPHASIS_MARKDOWN, title="Weather", author="A. Keeper")


def _run(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain words", (Run("plain words"),)),
        ("a *b* **c**", (Run("a "), Run("b", italic=True), Run(" "), Run("c", bold=True))),
        ("_it_ __bo__", (Run("it", italic=True), Run(" "), Run("bo", bold=True))),
        ("***x***", (Run("x", italic=True, bold=True),)),
        ("*a **b** c*", (Run("a ", True), Run("b", True, True), Run(" c", True))),
        ("5 * 3 and snake_case_name", (Run("5 * 3 and snake_case_name"),)),
        ("an *unclosed star", (Run("an *unclosed star"),)),
        (r"\*literal\*", (Run("*literal*"),)),
        ("<em>x</em> &amp; [l](u) `c`", (Run("<em>x</em> &amp; [l](u) `c`"),)),
        ("  two\nlines  ", (Run("two lines"),)),
        ("", ()),
    ],
)
def test_runs(text: str, expected: tuple[Run, ...]) -> None:
    assert runs(text) == expected


def test_plain_of_the_hostile_line() -> None:
    assert plain(HOSTILE_TEXT[1]) == HOSTILE_PLAIN


@pytest.mark.parametrize("line", ["***", "* * *", "---", "___", "- - -", "#", "⁂", " *  *  * "])
def test_scene_break_lines(line: str) -> None:
    assert scene_break(line)


@pytest.mark.parametrize("line", ["**", "# Title", "*a*", "—", "--", "***x***", "1."])
def test_not_scene_break_lines(line: str) -> None:
    assert not scene_break(line)


def test_manuscript_reads_every_scene_break_and_strips_title_markers() -> None:
    book = _book()
    assert [len(c.scenes) for c in book.chapters] == [5, 2]
    assert [chapter_title(c) for c in book.chapters] == ["The Storm Comes", "Chapter Two"]
    assert book.chapters[0].scenes[0][1].startswith("“It’s ***always***")


@pytest.mark.parametrize(("profile", "mark"), [("manuscript", "#"), ("kdp", "* * *")])
def test_docx_runs_are_italic_and_bold(profile: str, mark: str, tmp_path: Path) -> None:
    path = export_manuscript(_book(), "docx", tmp_path / "b.docx", profile=profile)
    doc = docx.Document(str(path))

    def style(paragraph: Any) -> str:
        return str(paragraph.style.name) if paragraph.style is not None else ""

    body = [p for p in doc.paragraphs if style(p) in ("Manuscript Body", "Book Body")]
    body += [p for p in doc.paragraphs if style(p) == "Book First Paragraph"]
    runs_ = [r for p in body for r in p.runs]
    assert sorted(r.text for r in runs_ if r.italic) == sorted(ITALIC)
    assert sorted(r.text for r in runs_ if r.bold) == sorted(BOLD)
    assert all(r.italic and r.bold for r in runs_ if r.text == "always")
    assert QUOTE in [p.text for p in body]
    breaks = [p.text for p in doc.paragraphs if style(p) == "Scene Break"]
    assert breaks == [mark] * 5
    headings = [p.text for p in doc.paragraphs if style(p) in ("Chapter Heading", "Heading 1")]
    assert headings == ["The Storm Comes", "Chapter Two"]
    texts = [p.text for p in body if p.text != QUOTE]
    assert not any("*" in t or "_" in t for t in texts)
    assert "The <b>second</b> chapter & its end." in [p.text for p in body]
    # emphasis is the runs' own formatting, and nothing else in the body is
    assert len(list(doc.element.body.iter(qn("w:i")))) == len(ITALIC)


@pytest.mark.slow
def test_epub_has_em_strong_and_hr_and_passes_epubcheck(tmp_path: Path) -> None:
    path = export_manuscript(_book(), "epub", tmp_path / "b.epub")
    with zipfile.ZipFile(path) as book:
        pages = [etree.fromstring(book.read(f"EPUB/chapter-00{n}.xhtml")) for n in (1, 2)]
    em = [e for page in pages for e in page.iterfind(".//x:em", XHTML)]
    strong = [e for page in pages for e in page.iterfind(".//x:strong", XHTML)]
    assert sorted("".join(e.itertext()) for e in em) == sorted(ITALIC)
    assert sorted("".join(e.itertext()) for e in strong) == sorted(BOLD)
    assert [len(p.findall(".//x:hr[@class='scene-break']", XHTML)) for p in pages] == [4, 1]
    assert pages[1].find(".//x:b", XHTML) is None  # the model's <b> stays text
    text = " ".join("".join(p.itertext()) for p in pages)
    assert "*" not in text.replace("Five * three", "") and "The <b>second</b>" in text
    result = epubcheck(path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"Messages: 0 fatals / 0 errors / 0 warnings", output), output


@pytest.mark.slow
def test_pdf_shows_no_asterisks_and_uses_the_italic_and_bold_faces(tmp_path: Path) -> None:
    path = export_manuscript(_book(), "pdf", tmp_path / "b.pdf")
    text = _run(require_tool("pdftotext"), str(path), "-")
    words = re.sub(r"\s+", " ", text)
    assert "*" not in words.replace("Five * three", "")
    assert "She said it twice, the second time louder, and nobody answered." in words
    assert "The <b>second</b> chapter & its end." in words
    assert len(re.findall(r"^\s*\u2042\s*$", text, re.MULTILINE)) == 5
    fonts = _run(require_tool("pdffonts"), str(path))
    for face in ("DejaVuSerif-Italic", "DejaVuSerif-Bold ", "DejaVuSerif-BoldItalic"):
        assert face.strip() in fonts, fonts


@pytest.mark.slow
def test_markdown_export_keeps_emphasis_for_pandoc(tmp_path: Path) -> None:
    path = export_manuscript(_book(), "md", tmp_path / "b.md")
    html = subprocess.run(
        [require_tool("pandoc"), "-f", "markdown", "-t", "html"],
        input=path.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert sorted(re.findall(r"<em>(?:<strong>)?(\w+)", html)) == sorted(ITALIC)
    assert html.count("<hr />") == 5
    assert "&lt;b&gt;second&lt;/b&gt;" in html  # still text, not a tag
    ast = json.loads(
        subprocess.run(
            [require_tool("pandoc"), "-f", "markdown", "-t", "json"],
            input=path.read_text(encoding="utf-8"),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )
    kinds = {b["t"] for b in ast["blocks"]}
    assert kinds == {"Header", "Para", "HorizontalRule"}


def test_txt_drops_the_markers_and_keeps_the_words(tmp_path: Path) -> None:
    text = export_manuscript(_book(), "txt", tmp_path / "b.txt").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert "She said it twice, the second time louder, and nobody answered." in lines
    assert QUOTE in lines and "The Storm Comes" in lines
    assert lines.count("* * *") == 5
    prose = [line for line in lines if line not in ("* * *", QUOTE)]
    assert not any("*" in line for line in prose)
