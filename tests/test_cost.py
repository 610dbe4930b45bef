"""Cost safety: max_cost needs a price, the built-in price table, costs with their currency,
and ``project.estimate()`` / ``novelkit estimate`` before a run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_llm_servers import FakeOpenAIServer

import novelkit as nk
from novelkit._config import validate_config
from novelkit._prices import DEFAULT_PRICES, PRICES_DATE, format_cost, price_for
from novelkit.cli import main

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
FAST_RETRIES = {"base_delay": 0.01, "max_delay": 0.05}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models=("fake-model", "gpt-4o-mini", "other-model")) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAIServer:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    server.reset()
    return server


def make(tmp_path: Path, fake: FakeOpenAIServer, **config: Any) -> nk.Project:
    settings: dict[str, Any] = {
        "chapters": 2,
        "words_per_chapter": 200,
        "backend": "openai",
        "base_url": fake.url + "/v1",
        "model": "fake-model",
        "backend_options": FAST_RETRIES,
        **config,
    }
    return nk.new_project(tmp_path / "novel", premise=PREMISE, **settings)


def _config(**values: Any) -> nk.NovelConfig:
    return validate_config({"premise": PREMISE, **values})


# -- the price table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", (0.15, 0.60)),
        ("gpt-4o-2024-08-06", (2.50, 10.00)),  # a dated snapshot of a listed model
        ("claude-sonnet-4-5-20250929", (3.00, 15.00)),
        ("claude-3-5-sonnet-latest", (3.00, 15.00)),
        ("gpt-4o-audio-preview", None),  # another model, not a snapshot of gpt-4o
        ("llama3.1", None),
        ("", None),
    ],
)
def test_built_in_prices(model: str, expected: tuple[float, float] | None) -> None:
    price = price_for(_config(), model)
    assert (None if price is None else (price.prompt, price.completion)) == expected


def test_prices_in_novel_toml_win_and_other_currencies_skip_the_table() -> None:
    config = _config(prices={"gpt-4o-mini": {"prompt": 9, "completion": 9}})
    price = price_for(config, "gpt-4o-mini-2024-07-18")
    assert price is not None and (price.prompt, price.completion) == (9, 9)
    assert price_for(_config(currency="EUR"), "gpt-4o-mini") is None
    with pytest.raises(nk.ConfigError, match="currency"):
        _config(currency="dollars")


def test_the_table_is_dated() -> None:
    assert PRICES_DATE[:2] == "20" and len(PRICES_DATE) == 10
    assert "gpt-4o-mini" in DEFAULT_PRICES and "claude-sonnet-4-5" in DEFAULT_PRICES
    assert format_cost(0.012345, "EUR") == "0.0123 EUR"


# -- max_cost without a price ------------------------------------------------------------------


def test_max_cost_without_a_price_refuses_to_start(tmp_path: Path, fake: FakeOpenAIServer) -> None:
    project = make(tmp_path, fake, max_cost=1.0)
    toml = (project.root / "novel.toml").read_bytes()
    with pytest.raises(nk.ConfigError) as refused:
        project.start()
    message = str(refused.value)
    assert "'fake-model'" in message and "[prices.fake-model]" in message
    assert "nothing was started" in message
    # nothing started, nothing paid, nothing changed
    assert fake.requests == 0
    assert project.job is None and project.store.call_count() == 0
    assert project.status().state is None
    assert (project.root / "novel.toml").read_bytes() == toml
    project.close()
    reopened = nk.open_project(project.root)
    assert reopened.job is None
    reopened.close()


def test_a_stage_model_or_variant_model_without_a_price_is_named(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    project = make(tmp_path, fake, model="gpt-4o-mini", max_cost=1.0)
    project.configure(stages={"draft": {"model": "other-model"}})
    with pytest.raises(nk.ConfigError, match=r"'other-model' \(used by draft\)"):
        project.start()
    with pytest.raises(nk.ConfigError, match=r"'other-model' \(used by premise\)"):
        project.run_stage("premise", variant="alt", model="other-model")
    assert fake.requests == 0 and project.job is None
    project.close()


def test_after_adding_the_price_the_run_goes_and_is_costed(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    project = make(tmp_path, fake, max_cost=5.0)
    with pytest.raises(nk.ConfigError):
        project.start()
    project.configure(prices={"fake-model": {"prompt": 2.0, "completion": 8.0}})
    assert project.start().wait(timeout=120) is nk.JobState.SUCCEEDED
    ledger = project.store.ledger()
    prompt = sum(int(row["prompt_tokens"]) for row in ledger.values())
    completion = sum(int(row["completion_tokens"]) for row in ledger.values())
    status = project.status()
    assert status.cost == pytest.approx((prompt * 2.0 + completion * 8.0) / 1e6)
    assert status.cost > 0 and fake.completed == project.store.call_count()
    assert f"cost {status.cost:,.4f} USD" in status.table()
    project.close()


def test_a_built_in_price_keeps_max_cost_working(tmp_path: Path, fake: FakeOpenAIServer) -> None:
    project = make(tmp_path, fake, model="gpt-4o-mini")
    cap = round(project.estimate().cost / 2, 4)  # type: ignore[operator]
    project.configure(max_cost=cap)
    job = project.start()
    assert job.wait(timeout=120) is nk.JobState.PAUSED
    status = project.status()
    assert "would pass max_cost" in status.message
    assert f" USD spent of {cap:.4f} USD" in status.message
    assert 0 < status.cost <= cap
    assert fake.completed == project.store.call_count() > 0
    project.close()


def test_a_paused_job_resumed_with_an_unpriced_model_pays_nothing(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    project = make(tmp_path, fake, model="gpt-4o-mini", max_cost=0.0008)
    job = project.start()
    assert job.wait(timeout=120) is nk.JobState.PAUSED
    paid = fake.requests
    project.configure(model="fake-model", max_cost=10.0)  # edited under the paused job
    job.resume()  # as `novelkit resume DIR` does, without start()'s check
    assert job.wait(timeout=120) is nk.JobState.PAUSED
    assert "model 'fake-model' has no price" in project.status().message
    assert "[prices.fake-model]" in project.status().message
    assert fake.requests == paid
    project.close()


def test_free_backends_need_no_price(tmp_path: Path) -> None:
    project = nk.new_project(tmp_path / "offline", premise=PREMISE, chapters=1, max_cost=0.5)
    assert project.start().wait(timeout=120) is nk.JobState.SUCCEEDED
    assert project.status().cost == 0
    project.close()


# -- estimate ----------------------------------------------------------------------------------


def test_estimate_matches_an_offline_run_and_leaves_the_project_untouched(tmp_path: Path) -> None:
    project = nk.new_project(tmp_path / "n", premise=PREMISE, chapters=3, words_per_chapter=400)
    before = sorted(p.relative_to(project.root) for p in project.root.rglob("*") if p.is_file())
    estimate = project.estimate()
    after = sorted(p.relative_to(project.root) for p in project.root.rglob("*") if p.is_file())
    assert after == before and project.job is None and project.store.call_count() == 0
    assert project.start().wait(timeout=120) is nk.JobState.SUCCEEDED
    ledger = project.store.ledger()
    actual = sum(int(r["prompt_tokens"]) + int(r["completion_tokens"]) for r in ledger.values())
    # the dry run is the offline writer itself, so its tokens are within 5% of a real offline run
    assert 0.95 <= estimate.tokens / actual <= 1.05
    assert estimate.calls == sum(int(r["calls"]) for r in ledger.values())
    assert {s.stage for s in estimate.stages} == set(ledger)
    assert estimate.cost == 0
    project.close()


def test_estimate_prices_a_paid_model_or_says_which_price_is_missing(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    project = make(tmp_path, fake, model="gpt-4o-mini", max_cost=0.0001)
    estimate = project.estimate()
    prompt, completion = DEFAULT_PRICES["gpt-4o-mini"]
    expected = (estimate.prompt_tokens * prompt + estimate.completion_tokens * completion) / 1e6
    assert estimate.cost is not None
    assert estimate.cost == pytest.approx(expected) and estimate.cost > 0.0001
    assert estimate.currency == "USD" and "USD" in estimate.table()
    assert "more than max_cost" in estimate.table()
    project.configure(model="fake-model")
    unpriced = project.estimate()
    assert unpriced.cost is None and unpriced.unpriced == ["fake-model"]
    assert "[prices.fake-model]" in unpriced.table()
    assert fake.requests == 0  # an estimate pays for nothing
    project.close()


# -- command line ------------------------------------------------------------------------------


def test_cli_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "n"
    assert main(["new", str(folder), "--premise", PREMISE, "--chapters", "2"]) == 0
    capsys.readouterr()
    assert main(["estimate", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("estimate for a whole run on offline:") and "0.0000 USD" in out
    assert "draft" in out and "polish" in out
    assert main(["estimate", str(folder), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tokens"] > 0 and data["currency"] == "USD" and data["cost"] == 0


def test_cli_max_cost_is_saved_and_refused_without_a_price(
    tmp_path: Path, fake: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "novel"
    code = main(
        [
            "generate",
            PREMISE,
            "--out",
            str(folder),
            "--backend",
            "openai",
            "--base-url",
            fake.url + "/v1",
            "--model",
            "fake-model",
            "--chapters",
            "2",
            "--max-cost",
            "2.5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.index("estimate for a whole run on openai") < err.index("[prices.fake-model]")
    assert fake.requests == 0
    assert "max_cost = 2.5" in (folder / "novel.toml").read_text(encoding="utf-8")
    assert nk.open_project(folder).job is None

    assert main(["run", str(folder), "--max-cost", "3"]) == 2  # still no price
    assert "max_cost = 3" in capsys.readouterr().err
    offline = tmp_path / "offline"
    assert main(["new", str(offline), "--premise", PREMISE, "--max-cost", "0.75"]) == 0
    assert "max_cost = 0.75" in (offline / "novel.toml").read_text(encoding="utf-8")
