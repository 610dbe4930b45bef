"""What real models answer, played by the fake server: reasoning blocks, fences, wrong counts,
names outside the cast, a server that rejects ``response_format: json_schema``.

Each test checks the exact outcome a user sees: the answer read as it is, re-asked with the
error, or a failure that names the stage and what was asked and got.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_llm_servers import FOREIGN_NAME, FakeOpenAIServer, FakeServer

import novelkit as nk
from novelkit._answers import (
    Shape,
    answer_schema,
    extract_json,
    output_budget,
    read_answer,
    strip_reasoning,
)

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeOpenAIServer() as server:
        yield server


def make(tmp_path: Path, fake: FakeServer, chapters: int = 3, **options: Any) -> nk.Project:
    return nk.new_project(
        tmp_path / "novel",
        premise=PREMISE,
        chapters=chapters,
        words_per_chapter=300,
        backend="openai",
        base_url=fake.url + "/v1",
        model="fake-model",
        backend_options={"base_delay": 0.01, "max_delay": 0.05, **options},
    )


def finish(project: nk.Project) -> nk.JobState:
    try:
        return project.start().wait(timeout=120)
    finally:
        project.close()


def outline(project: nk.Project) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (project.root / "artefacts" / "05-chapters.json").read_text("utf-8")
    )
    return data


def tasks(fake: FakeOpenAIServer) -> list[str]:
    return [call.task for call in fake.calls]


# -- reading answers -------------------------------------------------------------------------


def test_a_think_block_is_not_part_of_the_answer() -> None:
    text = '<think>I should use {"a": 1} maybe</think>\n{"title": "Tide"}'
    assert json.loads(extract_json(text)) == {"title": "Tide"}
    assert strip_reasoning("<think>plan</think>\n\nThe sea was grey.") == "The sea was grey."
    # a server that already removed the opening tag still sends the closing one
    assert strip_reasoning("plan the chapter</think>The sea was grey.") == "The sea was grey."
    # a reasoning block cut off by the token limit leaves nothing of itself
    assert strip_reasoning("The end.\n<think>and then") == "The end."


def test_json_is_found_in_a_fence_with_prose_around_it() -> None:
    text = 'Here you go:\n```json\n{"title": "Tide", "n": [1, 2]}\n```\nAnything else?'
    assert json.loads(extract_json(text)) == {"title": "Tide", "n": [1, 2]}
    assert json.loads(extract_json('Sure. {"a": {"b": "}"}} and more')) == {"a": {"b": "}"}}


def test_the_schema_sent_carries_counts_choices_and_bounds() -> None:
    shape = Shape(
        items={"chapters": (3, 3)},
        choices={"chapters[].pov": ("Mara", "Tom")},
        fixed={"chapters[].number": 1, "chapters[].target_words": 300},
    )
    schema = answer_schema(nk.Outline, shape)
    chapters = schema["properties"]["chapters"]
    assert (chapters["minItems"], chapters["maxItems"]) == (3, 3)
    item = chapters["items"]
    assert "number" not in item["properties"] and "target_words" not in item["properties"]
    assert item["properties"]["pov"]["enum"] == ["Mara", "Tom"]
    assert item["properties"]["summary"]["minLength"] == 1
    assert all("maxItems" in p for p in item["properties"].values() if p.get("type") == "array")
    assert item["additionalProperties"] is False
    assert 500 < output_budget(schema) < 4096  # sized to the answer, not the model's maximum


# -- whole runs against the fake server -------------------------------------------------------


@pytest.mark.parametrize("kind", ["think", "fence"])
def test_reasoning_blocks_and_fences_are_read_without_a_re_ask(
    tmp_path: Path, fake: FakeOpenAIServer, kind: str
) -> None:
    structured = fake.inject(kind, task="chapters")
    prose = fake.inject(kind, task="draft", unit="ch02")
    project = make(tmp_path, fake)
    assert finish(project) is nk.JobState.SUCCEEDED, project.status().error
    assert structured.used == 1 and prose.used == 1
    assert "repair" not in tasks(fake)
    assert len(outline(project)["chapters"]) == 3
    draft = (project.root / "artefacts" / "07-draft" / "ch02.md").read_text("utf-8")
    assert "<think>" not in draft and "```" not in draft and "Let me plan" not in draft


def test_a_wrong_chapter_count_is_re_asked_with_the_error(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    fault = fake.inject("extra_item", task="chapters")
    project = make(tmp_path, fake)
    assert finish(project) is nk.JobState.SUCCEEDED, project.status().error
    assert fault.used == 1
    repair = next(call for call in fake.calls if call.task == "repair")
    assert "3 items are required, the answer has 4" in repair.body["messages"][-1]["content"]
    assert [c["number"] for c in outline(project)["chapters"]] == [1, 2, 3]
    assert sorted(p.name for p in (project.root / "artefacts" / "07-draft").glob("*.md")) == [
        "ch01.md",
        "ch02.md",
        "ch03.md",
    ]
    manuscript = (project.root / "artefacts" / "12-manuscript.md").read_text("utf-8")
    titles = [c["title"] for c in outline(project)["chapters"]]
    assert [line[2:] for line in manuscript.splitlines() if line.startswith("# ")] == titles


def test_a_count_still_wrong_after_the_re_asks_fails_naming_stage_and_counts(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    fake.inject("extra_item", task="chapters", times=2)
    fake.inject("extra_item", task="repair", times=2)
    project = make(tmp_path, fake, chapters=2)
    assert finish(project) is nk.JobState.FAILED
    error = project.status().error or ""
    assert "stage 'chapters'" in error
    assert "asked the model for 2 chapters, it gave 3" in error
    assert "seed" in error  # and how to get past it
    assert not (project.root / "artefacts" / "05-chapters.json").exists()
    assert (project.root / "artefacts" / "04-structure.json").exists()  # earlier work is kept


def test_a_pov_outside_the_cast_is_re_asked(tmp_path: Path, fake: FakeOpenAIServer) -> None:
    fault = fake.inject("foreign_name", task="chapters")
    scenes = fake.inject("foreign_name", task="scenes", unit="ch01")
    project = make(tmp_path, fake)
    assert finish(project) is nk.JobState.SUCCEEDED, project.status().error
    assert fault.used == 1 and scenes.used == 1
    repairs = [c for c in fake.calls if c.task == "repair"]
    assert len(repairs) == 2
    assert all(FOREIGN_NAME in c.body["messages"][-1]["content"] for c in repairs)
    cast = json.loads((project.root / "artefacts" / "03-characters.json").read_text("utf-8"))
    names = {c["name"] for c in cast["characters"]}
    assert {c["pov"] for c in outline(project)["chapters"]} <= names
    first = json.loads((project.root / "artefacts" / "06-scenes" / "ch01.json").read_text("utf-8"))
    assert {n for s in first["scenes"] for n in s["cast"]} <= names


def test_a_server_that_rejects_json_schema_is_found_out_once(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    fake.formats = ("text", "json_object")  # llama-cpp-python's server: 500 for json_schema
    project = make(tmp_path, fake)
    assert finish(project) is nk.JobState.SUCCEEDED, project.status().error
    rejected = [c for c in fake.calls if c.status == 500]
    assert len(rejected) == 1  # found out on the first structured call, not retried
    structured = [c for c in fake.calls if c.status == 200 and c.task not in ("draft", "extend")]
    formats = [c.body["response_format"] for c in structured if "response_format" in c.body]
    assert formats and all(f["type"] == "json_object" and "schema" in f for f in formats)
    facts = json.loads((project.root / ".novelkit" / "server.json").read_text("utf-8"))
    [learned] = facts.values()
    assert learned["structured_output"] == "json_object_schema"
    assert learned["rejected"] == ["json_schema"]
    # a later run of the same project does not try json_schema again
    fake.reset()
    fake.formats = ("text", "json_object")
    reopened = nk.open_project(project.root)
    reopened.run_stage("premise", variant="again", seed=9).wait(timeout=60)
    reopened.close()
    assert fake.calls and all(c.status == 200 for c in fake.calls)


def test_a_server_that_rejects_every_format_gets_the_schema_in_the_prompt(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    fake.formats = ("text",)
    project = make(tmp_path, fake)
    assert finish(project) is nk.JobState.SUCCEEDED, project.status().error
    assert sum(c.status == 500 for c in fake.calls) == 3  # three mechanisms, each refused once
    last = [c for c in fake.calls if c.task == "metadata"][-1]
    assert "response_format" not in last.body
    assert "JSON schema" in last.body["messages"][-1]["content"]


# -- local servers: concurrency, context windows, URLs, reasoning ------------------------------


def test_a_server_that_drops_concurrent_streams_does_not_fail_the_job(tmp_path: Path) -> None:
    with FakeOpenAIServer(interrupting=True, api_key=None) as fake:
        project = make(tmp_path, fake)
        assert finish(project) is nk.JobState.SUCCEEDED, project.status().error
        interrupted = [c for c in fake.calls if c.fault == "interrupted"]
        assert interrupted  # the server did drop streams while novelkit sent several
        notices = [e for e in project.events(limit=100_000) if e["type"] == "retry"]
        assert any("at most 1 at a time" in e["reason"] for e in notices)
        # once lowered, the limit held: no more than a few streams were ever dropped
        assert len(interrupted) <= 3
        assert fake.completed == project.store.call_count()  # nothing finished paid twice


def test_slots_the_server_states_cap_concurrency_from_the_start(tmp_path: Path) -> None:
    with FakeOpenAIServer(
        interrupting=True, api_key=None, props={"n_ctx": 32768, "total_slots": 1}
    ) as fake:
        project = make(tmp_path, fake)
        assert finish(project) is nk.JobState.SUCCEEDED, project.status().error
        assert not [c for c in fake.calls if c.fault == "interrupted"]
        assert fake.max_in_flight == 1
        [facts] = json.loads((project.root / ".novelkit" / "server.json").read_text()).values()
        assert (facts["kind"], facts["slots"], facts["context_window"]) == ("llama.cpp", 1, 32768)


def test_a_prompt_that_cannot_fit_the_context_window_is_refused_before_it_is_sent(
    tmp_path: Path,
) -> None:
    with FakeOpenAIServer(api_key=None, props={"n_ctx": 300, "total_slots": 4}) as fake:
        project = make(tmp_path, fake)
        assert finish(project) is nk.JobState.FAILED
        error = project.status().error or ""
        assert "context window" in error and "300-token" in error and "stage 'premise'" in error
        assert "nothing was sent" in error
        assert fake.requests == 0  # not paid
        # the fix the message gives works: a bigger window, and the job resumes
        fake.props = {"n_ctx": 16384, "total_slots": 4}
        (project.root / ".novelkit" / "server.json").unlink()  # what the server says now
        reopened = nk.open_project(project.root)
        assert finish(reopened) is nk.JobState.SUCCEEDED, reopened.status().error


def test_a_context_window_set_in_the_options_bounds_the_answer(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    project = make(tmp_path, fake, context_window=3000)
    project.run_stage("premise").wait(timeout=60)
    project.close()
    [call] = fake.calls
    prompt = sum(len(m["content"]) for m in call.body["messages"]) / 4
    assert call.body["max_tokens"] <= 3000 - prompt


def test_a_base_url_without_v1_is_corrected(tmp_path: Path, fake: FakeOpenAIServer) -> None:
    project = nk.new_project(
        tmp_path / "novel",
        premise=PREMISE,
        chapters=2,
        words_per_chapter=300,
        backend="openai",
        base_url=fake.url,  # Ollama, llama.cpp and vLLM serve the API under /v1
        model="fake-model",
    )
    assert project.run_stage("premise").wait(timeout=60) is nk.JobState.SUCCEEDED
    project.close()
    assert [c.path for c in fake.calls] == ["/v1/chat/completions"]


def test_reasoning_effort_is_sent_and_reasoning_tokens_are_in_the_ledger(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    project = make(tmp_path, fake, reasoning_effort="low")
    assert project.run_stage("premise").wait(timeout=60) is nk.JobState.SUCCEEDED
    assert fake.calls[0].body["reasoning_effort"] == "low"
    assert project.store.ledger()["premise"]["reasoning_tokens"] == 37
    project.close()


def test_a_reasoning_effort_the_model_rejects_names_the_setting_and_resumes_after_the_fix(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    project = make(tmp_path, fake, reasoning_effort="minimal")
    assert project.start().wait(timeout=60) is nk.JobState.FAILED
    error = project.status().error or ""
    assert "backend_options.reasoning_effort = 'minimal'" in error and "remove it" in error
    assert len(fake.calls) == 1  # not retried
    project.configure(backend_options={"base_delay": 0.01, "reasoning_effort": "low"})
    project.close()
    reopened = nk.open_project(project.root)
    assert finish(reopened) is nk.JobState.SUCCEEDED, reopened.status().error


def test_bad_backend_options_are_refused_with_the_fix(tmp_path: Path) -> None:
    for options, words in (
        ({"reasoning_effort": "max"}, "reasoning_effort = 'max' is invalid"),
        ({"context_window": 100}, "context_window = 100 is too small"),
        ({"structured_output": "xml"}, "structured_output = 'xml' is invalid"),
    ):
        project = nk.new_project(
            tmp_path / str(len(words)),
            premise=PREMISE,
            backend="openai",
            base_url="http://127.0.0.1:9/v1",
            model="m",
            backend_options=options,
        )
        with pytest.raises(nk.ConfigError, match=words):
            project.backend  # noqa: B018 - built on first use
        project.close()


def test_numbers_outside_their_bounds_are_brought_inside() -> None:
    shape = Shape(items={"chapters": (1, 1)})
    answer = {
        "chapters": [
            {
                "number": 1,
                "title": "T",
                "summary": "S",
                "pov": "P",
                "location": "L",
                "beats": ["b"],
                "target_words": 300,
                "tension": 20,
            }
        ]
    }
    outline = read_answer(nk.Outline, shape, json.dumps(answer))
    assert outline.chapters[0].tension == 10
