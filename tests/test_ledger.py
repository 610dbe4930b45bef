"""The cost ledger and budget caps."""

from __future__ import annotations

import json

import pytest

from novelkit import JobState
from novelkit.cli import main

PRICES = {"offline": {"prompt": 1.0, "completion": 2.0}}


def test_every_call_is_priced_and_summed_per_stage(
    make_project: object, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(prices=PRICES)  # type: ignore[operator]
    assert project.start().wait(60) is JobState.SUCCEEDED
    ledger = project.store.ledger()
    for stage, row in ledger.items():
        expected = (row["prompt_tokens"] * 1.0 + row["completion_tokens"] * 2.0) / 1_000_000
        assert row["cost"] == pytest.approx(expected), stage
    status = project.status()
    assert status.cost == pytest.approx(sum(r["cost"] for r in ledger.values()))
    draft = next(s for s in status.stages if s.name == "draft")
    assert draft.cost == pytest.approx(ledger["draft"]["cost"]) and draft.tokens > 0
    assert main(["status", str(project.root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cost"] == pytest.approx(status.cost) and data["tokens"] == status.tokens
    assert main(["status", str(project.root)]) == 0
    table = capsys.readouterr().out
    assert f"cost {status.cost:.4f}" in table and f"{draft.cost:.4f}" in table


def test_token_budget_pauses_before_the_cap_and_resume_after_raising_it(
    make_project: object,
) -> None:
    project = make_project(max_tokens=9_000)  # type: ignore[operator]
    job = project.start()
    assert job.wait(60) is JobState.PAUSED
    status = job.status
    assert (
        "would pass max_tokens" in status.message
        and "raise max_tokens in novel.toml" in status.message
    )
    assert status.tokens <= 9_000, "the cap is never exceeded"
    calls = project.store.call_count()
    project.configure(max_tokens=10_000_000)
    assert job.resume().changed
    assert job.wait(60) is JobState.SUCCEEDED
    assert project.store.call_count() > calls


def test_cost_budget_pauses_before_the_cap(make_project: object) -> None:
    project = make_project(prices=PRICES, max_cost=0.01)  # type: ignore[operator]
    job = project.start()
    assert job.wait(60) is JobState.PAUSED
    assert "would pass max_cost" in job.status.message
    assert job.status.cost <= 0.01
