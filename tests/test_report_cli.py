"""``novelkit report`` and ``novelkit judge`` on the command line: output, files, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _scorecard import PLANTED, planted_project

from novelkit.cli import main


def test_report_prints_the_headline_and_each_issue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    planted_project(tmp_path / "p").close()
    assert main(["report", str(tmp_path / "p"), "--no-charts"]) == 0
    out = capsys.readouterr().out.splitlines()

    assert "words in 4 chapters" in out[0]
    assert "  warning stray-name ch 2: Corwin speaks or acts but is not in the cast" in out
    assert "  info    slop ch 1: chapter 1 uses 1 stock phrase(s)" in out
    assert out[-1] == f"written: {tmp_path / 'p' / 'artefacts' / 'report' / 'index.html'}"


def test_report_json_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    planted_project(tmp_path / "p").close()
    assert main(["report", str(tmp_path / "p"), "--json", "--no-charts"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {issue["kind"] for issue in data["issues"]} == PLANTED

    assert main(["report", str(tmp_path / "p"), "--html"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>") and "<img src='words.svg'" in page
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "p"), "--html", "--json"])
    assert exit_info.value.code == 2


def test_report_of_a_folder_that_is_no_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "has no novel.toml; it is not a novelkit project" in capsys.readouterr().err


def test_judge_with_the_offline_backend_or_without_a_key_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    planted_project(tmp_path / "p").close()
    assert main(["judge", str(tmp_path / "p")]) == 2
    assert "the offline backend cannot judge" in capsys.readouterr().err

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert main(["judge", str(tmp_path / "p"), "--backend", "openai", "--model", "gpt-x"]) == 2
    assert "OPENAI_API_KEY is missing" in capsys.readouterr().err
    assert not (tmp_path / "p" / "artefacts" / "report" / "judge.json").exists()
    assert main(["judge", str(tmp_path / "p"), "--backend", "openai"]) == 2
    assert "needs a model" in capsys.readouterr().err
