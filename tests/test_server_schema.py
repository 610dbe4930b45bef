"""The sidecar's OpenAPI document against what the server really answers: schemathesis with
every check and every phase (stateful included) over a live uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _tools import require_tool
from schemathesis_hooks import SCHEMA_LEVEL

import novelkit as nk
from novelkit.server import ServerHandle, create_key, serve_in_thread
from novelkit.server.limits import RateLimit

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
TESTS = Path(__file__).parent
# far above what one fuzzing worker sends, so no operation answers 429 instead of its logic;
# the limiter still runs on every request
RAISED = RateLimit(per_second=10_000.0, burst=1_000_000)


class Served:
    def __init__(self, handle: ServerHandle, root: Path) -> None:
        self.handle = handle
        self.root = root
        self.url = handle.url.rstrip("/")
        self.write = create_key(root, "write")
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.write}"}, timeout=20
        )

    def schema(self) -> dict[str, Any]:
        document: dict[str, Any] = self.http.get("/openapi.json").json()
        return document


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from _serving(tmp_path / "root")


@pytest.fixture
def served_with_sweep(tmp_path: Path) -> Iterator[Served]:
    """The served root also holds a finished sweep, so its routes have something to answer."""
    root = tmp_path / "root"
    base = {"premise": PREMISE, "chapters": 1, "words_per_chapter": 100}
    with nk.sweep(root, grid={"seed": [1]}, base=base, workers=1) as swept:
        assert swept.wait(180) is nk.JobState.SUCCEEDED
    yield from _serving(root)


def _serving(root: Path) -> Iterator[Served]:
    done = nk.new_project(root / "done", premise=PREMISE, chapters=3, words_per_chapter=300)
    done.start().wait(60)
    done.export("md")
    done.close()
    nk.new_project(
        root / "slow",
        premise=PREMISE,
        chapters=3,
        words_per_chapter=300,
        backend_options={"tokens_per_second": 2000, "latency": 0.01},
    ).close()
    handle = serve_in_thread(root, port=0, rate_limit=RAISED)
    served = Served(handle, root)
    try:
        yield served
    finally:
        served.http.close()
        handle.stop()


def _run_stage_body(served: Served, stage: str, body: dict[str, Any]) -> httpx.Response:
    return served.http.post(f"/api/v2/projects/done/generate/stages/{stage}", json=body)


def test_chapter_numbers_have_their_real_bounds(served: Served) -> None:
    body = served.schema()["components"]["schemas"]["RunStageBody"]
    array = next(o for o in body["properties"]["chapters"]["anyOf"] if o["type"] == "array")
    assert array["items"] == {"type": "integer", "minimum": 1, "maximum": 200}
    for bad in (-4379540820540, 0, 201):
        response = _run_stage_body(served, "draft", {"chapters": [bad]})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_body"


def test_every_422_reason_is_documented(served: Served) -> None:
    paths = served.schema()["paths"]
    run_stage = paths["/api/v2/projects/{id}/generate/stages/{stage}"]["post"]["responses"]
    export = paths["/api/v2/projects/{id}/export"]["post"]["responses"]
    # chapters on a single-unit stage: a state of the pipeline, not of the schema
    response = _run_stage_body(served, "premise", {"chapters": [1]})
    assert response.status_code == 422
    code = response.json()["error"]["code"]
    assert f"`{code}`" in run_stage["422"]["description"]
    # one Idempotency-Key, two bodies
    headers = {"Idempotency-Key": "same-key"}
    first = served.http.post(
        "/api/v2/projects/done/export", json={"formats": ["md"]}, headers=headers
    )
    assert first.status_code == 200
    second = served.http.post(
        "/api/v2/projects/done/export", json={"formats": ["txt"]}, headers=headers
    )
    assert second.status_code == 422
    assert second.json()["error"]["code"] == "idempotency_key_reused"
    assert "`idempotency_key_reused`" in export["422"]["description"]


@pytest.mark.slow
def test_schemathesis_every_check_every_phase_finds_nothing(
    served_with_sweep: Served, tmp_path: Path
) -> None:
    served = served_with_sweep
    binary = require_tool("schemathesis")
    log = tmp_path / "answers.jsonl"
    config = tmp_path / "schemathesis.toml"
    # Requests the schema cannot tell apart from good ones, refused for the project's state:
    # a reused Idempotency-Key with another body (IETF idempotency-key draft: 422), chapters
    # the outline does not have or given to a single-unit stage, a hand-edited artefact that no
    # longer validates. tests/schemathesis_hooks.py's documented_rejection check holds those
    # 422s to the codes the schema documents, and never one the schema could have expressed.
    state_dependent = '["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]'
    config.write_text(
        "".join(
            f'[[operations]]\ninclude-operation-id = "{op}"\n'
            f"checks.positive_data_acceptance.expected-statuses = {state_dependent}\n"
            for op in ("run_stage", "generate", "create_exports")
        )
    )
    result = subprocess.run(
        [
            binary,
            "--config-file",
            str(config),
            "run",
            f"{served.url}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "-H",
            f"Authorization: Bearer {served.write}",
            "--max-examples",
            "30",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--generation-deterministic",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={
            **os.environ,
            "NO_COLOR": "1",
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
            "NOVELKIT_ST_LOG": str(log),
        },
        cwd=tmp_path,
    )
    output = result.stdout[-8000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    assert log.exists(), "the hooks (and their documented_rejection check) did not load"
    assert "Stateful" in result.stdout, output
    answers: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        answers[record["operation"]].append((record["status"], record["code"]))
    operations = [
        f"{method.upper()} {path}"
        for path, methods in served.schema()["paths"].items()
        for method in methods
    ]
    assert sorted(answers) == sorted(operations)
    for operation, seen in answers.items():
        assert all(status != 429 for status, _ in seen), f"{operation} was rate limited"
        # its own logic answered: a success, or a refusal for the project's state (a 409, or a
        # 422 for a reason no schema can express), not only auth, parsing or schema checks
        reached = [
            status
            for status, code in seen
            if 200 <= status < 300 or status == 409 or (status == 422 and code not in SCHEMA_LEVEL)
        ]
        assert reached, f"{operation} never got past the checks in front of it: {seen}"
    # and each succeeded at least once, but for the controls, whose success depends on where a
    # job happens to be when the request lands (their 409 is the logic answering)
    timing = {f"POST /api/v2/projects/{{id}}/generate/{verb}" for verb in ("pause", "resume")}
    timing |= {f"POST /api/v2/sweep/{verb}" for verb in ("pause", "resume", "cancel")}
    for operation in set(operations) - timing:
        assert any(200 <= s < 300 for s, _ in answers[operation]), f"{operation} never succeeded"


def test_a_project_names_who_writes_it(served: Served) -> None:
    writer = served.http.get("/api/v2/projects/done").json()["writer"]
    assert writer == {
        "name": "offline",
        "model": None,
        "stage_models": {},
        "placeholder": True,
        "label": "offline — placeholder prose, not written by a model",
    }


def test_a_broken_novel_toml_answers_a_documented_status(served: Served) -> None:
    broken = served.root / "broken"
    nk.new_project(broken, premise=PREMISE, chapters=2).close()
    config = broken / "novel.toml"
    config.write_text(config.read_text().replace("chapters = 2", "chapters = 0"))
    paths = served.schema()["paths"]
    for path, method in [
        ("/api/v2/projects/{id}", "get"),
        ("/api/v2/projects/{id}/generate/status", "get"),
        ("/api/v2/projects/{id}/generate", "post"),
        ("/api/v2/projects/{id}/export", "get"),
    ]:
        response = served.http.request(method, path.replace("{id}", "broken"))
        documented = paths[path][method]["responses"]
        assert str(response.status_code) in documented, (path, response.status_code)
        assert "chapters" in response.json()["error"]["message"]
    assert [p["id"] for p in served.http.get("/api/v2/projects").json()["projects"]] == [
        "done",
        "slow",
    ]
