"""What a Dask worker runs for one run of a sweep: an ordinary novelkit Job.

The task opens (or creates) the run's project folder, starts its job, and waits for it while
it follows the sweep's control word (a Dask ``Variable``: run / pause / cancel) and writes the
run's figures to ``ROOT/.sweep/runs/<run>.json`` a few times a second. A killed worker's task
is given to another worker by the scheduler; opening the project there marks the dead job
``interrupted`` and ``start()`` resumes it from its saved calls.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
from pathlib import Path
from typing import Any

from .._errors import JobStateError, NovelkitError, ProjectLockedError
from .._status import JobState
from ._budget import BudgetSpec, Ledger, SharedBudgetBackend
from ._record import STATE_DIR, write_json

__all__ = ["run_one", "run_file"]

POLL = 0.2  # how often a running task reads the control word
WRITE_EVERY = 0.5  # how often it writes the run's figures while the job runs
LOCK_WAIT = 30.0
WARM_UP_WAIT = 20.0  # a sweep starts after this long even if some workers are busy  # a project still held by a dying process: wait this long for its lock


def run_file(root: Path, name: str) -> Path:
    return root / STATE_DIR / "runs" / f"{name}.json"


def _where() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _figures(name: str, status: Any, worker: str, started: float) -> dict[str, Any]:
    return {
        "name": name,
        "state": status.state.value if status.state is not None else None,
        "progress": round(float(status.progress), 4),
        "tokens": int(status.tokens),
        "cost": float(status.cost),
        "elapsed": round(float(status.elapsed or 0.0), 3),
        "message": status.message,
        "error": status.error,
        "stage": status.stage,
        "worker": worker,
        "started": started,
        "updated": time.time(),
    }


def run_one(
    root: str,
    name: str,
    config: dict[str, Any],
    control: str,
    budget: BudgetSpec | None = None,
) -> dict[str, Any]:
    """Run (or resume) one run of a sweep until it stops; returns its final figures."""
    from distributed import Variable, get_client

    client = get_client()
    word = Variable(control, client=client)
    where, started = _where(), time.time()
    path = Path(root) / name
    out = run_file(Path(root), name)
    if word.get(timeout=30) != "run":
        return {"name": name, "state": None, "skipped": True}
    project = None
    try:
        project = _open(path, config)
        if budget is not None and budget.enabled:
            project.backend = SharedBudgetBackend(
                project.backend, Ledger(budget, client), project.config, name
            )
        job = _start(project)
        last_write = 0.0
        asked: str = "run"
        while True:
            state = job.wait(timeout=POLL)
            now = time.monotonic()
            if not state.active:
                break
            if now - last_write >= WRITE_EVERY:
                write_json(out, _figures(name, job.status, where, started))
                last_write = now
            wanted = word.get(timeout=30)
            if wanted != asked:
                asked = wanted
                try:
                    if wanted == "cancel":
                        job.cancel()
                    elif wanted.startswith("pause"):
                        job.pause(now=wanted == "pause-now")
                except JobStateError:  # it finished (or stopped) in the meantime
                    pass
        figures = _figures(name, job.status, where, started)
    except NovelkitError as exc:
        figures = {
            "name": name,
            "state": JobState.FAILED.value,
            "progress": 0.0,
            "tokens": 0,
            "cost": 0.0,
            "elapsed": round(time.time() - started, 3),
            "message": "failed",
            "error": str(exc),
            "worker": where,
            "started": started,
            "updated": time.time(),
        }
        if project is not None:
            status = project.status()
            figures.update(progress=status.progress, tokens=status.tokens, cost=status.cost)
    finally:
        if project is not None:
            project.close()
    write_json(out, figures)
    return figures


def _open(path: Path, config: dict[str, Any]) -> Any:
    import novelkit as nk

    if (path / "novel.toml").exists():
        return nk.open_project(path)
    settings = dict(config)
    premise = settings.pop("premise")
    return nk.new_project(path, premise=premise, **settings)


def _start(project: Any) -> Any:
    """project.start(), waiting a little for a lock a dying process has not let go of yet."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            return project.start()
        except ProjectLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


_warm: set[str] = set()  # backends this worker process has warmed up
_SDKS = {"openai": ("openai",), "anthropic": ("anthropic",)}


def warm_up(config: dict[str, Any]) -> float:
    """Load what a run needs in this worker process (modules, schemas, the store, the backend)
    by running a one-chapter offline project in a temporary folder, once per process and
    backend, so a worker's first run is not slower than the others; returns the seconds."""
    import tempfile

    import novelkit as nk

    from .._config import validate_config
    from ..llm import make_backend

    started = time.perf_counter()
    settings = validate_config(config)
    with tempfile.TemporaryDirectory() as tmp:
        if not _warm:
            with nk.new_project(
                Path(tmp) / "warm-up", premise="A warm-up.", chapters=1, words_per_chapter=100
            ) as project:
                project.start().wait()
        if settings.backend not in _warm:
            try:
                backend = make_backend(settings, Path(tmp))
            except NovelkitError:  # e.g. a replay cassette elsewhere: the run will say so
                pass
            else:
                import asyncio

                asyncio.run(backend.aclose())  # a worker thread: no loop of its own runs here
            for module in _SDKS.get(settings.backend, ()):  # loaded on a backend's first call
                try:
                    importlib.import_module(module)
                except ImportError:
                    pass
    _warm.update(("offline", settings.backend))
    return time.perf_counter() - started


def warm_up_workers(client: Any, config: dict[str, Any]) -> None:
    """Run :func:`warm_up` on every worker the cluster has now (as ordinary tasks)."""
    workers = list(client.scheduler_info(n_workers=-1)["workers"])
    futures = [
        client.submit(warm_up, config, workers=[w], allow_other_workers=False, pure=False)
        for w in workers
    ]
    deadline = time.monotonic() + WARM_UP_WAIT  # a busy worker warms up on its first run
    while not all(f.done() for f in futures) and time.monotonic() < deadline:
        time.sleep(0.02)
    late = [f for f in futures if not f.done()]
    if late:
        client.cancel(late)
