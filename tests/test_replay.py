"""Record/replay cassettes (novelkit/llm/replay.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fake_llm_servers import FakeOpenAIServer, prompt_request, text_of

from novelkit._config import NovelConfig
from novelkit._errors import ConfigError, ReplayMissError
from novelkit.llm import make_backend
from novelkit.llm._retry import RetryPolicy
from novelkit.llm.base import Backend, Chunk, Done, Request, Retrying
from novelkit.llm.offline import OfflineBackend, respond
from novelkit.llm.openai import OpenAIBackend
from novelkit.llm.replay import Cassette, RecordingBackend, ReplayBackend


async def _nosleep(delay: float) -> None:
    return None


def run(target: Backend, *requests: Request) -> list[list[Chunk]]:
    async def go() -> list[list[Chunk]]:
        try:
            return [[chunk async for chunk in target.stream(r)] for r in requests]
        finally:
            await target.aclose()

    return asyncio.run(go())


REQUESTS = [
    prompt_request(),
    prompt_request(
        unit="again",
        context={"premise": "Two sisters inherit a drowned village", "genre": "gothic"},
    ),
    prompt_request(
        "world", {"premise": {"premise": "A clockmaker hides a second heart"}, "unit": "all"}
    ),
]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def config(**values: Any) -> NovelConfig:
    return NovelConfig(premise="A lighthouse keeper", **values)


def test_record_stop_the_server_then_replay_identically(tmp_path: Path) -> None:
    cassette = tmp_path / "cassette.jsonl"
    with FakeOpenAIServer() as fake:
        fake.inject("cut", unit="again")  # a retried call records only its final answer
        live = OpenAIBackend(
            model="fake-model",
            api_key="test-key",
            base_url=fake.url + "/v1",
            retry=RetryPolicy(sleep=_nosleep),
        )
        recorded = run(
            RecordingBackend(live, cassette, config=config(model="fake-model")), *REQUESTS
        )
        url = fake.url
    # the server is gone: any network call would fail
    replay = ReplayBackend(Cassette.load(cassette), chunk_chars=7)
    replayed = run(replay, *REQUESTS)
    for before, after in zip(recorded, replayed, strict=True):
        assert text_of(after) == text_of(before)
        assert after[-1] == before[-1]  # usage, finish reason and model too
        assert not any(isinstance(c, Retrying) for c in after)
    assert replay.hits == 3 and replay.misses == 0

    meta, *calls = lines(cassette)
    assert meta["type"] == "meta" and meta["format"] == "novelkit-cassette"
    assert (meta["backend"], meta["model"], meta["base_url"]) == (
        "openai",
        "fake-model",
        url + "/v1",
    )
    assert meta["recorded_at"].endswith("+00:00")
    assert [c["key"] for c in calls] == [r.key for r in REQUESTS]
    assert calls[1]["response"] == text_of(recorded[1])
    assert "test-key" not in cassette.read_text(encoding="utf-8")


def test_a_miss_says_what_is_missing_and_how_to_fix_it(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    run(RecordingBackend(OfflineBackend(), cassette), REQUESTS[0])
    replay = ReplayBackend(Cassette.load(cassette))
    with pytest.raises(ReplayMissError) as caught:
        run(replay, REQUESTS[2])
    message = str(caught.value)
    assert "world call of world/all" in message
    assert "record = true" in message and "fallback" in message
    assert "offline backend" in message  # who recorded it


def test_a_changed_request_for_a_recorded_unit_is_pointed_out(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    run(RecordingBackend(OfflineBackend(), cassette), REQUESTS[0])
    changed = prompt_request(context={"premise": "Something else entirely", "genre": "mystery"})
    with pytest.raises(ReplayMissError, match="with other settings"):
        run(ReplayBackend(Cassette.load(cassette)), changed)


def test_a_miss_falls_through_to_the_fallback(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    run(RecordingBackend(OfflineBackend(), cassette), REQUESTS[0])
    replay = ReplayBackend(Cassette.load(cassette), fallback=OfflineBackend())
    [hit, miss] = run(replay, REQUESTS[0], REQUESTS[2])
    assert text_of(miss) == respond("world", REQUESTS[2].context, 1)
    assert isinstance(miss[-1], Done) and miss[-1].model == "offline"
    assert replay.hits == 1 and replay.misses == 1


def test_a_cassette_replays_under_another_model_name(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    run(RecordingBackend(OfflineBackend(), cassette), prompt_request(model="gpt-recorded"))
    [chunks] = run(ReplayBackend(Cassette.load(cassette)), prompt_request(model=""))
    assert text_of(chunks) == respond("premise", REQUESTS[0].context, 1)


def test_make_backend_records_and_replays(tmp_path: Path) -> None:
    recorder = make_backend(config(backend_options={"record": True}), tmp_path)
    assert isinstance(recorder, RecordingBackend)
    [recorded] = run(recorder, REQUESTS[0])
    assert (tmp_path / "cassette.jsonl").exists()

    replay = make_backend(config(backend="replay"), tmp_path)
    assert isinstance(replay, ReplayBackend)
    [replayed] = run(replay, REQUESTS[0])
    assert text_of(replayed) == text_of(recorded)

    named = make_backend(
        config(
            backend="replay", backend_options={"cassette": "cassette.jsonl", "fallback": "offline"}
        ),
        tmp_path,
    )
    assert isinstance(named, ReplayBackend) and isinstance(named.fallback, OfflineBackend)


def test_recording_again_appends_without_a_second_meta_line(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    run(RecordingBackend(OfflineBackend(), cassette), REQUESTS[0])
    run(RecordingBackend(OfflineBackend(), cassette), REQUESTS[1])
    kinds = [item["type"] for item in lines(cassette)]
    assert kinds == ["meta", "call", "call"]
    run(
        RecordingBackend(OfflineBackend(latency=0.0), cassette, config=config(model="other")),
        REQUESTS[2],
    )
    assert [item["type"] for item in lines(cassette)][-2:] == [
        "meta",
        "call",
    ]  # honest: new recorder


def test_replay_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist.*record = true"):
        make_backend(config(backend="replay"), tmp_path)
    with pytest.raises(ConfigError, match="fallback"):
        make_backend(config(backend="replay", backend_options={"fallback": "gpt"}), tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'cassette'"):
        make_backend(config(backend="replay", backend_options={"casette": "x"}), tmp_path)
    # a fallback with no cassette yet is allowed: everything falls through
    fresh = make_backend(
        config(backend="replay", backend_options={"fallback": "offline"}), tmp_path
    )
    [chunks] = run(fresh, REQUESTS[0])
    assert text_of(chunks) == respond("premise", REQUESTS[0].context, 1)


def test_a_cut_last_line_is_ignored_but_damage_elsewhere_is_reported(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    run(RecordingBackend(OfflineBackend(), cassette), REQUESTS[0], REQUESTS[1])
    with cassette.open("a", encoding="utf-8") as handle:
        handle.write('{"type": "call", "key": "abc", "resp')  # a crash mid-write
    assert len(Cassette.load(cassette)) == 2
    damaged = tmp_path / "d.jsonl"
    damaged.write_text("not json\n" + cassette.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ConfigError, match="d.jsonl:1"):
        Cassette.load(damaged)
