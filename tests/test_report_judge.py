"""The LLM judge against the fake OpenAI-compatible server and from a cassette: scores by the
rubric, every call in the ledger, priced, capped, memoised, replayable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _scorecard import planted_project, write_planted
from fake_llm_servers import FakeOpenAIServer

import novelkit as nk
from novelkit.report.judge import NEGATIVE, POSITIVE, RUBRIC

PRICES = {"fake-model": {"prompt": 1.0, "completion": 2.0}}  # per million tokens


def expected(chapter: int) -> float:
    """The fake judge's rule (tests/fake_llm_servers.py judge_answer) on the 0–10 scale."""
    quality = 10 + chapter
    return round((len(POSITIVE) * quality + len(NEGATIVE) * (20 - 4)) / 22 / 2, 2)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAIServer:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    server.reset()
    return server


def judged_project(root: Path, fake: FakeOpenAIServer, **config: Any) -> nk.Project:
    project = planted_project(root)
    project.configure(
        backend="openai",
        base_url=fake.url + "/v1",
        model="fake-model",
        prices=PRICES,
        **config,
    )
    return project


def test_judge_scores_each_chapter_and_the_book(tmp_path: Path, fake: FakeOpenAIServer) -> None:
    project = judged_project(tmp_path / "p", fake)
    scores = project.judge()

    assert scores.rubric == RUBRIC and scores.model == "fake-model"
    assert [(r.chapter, r.score) for r in scores.results] == [
        (1, expected(1)),
        (2, expected(2)),
        (3, expected(3)),
        (4, expected(4)),
        (0, 6.75),  # the book: five qualities at 12, three faults at 4
    ]
    assert scores.book_score == 6.75 and scores.results[0].comment == "Chapter 1: clear enough."
    assert len(scores.results[0].criteria) == len(POSITIVE) + len(NEGATIVE)
    # every call is an ordinary, priced call in the ledger, and nothing was paid twice
    ledger = project.store.ledger()["judge"]
    assert ledger["calls"] == 5 == fake.completed
    assert ledger["cost"] == pytest.approx(scores.cost) and scores.cost > 0
    calls = [e for e in project.events(limit=10_000) if e["type"] == "call"]
    assert sorted(e["unit"] for e in calls) == ["book", "ch01", "ch02", "ch03", "ch04"]
    sent = json.dumps(fake.calls[0].body)
    assert "Overall Impression" in sent and "Tell-Don't-Show" in sent

    card = project.report(charts=False)
    assert card.judge is not None and card.judge.book_score == 6.75
    assert [c.judge for c in card.chapters] == [expected(n) for n in (1, 2, 3, 4)]
    assert card.figures()["judge"] == 6.75
    assert "LLM judge (fake-model" in card.to_markdown()


def test_judging_again_is_free_and_an_edit_makes_that_score_stale(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    project = judged_project(tmp_path / "p", fake)
    project.judge()
    project.judge()
    assert fake.completed == 5  # the memo answered the second time

    chapter = project.root / "artefacts" / "10-polish" / "ch02.md"
    chapter.write_text(chapter.read_text() + "\nShe slept at last.\n")
    card = project.report(charts=False)
    assert card.judge is not None
    stale = {r.chapter for r in card.judge.results if r.stale}
    assert stale == {2, 0}  # that chapter and the book
    assert [c.judge for c in card.chapters] == [expected(1), None, expected(3), expected(4)]

    project.judge(chapters=[2], book=False)  # only what changed; the rest is kept
    card = project.report(charts=False)
    assert fake.completed == 6
    assert [c.judge for c in card.chapters] == [expected(n) for n in (1, 2, 3, 4)]


def test_the_judge_replays_from_a_cassette_without_the_network(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    recorded = judged_project(tmp_path / "rec", fake, backend_options={"record": True}).judge()
    cassette = tmp_path / "rec" / "cassette.jsonl"
    assert cassette.exists()
    before = fake.requests

    replay = planted_project(tmp_path / "replay")
    replay.configure(
        backend="replay", model="fake-model", backend_options={"cassette": str(cassette)}
    )
    replayed = replay.judge()
    assert fake.requests == before
    assert [(r.chapter, r.score) for r in replayed.results] == [
        (r.chapter, r.score) for r in recorded.results
    ]
    assert replay.store.ledger()["judge"]["calls"] == 5


@pytest.mark.parametrize(
    ("cap", "words"),
    [({"max_cost": 0.000001}, "max_cost"), ({"max_tokens": 10}, "max_tokens")],
)
def test_the_judge_is_held_to_the_budget(
    tmp_path: Path, fake: FakeOpenAIServer, cap: dict[str, Any], words: str
) -> None:
    project = judged_project(tmp_path / "p", fake, **cap)
    with pytest.raises(nk.BudgetExceededError, match=f"the judge stopped .* pass {words}"):
        project.judge()
    assert fake.requests == 0
    assert not (project.root / "artefacts" / "report" / "judge.json").exists()


def test_nothing_to_judge_and_unknown_chapters(tmp_path: Path, fake: FakeOpenAIServer) -> None:
    project = judged_project(tmp_path / "p", fake)
    with pytest.raises(nk.PipelineError, match=r"cannot judge chapters \[9\]"):
        project.judge(chapters=[9])
    empty = nk.new_project(
        tmp_path / "empty",
        premise="x",
        backend="openai",
        base_url=fake.url + "/v1",
        model="fake-model",
    )
    with pytest.raises(nk.PipelineError, match="nothing to judge yet"):
        empty.judge()


def test_a_wrong_key_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "wrong-key")
    project = judged_project(tmp_path / "p", fake)
    with pytest.raises(nk.BackendConfigError):
        project.judge()
    assert not (project.root / "artefacts" / "report" / "judge.json").exists()
    write_planted(project.root)  # the project is still usable
    assert project.report(save=False).judge is None
