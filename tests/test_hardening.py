"""Issue 18's adversarial probes, each reproduced and asserted by what a user sees."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import novelkit as nk

# every job transition the state machine allows (DESIGN §5); "interrupted" only after a
# process died, which never happens in these tests
LEGAL = {
    None: {"queued"},
    "queued": {"running", "paused", "cancelled"},
    "running": {"pausing", "cancelling", "succeeded", "failed", "paused"},
    "pausing": {"paused", "cancelling", "failed", "succeeded"},
    "paused": {"queued", "cancelled"},
    "cancelling": {"cancelled", "failed"},
    "cancelled": set(),
    "succeeded": set(),
    "failed": {"queued"},
}


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_opening_a_project_never_marks_another_process_s_live_job_interrupted(
    tmp_path: Path,
) -> None:
    """The storm of the probe: processes open the project (as status, pause and cancel do)
    while another starts and cancels jobs; every job's events are legal transitions."""
    folder = tmp_path / "p"
    nk.new_project(
        folder,
        "A keeper finds a letter.",
        chapters=2,
        words_per_chapter=200,
        backend_options={"tokens_per_second": 20000, "latency": 0.001},
    ).close()
    stop = tmp_path / "stop"
    writer = _python(f"""
        import random
        import novelkit as nk
        random.seed(7)
        for _ in range(8):
            project = nk.open_project({str(folder)!r})
            for _ in range(25):
                job = project.run_stage("premise", force=True)
                if random.random() < 0.5:
                    try:
                        job.cancel()
                    except nk.JobStateError:
                        pass  # it finished first
                job.wait(30)
            project.close()
        open({str(stop)!r}, "w").close()
    """)
    opener = _python(f"""
        import os
        import novelkit as nk
        while not os.path.exists({str(stop)!r}):
            project = nk.open_project({str(folder)!r})
            job = project.job
            if job is not None:
                job.state
            project.close()
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    openers = [subprocess.Popen(opener, env=env) for _ in range(3)]
    try:
        subprocess.run(writer, env=env, check=True, timeout=300)
    finally:
        stop.touch()
        for proc in openers:
            assert proc.wait(60) == 0
    project = nk.open_project(folder)
    events = [e for e in project.store.events_since(0, 1_000_000) if e.type == "job"]
    project.close()
    last: dict[str | None, str | None] = {}
    jobs = {e.job_id for e in events}
    assert len(jobs) == 200
    for event in events:
        previous, state = last.get(event.job_id), event.data["state"]
        assert event.data["previous"] == previous, (event.job_id, event.data)
        assert state in LEGAL[previous], f"{previous} → {state} for job {event.job_id}"
        last[event.job_id] = state


# -- 1. descriptors ---------------------------------------------------------------------------

SERVER = """
    import resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the probe's `ulimit -n 1024`
    from novelkit.server import serve_in_thread
    handle = serve_in_thread(sys.argv[1], port=0, rate_limit=None, log_level="warning",
                             idle_close=1.0, max_open=int(sys.argv[2]) or None)
    print(handle.port, flush=True)
    sys.stdin.read()  # until the test closes it
    handle.stop()
"""


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _hammer(port: int, key: str, ids: list[str], clients: int, rounds: int) -> list[object]:
    """The probe's load: ``clients`` parallel GETs cycling the list, a project's events, its
    stages and the project; each outcome is (status, Retry-After) or the exception's name."""
    import http.client
    from concurrent.futures import ThreadPoolExecutor

    paths = ["/api/v2/projects"]
    for project_id in ids:
        base = f"/api/v2/projects/{project_id}"
        paths += [f"{base}/events?since=0&limit=5", f"{base}/generate/stages", base]

    def client(offset: int) -> list[object]:
        outcomes: list[object] = []
        for i in range(rounds):
            path = paths[(offset * 7 + i) % len(paths)]
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request("GET", path, headers={"X-API-Key": key})
                response = connection.getresponse()
                response.read()
                outcomes.append((response.status, response.getheader("Retry-After")))
            except OSError as exc:
                outcomes.append(type(exc).__name__)
            finally:
                connection.close()
        return outcomes

    with ThreadPoolExecutor(clients) as pool:
        return [o for outcomes in pool.map(client, range(clients)) for o in outcomes]


def _served_root(tmp_path: Path, count: int) -> tuple[Path, str, list[str]]:
    from novelkit.server import create_key

    root = tmp_path / "root"
    ids = [f"book{i:03d}" for i in range(count)]
    for project_id in ids:
        nk.new_project(root / project_id, "A keeper finds a letter.", chapters=2).close()
    return root, create_key(root, "read"), ids


@pytest.mark.parametrize("max_open", [0, 8])  # the default for 1024 descriptors; a tight one
def test_the_sidecar_never_runs_out_of_descriptors_under_the_probe_s_load(
    tmp_path: Path, max_open: int
) -> None:
    """30 projects, `ulimit -n 1024`, 45 parallel GETs: every answer is 200 or 429/503 with
    Retry-After (no 500, no dropped connection), descriptors return to the idle baseline, and
    the log does not repeat an error per request."""
    root, key, ids = _served_root(tmp_path, 30)
    log = tmp_path / "server.log"
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            [*_python(SERVER), str(root), str(max_open)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        ) as server,
    ):
        assert server.stdout is not None and server.stdin is not None
        try:
            port = int(server.stdout.readline())
            baseline = _descriptors(server.pid)
            outcomes = _hammer(port, key, ids, clients=45, rounds=30)
            errors = [o for o in outcomes if not isinstance(o, tuple)]
            assert not errors, f"{len(errors)} dropped connections: {set(errors)}"
            answered = [o for o in outcomes if isinstance(o, tuple)]
            assert {status for status, _ in answered} <= {200, 429, 503}, answered
            assert all(retry for status, retry in answered if status != 200)
            served = sum(1 for status, _ in answered if status == 200)
            assert served > (len(answered) // 2 if max_open == 0 else 0)
            deadline = time.monotonic() + 30
            while _descriptors(server.pid) > baseline and time.monotonic() < deadline:
                time.sleep(0.2)  # idle projects close after idle_close (1 s here)
            assert _descriptors(server.pid) <= baseline
        finally:
            server.stdin.close()
            server.wait(30)
    lines = log.read_text().splitlines()
    assert len(lines) < 20, lines[:20]
