"""Importing a manuscript: formats, chapters, front matter, the extracted bible, resume, bad input."""

from __future__ import annotations

import io
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_llm_servers import FakeOpenAIServer

import novelkit as nk
from novelkit import JobState
from novelkit.cli import main
from novelkit.imports import read_manuscript
from novelkit.llm.base import Chunk, Request
from novelkit.llm.offline import OfflineBackend

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
FORMATS = ("md", "txt", "docx", "epub")

CAST = ("Mara Quill", "Tomas Reyes", "Ilse Varga")
PLACES = ("Harbor Street", "Lantern Point")
DEDICATION = "For my sister, who kept the light on."


def normal(text: str) -> str:
    return " ".join(text.split())


def chapters_of(manuscript: Any) -> list[tuple[str, str]]:
    """(title, text) of each chapter, scenes marked, whitespace aside."""
    return [
        (c.title, normal(" * * * ".join(" ".join(scene) for scene in c.scenes)))
        for c in manuscript.chapters
    ]


def imported_chapters(book: Any) -> list[tuple[str, str]]:
    return [(c.title, normal(c.text)) for c in book.chapters]


def artefact_files(root: Path) -> dict[str, bytes]:
    base = root / "artefacts"
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }


class CountingBackend:
    """The offline backend, recording the key of every request actually sent."""

    name = "counting"

    def __init__(self) -> None:
        self.inner = OfflineBackend()
        self.sent: list[str] = []
        self.requests: list[Request] = []

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        self.sent.append(request.key)
        self.requests.append(request)
        async for chunk in self.inner.stream(request):
            yield chunk

    async def aclose(self) -> None:
        return None


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[nk.Project]:
    root = tmp_path_factory.mktemp("generated") / "novel"
    project = nk.new_project(root, premise=PREMISE, chapters=3, words_per_chapter=400, seed=3)
    assert project.start().wait(60) is JobState.SUCCEEDED
    for fmt in FORMATS:
        project.export(fmt)
    yield project
    project.close()


def chapter_paragraphs(n: int) -> list[str]:
    hero, friend, other = CAST[(n - 1) % 3], CAST[n % 3], CAST[(n + 1) % 3]
    place = PLACES[n % 2]
    return [
        f"The fog came in early over {place}, and {hero} walked out to meet it with the letter "
        f"folded twice in a coat pocket. {friend} was already waiting by the rail.",
        f"“You kept it,” said {friend}. {hero} did not answer at once; the tide was turning "
        f"and the bell on the buoy rang twice before {hero} nodded.",
        "*",
        f"Later, at {PLACES[(n + 1) % 2]}, {other} counted the days again on the calendar by "
        f"the stove. {other} said the date was wrong, and {hero} said it was not.",
        f"They sat with it until the lamp burned low, and {hero} knew that chapter {n} of the "
        "winter had ended, and that something else had begun.",
    ]


def handmade_docx(path: Path, chapters: int = 5) -> Path:
    """A manuscript as a person writes it in Word: a title page, a dedication, chapters."""
    import docx
    from docx.enum.text import WD_BREAK

    doc = docx.Document()
    doc.add_paragraph("The Drowned Letter", style="Title")
    doc.add_paragraph("by Agnes Whitlock")
    doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    doc.add_paragraph(DEDICATION)
    for n in range(1, chapters + 1):
        doc.add_heading(f"Chapter {n}: The {['Fog', 'Bell', 'Tide', 'Lamp', 'Shore'][n % 5]}", 1)
        for text in chapter_paragraphs(n):
            doc.add_paragraph(text)
    doc.save(str(path))
    return path


# -- reading every format --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_export_reads_back_as_the_same_chapters(generated: nk.Project, fmt: str) -> None:
    book = read_manuscript(generated.root / "exports" / f"novel.{fmt}")
    want = chapters_of(generated.manuscript())
    assert imported_chapters(book) == want
    assert book.title == generated.manuscript().title
    assert all(title not in book.front_matter for title, _ in want)


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_import_export_round_trips(generated: nk.Project, tmp_path: Path, fmt: str) -> None:
    project = nk.import_manuscript(generated.root / "exports" / f"novel.{fmt}", tmp_path / fmt)
    try:
        assert project.start().wait(60) is JobState.SUCCEEDED
        again = project.export(fmt)
        book = read_manuscript(again)
        assert imported_chapters(book) == chapters_of(generated.manuscript())
        assert chapters_of(project.manuscript()) == chapters_of(generated.manuscript())
    finally:
        project.close()


def test_markdown_with_a_book_title_heading_and_setext_chapters(tmp_path: Path) -> None:
    source = tmp_path / "book.md"
    source.write_text(
        "# My Book\n\nA note before it all.\n\nOne\n===\n\nFirst text.\n\n***\n\nMore.\n\n"
        "Two\n===\n\nSecond text.\n",
        encoding="utf-8",
    )
    source.write_text(
        "# My Book\n\nA note before it all.\n\n## One\n\nFirst text.\n\n***\n\nMore.\n\n"
        "## Two\n\nSecond text.\n",
        encoding="utf-8",
    )
    book = read_manuscript(source)
    assert [c.title for c in book.chapters] == ["One", "Two"]
    assert book.chapters[0].text == "First text.\n\n* * *\n\nMore."
    assert "A note before it all." in book.front_matter and book.title == "My Book"


def test_plain_text_with_chapter_lines_and_a_user_pattern(tmp_path: Path) -> None:
    source = tmp_path / "book.txt"
    source.write_text("CHAPTER ONE\nThe first.\n\nCHAPTER TWO\nThe second.\n", encoding="utf-8")
    assert [c.title for c in read_manuscript(source).chapters] == ["CHAPTER ONE", "CHAPTER TWO"]
    parts = tmp_path / "parts.txt"
    parts.write_text("Opening words.\n\n§ 1\n\nA.\n\n§ 2\n\nB.\n\n§ 3\n\nC.\n", encoding="utf-8")
    book = read_manuscript(parts, chapter_pattern=r"^§ \d+$")
    assert [c.title for c in book.chapters] == ["§ 1", "§ 2", "§ 3"]
    assert book.front_matter == "Opening words." and book.method == "pattern"


# -- a manuscript written by hand ------------------------------------------------------------


def test_handmade_docx_front_matter_apart_and_five_chapters(tmp_path: Path) -> None:
    book = read_manuscript(handmade_docx(tmp_path / "draft.docx"))
    assert book.title == "The Drowned Letter"
    assert [c.title for c in book.chapters] == [
        f"Chapter {n}: The {['Fog', 'Bell', 'Tide', 'Lamp', 'Shore'][n % 5]}" for n in range(1, 6)
    ]
    assert DEDICATION in book.front_matter and "The Drowned Letter" in book.front_matter
    assert all(DEDICATION not in c.text for c in book.chapters)
    first = book.chapters[0].text.split("\n\n")
    assert first[0] == chapter_paragraphs(1)[0] and first[2] == "* * *"


def _import_and_extend(root: Path, source: Path, **config: Any) -> None:
    project = nk.import_manuscript(source, root, **config)
    try:
        assert (root / "artefacts" / "00-import" / "front-matter.md").read_text().count(
            DEDICATION
        ) == 1
        assert project.config.chapters == 5
        cast = project.artefacts["characters"].names()
        assert set(CAST) <= set(cast), cast
        places = [loc.name for loc in project.artefacts["world"].locations]
        assert set(PLACES) & set(places), places
        outline = project.artefacts["chapters"]
        assert [p.title for p in outline.chapters][0] == "Chapter 1: The Bell"
        assert project.artefacts["scenes"][1].scenes[1].cast  # the second scene of chapter 1
        assert project.start().wait(60) is JobState.SUCCEEDED
        reports = project.artefacts["continuity"]
        assert sorted(reports) == [1, 2, 3, 4, 5], "continuity checked each imported chapter"
        kept = {
            rel: data
            for rel, data in artefact_files(root).items()
            if rel.startswith(("07-draft/", "09-revision/", "10-polish/"))
        }
        imported = (root / "artefacts" / "00-import" / "ch03.md").read_bytes()
        assert kept["10-polish/ch03.md"] == kept["07-draft/ch03.md"] == imported
        job = project.extend(chapters=2)
        assert job.wait(60) is JobState.SUCCEEDED, job.status.error
        after = artefact_files(root)
        assert {rel: after[rel] for rel in kept} == kept, "the first five changed"
        assert [p.number for p in project.artefacts["chapters"].chapters] == list(range(1, 8))
        manuscript = project.manuscript()
        assert len(manuscript.chapters) == 7
        assert chapters_of(manuscript)[:5] == [
            (c.title, normal(c.text)) for c in read_manuscript(source).chapters
        ]
        assert len(read_manuscript(project.export("docx")).chapters) == 7
    finally:
        project.close()


def test_handmade_docx_imported_extracted_and_extended_offline(tmp_path: Path) -> None:
    _import_and_extend(tmp_path / "novel", handmade_docx(tmp_path / "draft.docx"))


def test_handmade_docx_imported_through_a_fake_openai_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeOpenAIServer() as fake:
        _import_and_extend(
            tmp_path / "novel",
            handmade_docx(tmp_path / "draft.docx"),
            backend="openai",
            base_url=fake.url + "/v1",
            model="fake-model",
        )
        tasks = {call.task for call in fake.calls}
        assert {"extract-chapter", "extract-characters", "extend-outline"} <= tasks


def test_imported_chapters_are_kept_until_forced(tmp_path: Path) -> None:
    backend = CountingBackend()
    project = nk.import_manuscript(
        handmade_docx(tmp_path / "draft.docx"), tmp_path / "novel", backend_instance=backend
    )
    try:
        assert {r.task for r in backend.requests if r.stage == "draft"} == {"extract-chapter"}
        backend.requests.clear()
        cast = project.artefacts["characters"]
        edited = cast.model_copy(update={"characters": cast.characters[:2]})
        project.artefacts["characters"] = edited  # an upstream edit: normally the draft is stale
        polished = (project.root / "artefacts" / "10-polish" / "ch02.md").read_bytes()
        assert project.start().wait(60) is JobState.SUCCEEDED
        stages = {r.stage for r in backend.requests}
        assert not stages & {"draft", "revision", "polish"}, "an imported chapter was rewritten"
        assert (project.root / "artefacts" / "10-polish" / "ch02.md").read_bytes() == polished
        assert project.run_stage("polish", chapters=[2], force=True).wait(60) is JobState.SUCCEEDED
        assert [(r.stage, r.unit) for r in backend.requests if r.stage == "polish"] == [
            ("polish", "ch02")
        ]
    finally:
        project.close()


# -- resume ----------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import novelkit as nk
    from novelkit import _store
    seen = {"n": 0}
    original = _store.Store.save_call
    def save_call(self, record):
        original(self, record)
        seen["n"] += 1
        if seen["n"] >= int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
    _store.Store.save_call = save_call
    nk.import_manuscript(sys.argv[1], sys.argv[2])
    """
)


@pytest.mark.slow
def test_kill_9_during_extraction_then_resume_pays_no_call_twice(tmp_path: Path) -> None:
    source = handmade_docx(tmp_path / "draft.docx")
    reference = tmp_path / "reference"
    nk.import_manuscript(source, reference).close()

    root = tmp_path / "novel"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(root), "4"], capture_output=True, timeout=60
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert not (root / "novel.toml").exists(), "a half-done import is not a project yet"
    with pytest.raises(nk.ProjectError, match="no novel.toml"):
        nk.open_project(root)
    db = sqlite3.connect(root / ".novelkit" / "state.db")
    finished = {row[0] for row in db.execute("SELECT key FROM calls")}
    db.close()
    assert len(finished) >= 3  # the fourth was not yet committed when the process died

    backend = CountingBackend()
    project = nk.import_manuscript(source, root, backend_instance=backend)
    try:
        assert backend.sent, "the rest of the extraction ran"
        assert not set(backend.sent) & finished, "a finished call was paid twice"
        assert len(backend.sent) == len(set(backend.sent))
    finally:
        project.close()
    assert artefact_files(root) == artefact_files(reference)


# -- bad input -------------------------------------------------------------------------------


def drm_epub(path: Path, generated: nk.Project) -> Path:
    source = zipfile.ZipFile(generated.root / "exports" / "novel.epub")
    with zipfile.ZipFile(path, "w") as out:
        for item in source.infolist():
            out.writestr(item, source.read(item))
        out.writestr(
            "META-INF/encryption.xml",
            '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
            'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
            '<enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
            '<enc:CipherData><enc:CipherReference URI="EPUB/chapter-001.xhtml"/></enc:CipherData>'
            "</enc:EncryptedData></encryption>",
        )
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.docx", b"", "is empty"),
        ("blank.md", b"\n\n   \n", "is empty"),
        (
            "flat.txt",
            b"One paragraph of prose.\n\nAnother, and no chapters.\n",
            "found no chapter headings",
        ),
        ("book.epub", b"PK not really a zip", "is not an EPUB file"),
        ("book.docx", b"plain words", "is not a .docx file"),
        ("book.pdf", b"%PDF-1.4", "cannot import 'pdf'"),
    ],
)
def test_bad_files_get_a_clear_error_and_write_nothing(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    with pytest.raises(nk.ManuscriptError, match=message):
        nk.import_manuscript(source, tmp_path / "novel")
    assert not (tmp_path / "novel").exists()


def test_no_headings_says_how_many_breaks_and_offers_the_pattern(tmp_path: Path) -> None:
    source = tmp_path / "flat.txt"
    source.write_text("Part\n\n\n\nSome words here.\n\nMore.\n\n\n\nEnd words.\n", encoding="utf-8")
    with pytest.raises(nk.ManuscriptError) as caught:
        read_manuscript(source)
    assert "2 page breaks or blank-line runs" in str(caught.value)
    assert "--chapter-pattern" in str(caught.value) and "chapter_pattern=" in str(caught.value)


def test_drm_epub_is_refused(tmp_path: Path, generated: nk.Project) -> None:
    with pytest.raises(nk.ManuscriptError, match="DRM"):
        nk.import_manuscript(drm_epub(tmp_path / "locked.epub", generated), tmp_path / "novel")
    assert not (tmp_path / "novel").exists()


def test_chapter_count_that_disagrees_is_refused(tmp_path: Path) -> None:
    source = handmade_docx(tmp_path / "draft.docx")
    with pytest.raises(
        nk.ManuscriptError, match=r"has 5 chapters .* chapters=8 .*extend\(chapters=3\)"
    ):
        nk.import_manuscript(source, tmp_path / "novel", chapters=8)
    assert not (tmp_path / "novel").exists()


def test_existing_project_is_never_touched(tmp_path: Path, generated: nk.Project) -> None:
    before = artefact_files(generated.root)
    toml = (generated.root / "novel.toml").read_bytes()
    with pytest.raises(nk.ProjectError, match="already holds a project"):
        nk.import_manuscript(handmade_docx(tmp_path / "draft.docx"), generated.root)
    assert artefact_files(generated.root) == before
    assert (generated.root / "novel.toml").read_bytes() == toml


def test_import_from_an_open_file(tmp_path: Path) -> None:
    data = handmade_docx(tmp_path / "draft.docx").read_bytes()
    book = read_manuscript(io.BytesIO(data), name="draft.docx")
    assert len(book.chapters) == 5


# -- command line ----------------------------------------------------------------------------


def test_cli_import_and_extend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = handmade_docx(tmp_path / "draft.docx")
    out = tmp_path / "novel"
    assert main(["import", str(source), "--out", str(out), "--run"]) == 0
    captured = capsys.readouterr()
    assert str(out.resolve()) in captured.out and "imported 5 chapters" in captured.err
    assert json.loads((out / "artefacts" / "00-import" / "book.json").read_text())["chapters"] == 5
    assert main(["extend", str(out), "--chapters", "1"]) == 0
    assert (out / "artefacts" / "10-polish" / "ch06.md").exists()
    assert main(["import", str(source), "--out", str(out)]) == 2
    assert "already holds a project" in capsys.readouterr().err
    parts = tmp_path / "parts.txt"
    parts.write_text("§ 1\n\nThe first part.\n\n§ 2\n\nThe second part.\n", encoding="utf-8")
    pattern = ["--chapter-pattern", r"^§ \d+$", "--title", "Parts"]
    assert main(["import", str(parts), "--out", str(tmp_path / "parts"), *pattern]) == 0
    assert "imported 2 chapters" in capsys.readouterr().err
    with nk.open_project(tmp_path / "parts") as imported:
        assert imported.config.title == "Parts"
    empty = tmp_path / "empty.md"
    empty.write_text("")
    assert main(["import", str(empty), "--out", str(tmp_path / "other")]) == 2
    assert "is empty" in capsys.readouterr().err


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16", "utf-8-sig"])
def test_text_files_from_other_editors(tmp_path: Path, encoding: str) -> None:
    source = tmp_path / "book.txt"
    source.write_bytes("Chapter 1\n\n“Café,” she said.\n\nChapter 2\n\nThe end.\n".encode(encoding))
    book = read_manuscript(source)
    assert [c.text for c in book.chapters] == ["“Café,” she said.", "The end."]
