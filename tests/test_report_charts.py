"""The scorecard's charts: drawn to files, shown in the notebook display, matplotlib loaded only
when a chart is drawn, and a clear message without it."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _scorecard import planted_project

import novelkit as nk
from novelkit.report.charts import CHARTS, draw, draw_compare

SVG = "{http://www.w3.org/2000/svg}svg"


def svg_text(svg: str) -> str:
    """The words a chart shows (matplotlib writes each label in a comment before its glyphs)."""
    return " ".join(re.findall(r"<!-- (.*?) -->", svg))


def test_report_draws_every_chart_to_an_svg_file(tmp_path: Path) -> None:
    project = planted_project(tmp_path / "p")
    project.report()
    folder = project.root / "artefacts" / "report"

    for name in CHARTS:
        path = folder / f"{name}.svg"
        root = ET.parse(path).getroot()
        assert root.tag == SVG and float(root.get("width", "0").rstrip("pt")) > 100
    assert "Ines Varga" in svg_text((folder / "presence.svg").read_text())
    assert "Act 2: Crossing" in svg_text((folder / "arc.svg").read_text())
    page = (folder / "index.html").read_text()
    markdown = (folder / "report.md").read_text()
    for name in CHARTS:
        assert f"src='{name}.svg'" in page and f"]({name}.svg)" in markdown


def test_a_chart_is_the_same_file_each_time(tmp_path: Path) -> None:
    card = planted_project(tmp_path / "p").report(save=False)
    assert draw(card, "words") == draw(card, "words")


def test_the_notebook_display_shows_the_charts_as_images(tmp_path: Path) -> None:
    card = planted_project(tmp_path / "p").report(save=False)
    bundle = card._repr_mimebundle_()

    assert bundle["text/plain"].startswith("<Scorecard")
    html = bundle["text/html"]
    sources = re.findall(r"<img src='data:image/svg\+xml;base64,([^']+)'", html)
    assert len(sources) == len(CHARTS)
    assert all(base64.b64decode(s).lstrip().startswith(b"<?xml") for s in sources)
    assert "Corwin speaks or acts but is not in the cast" in html


def test_compared_charts_have_one_line_per_run(tmp_path: Path) -> None:
    a = planted_project(tmp_path / "a").report(save=False)
    b = planted_project(tmp_path / "b").report(save=False)
    charts = draw_compare({"first": a, "second": b})

    assert set(charts) == {"words", "repetition", "slop", "arc"}
    assert "first" in svg_text(charts["words"]) and "second" in svg_text(charts["words"])
    html = nk.Comparison.of([tmp_path / "a", tmp_path / "b"])._repr_html_()
    assert html.count("<img src='data:image/svg+xml") == 4


def test_scoring_does_not_load_matplotlib_drawing_does(tmp_path: Path) -> None:
    planted_project(tmp_path / "p").close()
    code = (
        "import sys, novelkit as nk\n"
        f"p = nk.open_project({str(tmp_path / 'p')!r})\n"
        "p.report(charts=False); print('matplotlib' in sys.modules)\n"
        "p.report(); print('matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_without_matplotlib_the_report_says_how_to_get_charts(tmp_path: Path) -> None:
    planted_project(tmp_path / "p").close()
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import novelkit as nk\n"
        "from novelkit.report.charts import draw\n"
        f"card = nk.open_project({str(tmp_path / 'p')!r}).report()\n"
        "print(card.problems[-1])\n"
        "try:\n    draw(card, 'words')\nexcept ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "charts need matplotlib: pip install 'novelkit[report]'",
        "the scorecard's charts need matplotlib: pip install 'novelkit[report]'",
    ]
    folder = tmp_path / "p" / "artefacts" / "report"
    assert "charts need matplotlib" in (folder / "index.html").read_text()
    assert not list(folder.glob("*.svg"))


@pytest.mark.parametrize("name", CHARTS)
def test_an_empty_project_still_draws_every_chart(tmp_path: Path, name: str) -> None:
    project = nk.new_project(tmp_path / "p", premise="A keeper finds a letter.", chapters=2)
    card = project.report(save=False)
    root = ET.fromstring(draw(card, name))
    assert root.tag == SVG


@pytest.mark.slow
def test_the_charts_show_in_a_real_kernel(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    planted_project(tmp_path / "p").close()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            f"import novelkit as nk\ncard = nk.open_project({str(tmp_path / 'p')!r}).report()\ncard"
        )
    ]
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    [output] = notebook.cells[0].outputs
    assert output.output_type == "execute_result"
    html = output.data["text/html"]
    assert html.count("<img src='data:image/svg+xml;base64,") == len(CHARTS)
    assert "stray-name" in html
