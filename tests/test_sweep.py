"""Sweeps on a real Dask LocalCluster with worker processes: runs, control, re-runs, a killed
worker, the shared budget, and the CLI and HTTP views of the same sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_llm_servers import FakeOpenAIServer

import novelkit as nk
from novelkit import JobState
from novelkit._sweep import read_sweep_status

pytestmark = pytest.mark.slow

BASE = {"premise": "A keeper finds a letter.", "chapters": 1, "words_per_chapter": 100}
SLOW = {"tokens_per_second": 3000, "latency": 0.01}  # a few seconds a run: time to steer it


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two worker processes with one slot each, shared by the tests of this module."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        yield c


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def manuscripts(root: Path) -> dict[str, str]:
    return {
        p.parent.parent.name: p.read_text()
        for p in sorted(root.glob("*/artefacts/12-manuscript.md"))
    }


def fake_base(fake: FakeOpenAIServer, **more: Any) -> dict[str, Any]:
    return {
        **BASE,
        "backend": "openai",
        "base_url": fake.url + "/v1",
        "model": "fake-model",
        **more,
    }


def test_six_offline_runs_on_two_worker_processes(tmp_path: Path, client: Any) -> None:
    grid: dict[str, list[Any]] = {"seed": [1, 2, 3], "temperature": [0.5, 0.9]}
    with nk.sweep(tmp_path / "a", grid=grid, base=BASE, workers=2) as first:
        assert first.wait(180) is JobState.SUCCEEDED
        results = first.results()
        workers = {run.worker for run in first.status.runs}
    assert len(results) == 6
    assert set(results["state"]) == {"succeeded"}
    assert sorted(zip(results["seed"], results["temperature"], strict=True)) == sorted(
        (s, t) for s in (1, 2, 3) for t in (0.5, 0.9)
    )
    assert (results["total_words"] > 0).all() and (results["tokens"] > 0).all()
    assert len(workers) == 2  # both worker processes ran jobs
    for name in results.index:  # each run is an ordinary project
        with nk.open_project(tmp_path / "a" / name) as project:
            assert project.status().state is JobState.SUCCEEDED
    with nk.sweep(tmp_path / "b", grid=grid, base=BASE, client=client) as second:
        assert second.wait(180) is JobState.SUCCEEDED
        again = second.results()
    assert manuscripts(tmp_path / "a") == manuscripts(tmp_path / "b")  # deterministic
    figures = ["total_words", "tokens", "repeated_12gram_share", "chapters_count"]
    assert results[figures].equals(again.loc[results.index, figures])


def test_pause_resume_and_cancel_from_python(tmp_path: Path, client: Any) -> None:
    root = tmp_path / "s"
    base = {**BASE, "backend_options": SLOW}
    with nk.sweep(root, grid={"seed": [1, 2, 3, 4]}, base=base, client=client) as s:
        wait_for(lambda: any(r.state is JobState.RUNNING for r in s.status.runs))
        assert s.pause().changed
        assert s.wait(60) is JobState.PAUSED
        states = {r.state for r in s.status.runs}
        assert JobState.RUNNING not in states and JobState.QUEUED not in states
        assert not all(r.state is JobState.SUCCEEDED for r in s.status.runs)
        assert not s.pause().changed  # already paused
        assert s.resume().changed
        wait_for(lambda: any(r.state is JobState.RUNNING for r in s.status.runs))
        assert s.cancel().changed
        assert s.wait(60) is JobState.CANCELLED
        with pytest.raises(nk.JobStateError, match="cannot resume a sweep that is cancelled"):
            s.resume()
    with nk.sweep(root, grid={"seed": [1, 2, 3, 4]}, base=base, client=client) as again:
        assert again.wait(180) is JobState.SUCCEEDED


def test_rerun_after_cancel_skips_finished_runs_and_pays_no_call_twice(
    tmp_path: Path, client: Any
) -> None:
    root = tmp_path / "s"
    grid = {"seed": [1, 2, 3, 4, 5, 6]}
    with FakeOpenAIServer(latency=0.05, api_key=None) as fake:
        base = fake_base(fake)
        with nk.sweep(root, grid=grid, base=base, client=client) as s:
            wait_for(lambda: s.status.counts.get("succeeded", 0) >= 2, timeout=120)
            s.cancel()
            assert s.wait(60) is JobState.CANCELLED
            done = {r.name for r in s.status.runs if r.state is JobState.SUCCEEDED}
        assert 2 <= len(done) < 6
        jobs_before = {}
        for name in done:
            with nk.open_project(root / name) as project:
                assert project.job is not None
                jobs_before[name] = project.job.id
        first_session = len(fake.calls)
        with nk.sweep(root, grid=grid, base=base, client=client) as again:
            assert again.wait(180) is JobState.SUCCEEDED
        assert len(fake.calls) > first_session  # the cancelled runs did go on
        assert fake.paid_twice() == []
        for name in done:  # the finished runs were skipped, not run again
            with nk.open_project(root / name) as project:
                assert project.job is not None and project.job.id == jobs_before[name]


def test_a_killed_worker_s_run_resumes_on_another_worker(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with FakeOpenAIServer(latency=0.1, api_key=None) as fake:
        base = fake_base(fake, chapters=2)
        with nk.sweep(root, grid={"seed": [7]}, base=base, workers=2) as s:
            wait_for(lambda: any(r.progress > 0.3 and r.worker for r in s.status.runs), timeout=120)
            victim = s.status.runs[0].worker
            pid = s.client.run(os.getpid, workers=[victim])[victim]
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            assert s.wait(180) is JobState.SUCCEEDED
            run = s.status.runs[0]
        assert run.worker != victim
        with nk.open_project(root / run.name) as project:
            assert project.status().state is JobState.SUCCEEDED
        # an answer that had been streamed to the end before the kill is never asked again;
        # only a call still in flight when the worker died may be sent a second time
        repeated = fake.paid_twice()
        firsts = [
            next(c for c in fake.calls if c.finished and c.body == call.body) for call in repeated
        ]
        assert all(first.ended > killed_at - 0.5 for first in firsts), firsts


def test_shared_budget_pauses_the_sweep_before_the_call_that_would_pass_it(
    tmp_path: Path, client: Any
) -> None:
    root = tmp_path / "s"
    with nk.sweep(
        root, grid={"seed": [1, 2, 3, 4]}, base=BASE, client=client, max_tokens=12_000
    ) as s:
        assert s.wait(120) is JobState.PAUSED
        status = s.status
        assert "max_tokens" in status.message
        assert status.tokens <= 12_000
        assert status.counts.get("succeeded", 0) < 4
        assert s.resume(max_tokens=1_000_000).changed
        assert s.wait(180) is JobState.SUCCEEDED
        assert s.status.tokens > 12_000


def test_cli_and_http_control_a_sweep_driven_elsewhere(tmp_path: Path, client: Any) -> None:
    from _local_client import LocalClient

    from novelkit.cli import main
    from novelkit.server import create_app, create_key

    root = tmp_path / "s"
    base = {**BASE, "backend_options": SLOW}
    with nk.sweep(root, grid={"seed": [1, 2, 3]}, base=base, client=client) as s:
        key = create_key(root, "write")
        reader = create_key(root, "read")
        with LocalClient(create_app(root, rate_limit=None)) as http:
            auth = {"Authorization": f"Bearer {key}"}
            wait_for(lambda: any(r.state is JobState.RUNNING for r in s.status.runs))
            body = http.get("/api/v2/sweep", headers=auth).json()
            assert body["state"] == "running" and len(body["runs"]) == 3
            assert {r["name"] for r in body["runs"]} == set(s.runs)
            refused = http.post(
                "/api/v2/sweep/pause", json={}, headers={"Authorization": f"Bearer {reader}"}
            )
            assert refused.status_code == 403
            answer = http.post("/api/v2/sweep/pause", json={}, headers=auth)
            assert answer.status_code == 200 and answer.json()["changed"] is True
            assert s.wait(60) is JobState.PAUSED
            again = http.post("/api/v2/sweep/pause", json={}, headers=auth).json()
            assert again["changed"] is False
            assert main(["resume", str(root)]) == 0  # the CLI, through the same channel
            wait_for(lambda: s.state is JobState.RUNNING)
            assert main(["cancel", str(root)]) == 0
            assert s.wait(60) is JobState.CANCELLED
            illegal = http.post("/api/v2/sweep/pause", json={}, headers=auth)
            assert illegal.status_code == 409
            assert "cannot pause a sweep that is cancelled" in illegal.json()["error"]["message"]
            spec = http.get("/openapi.json").json()
            assert {"/api/v2/sweep", "/api/v2/sweep/pause"} <= set(spec["paths"])
            page = http.get("/sweep")
            assert page.status_code == 200 and "static/sweep.js" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert http.get("/static/sweep.js").status_code == 200


def test_cli_sweep_runs_a_grid_file_and_sweep_status_reports_it(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'premise = "A keeper finds a letter."\nchapters = 1\nwords_per_chapter = 100\n\n'
        "[grid]\nseed = [1, 2]\n"
    )
    root = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "novelkit.cli",
            "sweep",
            str(root),
            "--grid",
            str(grid),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    assert "sweep succeeded" in run.stderr
    status = subprocess.run(
        [sys.executable, "-m", "novelkit.cli", "sweep-status", str(root), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    data = json.loads(status.stdout)
    assert data["state"] == "succeeded"
    assert [r["state"] for r in data["runs"]] == ["succeeded", "succeeded"]
    assert sorted(r["params"]["seed"] for r in data["runs"]) == [1, 2]
    grid.write_text('premise = "x"\n[grid]\ntemprature = [0.5]\n')
    bad = subprocess.run(
        [sys.executable, "-m", "novelkit.cli", "sweep", str(tmp_path / "t"), "--grid", str(grid)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "did you mean 'temperature'?" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "t").exists()


def test_cli_ctrl_c_pauses_the_sweep(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'premise = "A keeper finds a letter."\nchapters = 2\nwords_per_chapter = 300\n\n'
        "[backend_options]\ntokens_per_second = 2000\nlatency = 0.01\n\n[grid]\nseed = [1, 2]\n"
    )
    root = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "novelkit.cli",
            "sweep",
            str(root),
            "--grid",
            str(grid),
            "--workers",
            "1",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for(
            lambda: (
                any(
                    (json.loads(p.read_text()) or {}).get("state") == "running"
                    for p in (root / ".sweep" / "runs").glob("*.json")
                )
                if (root / ".sweep" / "runs").exists()
                else False
            ),
            timeout=120,
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "pausing the sweep" in err and f"novelkit sweep {root.resolve()}" in err
    status = read_sweep_status(root)
    assert status.state is JobState.PAUSED
    assert status.counts.get("succeeded", 0) < 2
    go_on = subprocess.run(  # without --grid: the sweep recorded in ROOT/sweep.toml
        [sys.executable, "-m", "novelkit.cli", "sweep", str(root), "--workers", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert go_on.returncode == 0, go_on.stderr
    assert read_sweep_status(root).counts == {"succeeded": 2}


DRIVER = """
import json, sys
import novelkit as nk
if __name__ == "__main__":
    root, base = sys.argv[1], json.loads(sys.argv[2])
    sweep = nk.sweep(root, grid={"seed": [1, 2, 3, 4]}, base=base, workers=1)
    sweep.wait()
"""


def test_rerun_after_the_driving_process_died_skips_succeeded_runs_and_resumes_the_rest(
    tmp_path: Path, client: Any
) -> None:
    root = tmp_path / "s"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with FakeOpenAIServer(latency=0.05, api_key=None) as fake:
        base = fake_base(fake)
        driver = subprocess.Popen(
            [sys.executable, str(script), str(root), json.dumps(base)],
            env=env,
            start_new_session=True,  # its LocalCluster's processes die with it
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: (root / ".sweep" / "runs").exists(), timeout=120)
            wait_for(
                lambda: (
                    read_sweep_status(root).counts.get("succeeded", 0) >= 1
                    and read_sweep_status(root).counts.get("running", 0) >= 1
                ),
                timeout=120,
            )
        finally:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
        killed_at = time.monotonic()
        before = read_sweep_status(root)
        assert before.state is JobState.INTERRUPTED
        done = {r.name for r in before.runs if r.state is JobState.SUCCEEDED}
        jobs = {}
        for name in done:
            with nk.open_project(root / name) as project:
                assert project.job is not None
                jobs[name] = project.job.id
        with nk.sweep(root, grid={"seed": [1, 2, 3, 4]}, base=base, client=client) as again:
            assert again.wait(180) is JobState.SUCCEEDED
        for name in done:  # skipped: no new job on a run that had succeeded
            with nk.open_project(root / name) as project:
                assert project.job is not None and project.job.id == jobs[name]
        repeated = fake.paid_twice()
        firsts = [
            next(c for c in fake.calls if c.finished and c.body == call.body) for call in repeated
        ]
        assert all(first.ended > killed_at - 0.5 for first in firsts), firsts
