"""The whole pipeline against a real language model: SmolLM2-135M-Instruct served by
llama-cpp-python's OpenAI-compatible server on 127.0.0.1, with the server's defaults.

It is a small, weak model on purpose. What it gets wrong novelkit must absorb (repair, re-ask,
extend, trim) or stop with a clear error; these tests check the book a user gets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from real_model import CountingProxy, LlamaServer

import novelkit as nk
from novelkit import _artefacts as a

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

PREMISE = "A lighthouse keeper finds a letter from her drowned brother."
CHAPTERS = 2
WORDS = 300


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    with LlamaServer() as server:
        yield server


@pytest.fixture
def proxy(llama: LlamaServer) -> Iterator[CountingProxy]:
    with CountingProxy(llama.url) as counting:
        yield counting


def novelkit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "novelkit.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )


def generate_args(out: Path, base_url: str) -> list[str]:
    return [
        "generate",
        PREMISE,
        "--out",
        str(out),
        "--backend",
        "openai",
        "--base-url",
        base_url,
        "--model",
        "smollm2",
        "--chapters",
        str(CHAPTERS),
        "--words-per-chapter",
        str(WORDS),
    ]


def check_book(root: Path) -> None:
    """What a user checks of the book: every artefact valid, exactly the chapters asked for,
    each within the length tolerance and ending on a finished sentence."""
    project = nk.open_project(root)
    try:
        for stage in project.stages:
            assert stage.state is nk.StageState.SUCCEEDED, (stage.name, stage.state)
        artefacts = root / "artefacts"
        for name, model in (
            ("01-premise.json", a.Premise),
            ("02-world.json", a.World),
            ("03-characters.json", a.Cast),
            ("04-structure.json", a.Structure),
            ("05-chapters.json", a.Outline),
            ("11-metadata.json", a.Metadata),
        ):
            model.model_validate_json((artefacts / name).read_bytes())
        outline = a.Outline.model_validate_json((artefacts / "05-chapters.json").read_bytes())
        assert [plan.number for plan in outline.chapters] == list(range(1, CHAPTERS + 1))
        assert all(plan.target_words == WORDS for plan in outline.chapters)
        cast = a.Cast.model_validate_json((artefacts / "03-characters.json").read_bytes())
        assert {plan.pov for plan in outline.chapters} <= set(cast.names())
        expected = [f"ch{n:02d}" for n in range(1, CHAPTERS + 1)]
        for folder, per_chapter in (
            ("06-scenes", a.ChapterScenes),
            ("08-continuity", a.ContinuityReport),
        ):
            found = sorted(p.stem for p in (artefacts / folder).glob("*.json"))
            assert found == expected, folder
            for path in (artefacts / folder).glob("*.json"):
                per_chapter.model_validate_json(path.read_bytes())
        for folder in ("07-draft", "09-revision", "10-polish"):
            found = sorted(p.stem for p in (artefacts / folder).glob("ch??.md"))
            assert found == expected, folder
        manuscript = (artefacts / "12-manuscript.md").read_text("utf-8")
        headings = [line[2:] for line in manuscript.splitlines() if line.startswith("# ")]
        meta = a.Metadata.model_validate_json((artefacts / "11-metadata.json").read_bytes())
        assert headings[1:] == [plan.title for plan in outline.chapters] or headings == [
            plan.title for plan in outline.chapters
        ], (headings, meta.title)
        report = project.report()
        assert report is not None
        assert len(report.chapters) == CHAPTERS
        assert not report.missing_chapters and not report.duplicated_chapters
        for chapter in report.chapters:
            assert chapter.within_tolerance, chapter
        for n in range(1, CHAPTERS + 1):
            text = (artefacts / "10-polish" / f"ch{n:02d}.md").read_text("utf-8").rstrip()
            assert text[-1] in ".!?\"'”’…)*", f"chapter {n} is cut off: …{text[-80:]!r}"
            assert "<think>" not in text and "```" not in text
    finally:
        project.close()


def test_generate_writes_exactly_the_book_asked_for(tmp_path: Path, proxy: CountingProxy) -> None:
    out = tmp_path / "lighthouse"
    result = novelkit_cli(*generate_args(out, proxy.url + "/v1"))
    assert result.returncode == 0, result.stderr[-3000:]
    check_book(out)
    status = json.loads(novelkit_cli("status", str(out), "--json").stdout)
    assert status["state"] == "succeeded"
    # the server refused json_schema once; every later structured call used its own form
    refused = [c for c in proxy.calls if c.status == 500]
    assert len(refused) <= 1
    facts = json.loads((out / ".novelkit" / "server.json").read_text("utf-8"))
    assert [f["structured_output"] for f in facts.values()] == ["json_object_schema"]


def test_kill_9_mid_draft_then_resume_pays_no_finished_call_twice(
    tmp_path: Path, proxy: CountingProxy
) -> None:
    out = tmp_path / "killed"
    novelkit_cli(
        "new",
        str(out),
        "--premise",
        PREMISE,
        *generate_args(out, proxy.url + "/v1")[4:],
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen(
        [sys.executable, "-m", "novelkit.cli", "run", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 1200
    while not any(c.task == "draft" and c.finished for c in proxy.calls):
        assert run.poll() is None, "the run ended before its first draft"
        assert time.monotonic() < deadline, "no draft within 20 minutes"
        time.sleep(0.1)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    before = {c.key for c in proxy.finished}
    count_before = len(proxy.calls)
    result = novelkit_cli("run", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    after = proxy.calls[count_before:]
    repaid = [c.task for c in after if c.key in before]
    assert repaid == [], f"finished calls sent again after the kill: {repaid}"
    check_book(out)


def test_a_context_window_too_small_is_a_clear_error_not_five_retries(tmp_path: Path) -> None:
    with LlamaServer(n_ctx=256) as small:
        project = nk.new_project(
            tmp_path / "small",
            premise=PREMISE,
            chapters=CHAPTERS,
            words_per_chapter=WORDS,
            backend="openai",
            base_url=small.url + "/v1",
            model="smollm2",
        )
        try:
            assert project.start().wait(timeout=600) is nk.JobState.FAILED
            error = project.status().error or ""
            assert "context window" in error and "backend_options.context_window" in error
            assert "stage 'premise'" in error or "premise/all" in error, error
            assert not list((project.root / "artefacts").iterdir())
            retries = [e for e in project.events(limit=1000) if e["type"] == "retry"]
            assert retries == [], [e["reason"] for e in retries]
        finally:
            project.close()
