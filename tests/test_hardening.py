"""Issue 18's adversarial probes, each reproduced and asserted by what a user sees."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
