"""Whole jobs through the real HTTP backends against the fake servers on 127.0.0.1.

Every injected fault must end in complete artefacts, with no finished call paid twice (the
fake's count of answers streamed to the end equals the calls in the project's ledger).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_llm_servers import FakeAnthropicServer, FakeOpenAIServer, FakeServer, Fault

import novelkit as nk

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
FAST_RETRIES = {"base_delay": 0.01, "max_delay": 0.05}


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as fake:
        yield fake


@pytest.fixture(params=["openai", "anthropic"])
def fake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    server: FakeServer = request.getfixturevalue(f"{request.param}_server")
    server.reset()
    return server


def backend_of(fake: FakeServer) -> str:
    return "openai" if isinstance(fake, FakeOpenAIServer) else "anthropic"


def make(tmp_path: Path, fake: FakeServer, name: str = "novel", **options: Any) -> nk.Project:
    backend = backend_of(fake)
    return nk.new_project(
        tmp_path / name,
        premise=PREMISE,
        chapters=3,
        words_per_chapter=300,
        backend=backend,
        base_url=fake.url + ("/v1" if backend == "openai" else ""),
        model="fake-model",
        backend_options={**FAST_RETRIES, **options},
    )


def artefacts(project: nk.Project) -> dict[str, bytes]:
    folder = project.root / "artefacts"
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def assert_complete(project: nk.Project, fake: FakeServer) -> None:
    assert all(stage.state is nk.StageState.SUCCEEDED for stage in project.stages), project.stages
    files = artefacts(project)
    for chapter in ("ch01", "ch02", "ch03"):
        for folder in ("06-scenes", "07-draft", "08-continuity", "09-revision", "10-polish"):
            assert any(name.startswith(f"{folder}/{chapter}") for name in files), (folder, chapter)
    manuscript = files["12-manuscript.md"].decode("utf-8")
    assert manuscript.count("\n## ") + manuscript.startswith("## ") >= 3 or len(manuscript) > 3000
    report = project.report()
    assert report is not None and not report.missing_chapters
    assert all(c.within_tolerance for c in report.chapters), report.chapters
    # nothing finished was paid twice: every full answer the server sent is one ledger entry
    assert fake.completed == project.store.call_count()


def run(project: nk.Project) -> nk.JobState | None:
    try:
        return project.start().wait(timeout=120)
    finally:
        project.close()


def test_a_clean_run(tmp_path: Path, fake: FakeServer) -> None:
    project = make(tmp_path, fake)
    assert run(project) is nk.JobState.SUCCEEDED
    assert_complete(project, fake)
    assert fake.requests == fake.completed  # no fault, no retry


FAULTS: dict[str, dict[str, Any]] = {
    "rate_limit": {"task": "draft", "unit": "ch02", "retry_after": 0.05, "times": 2},
    "server_error": {"task": "scenes"},
    "overloaded": {"task": "world"},
    "cut": {"task": "polish", "unit": "ch03"},
    "truncate": {"task": "revision"},
    "stream_error": {"task": "structure"},
    "length": {"task": "draft", "unit": "ch01", "at": 0.4},
    "invalid_json": {"task": "characters"},
    "short": {"task": "draft", "unit": "ch03"},
    "long": {"task": "draft", "unit": "ch02"},
}
FOLLOW_UP = {"length": "continue", "invalid_json": "repair", "short": "extend"}


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_each_fault_ends_in_complete_artefacts(tmp_path: Path, fake: FakeServer, kind: str) -> None:
    fault: Fault = fake.inject(kind, **FAULTS[kind])
    project = make(tmp_path, fake)
    assert run(project) is nk.JobState.SUCCEEDED, project.status().error
    assert fault.used == fault.times
    assert_complete(project, fake)
    events = [e for e in project.events(limit=100_000) if e["type"] == "retry"]
    if kind in ("length", "invalid_json", "short", "long"):
        assert events == []
    else:
        assert len(events) == fault.times
        assert events[0]["message"].startswith("retrying in")
        assert events[0]["attempt"] == 2
    if kind in FOLLOW_UP:
        tasks = {call.task for call in fake.calls}
        assert FOLLOW_UP[kind] in tasks
    if kind == "long":
        chapter = next(c for c in project.report().chapters if c.chapter == 2)
        assert chapter.actual_words <= chapter.target_words * 1.1


def test_every_fault_at_once(tmp_path: Path, fake: FakeServer) -> None:
    faults = [fake.inject(kind, **options) for kind, options in FAULTS.items()]
    project = make(tmp_path, fake, max_concurrency=2)
    assert run(project) is nk.JobState.SUCCEEDED, project.status().error
    assert all(f.used == f.times for f in faults)
    assert_complete(project, fake)


def test_a_wrong_key_fails_fast_with_a_clear_error(tmp_path: Path, fake: FakeServer) -> None:
    fake.api_key = "the-real-key"
    try:
        project = make(tmp_path, fake)
        started = time.perf_counter()
        state = run(project)
    finally:
        fake.api_key = "test-key"
    assert state is nk.JobState.FAILED
    assert time.perf_counter() - started < 10
    error = project.status().error or ""
    variable = "OPENAI_API_KEY" if backend_of(fake) == "openai" else "ANTHROPIC_API_KEY"
    assert f"{variable} is missing or wrong" in error
    assert fake.requests == 1  # not retried


def test_an_unknown_model_fails_fast(tmp_path: Path, fake: FakeServer) -> None:
    project = make(tmp_path, fake)
    project.configure(model="no-such-model")
    state = run(project)
    assert state is nk.JobState.FAILED
    assert "model 'no-such-model' not found" in (project.status().error or "")
    assert fake.requests == 1


def test_exhausted_retries_fail_resumably_and_lose_nothing(
    tmp_path: Path, fake: FakeServer
) -> None:
    fake.inject("server_error", task="world", times=3)
    project = make(tmp_path, fake, max_attempts=3)
    state = project.start().wait(timeout=120)
    assert state is nk.JobState.FAILED
    assert "resume" in (project.status().error or "")
    paid = project.store.call_count()
    assert paid == fake.completed == 1  # the premise survived
    assert project.start().wait(timeout=120) is nk.JobState.SUCCEEDED
    project.close()
    assert_complete(project, fake)


def test_record_stop_the_server_and_replay_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with FakeOpenAIServer() as fake:
        fake.inject("cut", task="draft", unit="ch02")
        fake.inject("length", task="summary", unit="ch01")
        recorded = make(tmp_path, fake, "recorded", record=True)
        assert run(recorded) is nk.JobState.SUCCEEDED
    cassette = recorded.root / "cassette.jsonl"
    assert cassette.exists()
    monkeypatch.delenv("OPENAI_API_KEY")
    replayed = nk.new_project(
        tmp_path / "replayed",
        premise=PREMISE,
        chapters=3,
        words_per_chapter=300,
        backend="replay",
        model="fake-model",
        backend_options={"cassette": str(cassette)},
    )
    assert run(replayed) is nk.JobState.SUCCEEDED, replayed.status().error
    assert artefacts(replayed) == artefacts(recorded)
    assert replayed.store.call_count() == recorded.store.call_count()
