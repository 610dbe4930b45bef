"""``nk.sweep``: many runs of one novel config on Dask, and the :class:`Sweep` that drives them.

The process that calls ``sweep()`` drives: it submits one Dask task per run (``_task.run_one``),
collects their outcomes, turns pause / resume / cancel into the control word the tasks follow,
and writes the sweep's state under ROOT/.sweep for other processes. Workers write each run's
figures there; the project folders themselves are ordinary novelkit projects. Every worker and
the driver must see ROOT on the same path (a shared filesystem on a cluster).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import JobStateError, NovelkitError
from .._status import ControlResult, JobState
from ._budget import BudgetSpec, Ledger
from ._figures import run_figures
from ._grid import Run, expand
from ._record import STATE_DIR, SweepDefinition, here, read_json, write_json, writer_alive
from ._status import RunFiles, RunStatus, SweepStatus, run_from
from ._task import run_file, run_one, warm_up_workers

__all__ = ["Sweep", "SweepError", "control_sweep", "sweep"]

log = logging.getLogger("novelkit")

S = JobState
MONITOR = 0.1  # the driver's loop: control requests, run files, state
PUBLISH = 0.5  # at most this often: ROOT/.sweep/status.json for other processes
CONNECT_TIMEOUT = 10.0

# the sweep's control actions and the states each is legal in: one table for the Sweep, the
# panel, the CLI and the sidecar (a request for the state it is already in changes nothing)
LEGAL: dict[str, frozenset[JobState]] = {
    "pause": frozenset({S.RUNNING}),
    "resume": frozenset({S.PAUSED, S.FAILED}),
    "cancel": frozenset({S.RUNNING, S.PAUSING, S.PAUSED, S.FAILED}),
}
_ALREADY = {
    "pause": (S.PAUSED, S.PAUSING),
    "resume": (S.RUNNING,),
    "cancel": (S.CANCELLED, S.CANCELLING),
}


class SweepError(NovelkitError):
    """The sweep cannot run as asked (e.g. its Dask cluster cannot be reached)."""


def legal_sweep_actions(state: JobState | None) -> frozenset[str]:
    return frozenset(action for action, states in LEGAL.items() if state in states)


def _check(action: str, state: JobState | None) -> bool:
    """True to act, False when already there; raises JobStateError when illegal."""
    if state in _ALREADY[action]:
        return False
    if state not in LEGAL[action]:
        shown = state.value if state is not None else "not started"
        hint = {
            "resume": "a cancelled or finished sweep is continued by calling nk.sweep(...) again",
            "pause": "only a running sweep pauses",
            "cancel": "a finished sweep has nothing to cancel",
        }[action]
        raise JobStateError(
            f"cannot {action} a sweep that is {shown}; {hint}", state=state, action=action
        )
    return True


def _connect(client: Any, workers: int | None) -> tuple[Any, Any]:
    """(client, cluster we started or None)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ImportError(
            "sweeps run on Dask; install it with pip install 'novelkit[sweep]'"
        ) from None
    if client is None:
        n = workers or min(4, os.cpu_count() or 1)
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        )
        return Client(cluster, set_as_default=False), cluster
    if isinstance(client, str):
        try:
            return Client(client, timeout=CONNECT_TIMEOUT, set_as_default=False), None
        except (OSError, TimeoutError) as exc:
            raise SweepError(
                f"cannot reach the Dask scheduler at {client}: {exc}; check the address "
                "(tcp://HOST:8786) and that the scheduler is running, or leave it out to run "
                "on this machine"
            ) from None
    if getattr(client, "status", "running") not in ("running", "connecting", "newly-created"):
        raise SweepError(f"the Dask client is {client.status}; give a connected Client")
    return client, None


class Sweep:
    """A running sweep: ``pause()``, ``resume()``, ``cancel()``, ``wait()``, ``status``,
    ``results()``. Made by :func:`sweep`, which returns it at once."""

    def __init__(
        self,
        definition: SweepDefinition,
        client: Any,
        cluster: Any,
        budget: BudgetSpec,
    ) -> None:
        self.root = definition.root
        self.runs: dict[str, Run] = {run.name: run for run in definition.runs}
        self.client = client
        self._cluster = cluster
        self._budget = budget
        self._session = uuid.uuid4().hex[:12]
        self._control_name = f"novelkit-sweep-{self._session}"
        self._cond = threading.Condition()
        self._state: JobState = S.QUEUED
        self._message = ""
        self._outstanding: dict[str, Any] = {}  # run name -> Future
        self._names: dict[Any, str] = {}  # a task's key -> its run
        self._budget_hit = False
        self._attempt = 0
        self._files = RunFiles(self.root)
        self._published = 0.0
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._collector: threading.Thread | None = None
        self._ledger: Ledger | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<Sweep {str(self.root)!r} {len(self.runs)} runs, {self._state.value}>"

    # -- running ------------------------------------------------------------------------------

    def _begin(self) -> None:
        from distributed import Variable

        self._word = Variable(self._control_name, client=self.client)
        self._word.set("run")
        first = next(iter(self.runs.values()))
        try:
            warm_up_workers(self.client, first.config)
        except Exception:  # a slow first run is better than no run
            log.warning("novelkit: could not warm up the sweep's workers", exc_info=True)
        self._files.scan()
        if self._budget.enabled:
            self._ledger = Ledger(self._budget, self.client)
        self._monitor = threading.Thread(target=self._watch, name="novelkit-sweep", daemon=True)
        with self._cond:
            self._submit_unfinished()
        self._monitor.start()

    def _spent(self) -> tuple[int, float]:
        records = self._files.records
        return (
            sum(int(records.get(n, {}).get("tokens") or 0) for n in self.runs),
            sum(float(records.get(n, {}).get("cost") or 0.0) for n in self.runs),
        )

    def _submit_unfinished(self) -> None:
        """Submit every run that has not succeeded; called with the condition held."""
        from distributed import as_completed

        self._files.scan()
        if self._ledger is not None:
            self._ledger.reset(*self._spent())
        self._attempt += 1
        self._budget_hit = False
        todo = [
            run
            for name, run in self.runs.items()
            if (self._files.records.get(name) or {}).get("state") != S.SUCCEEDED.value
        ]
        self._set_state(S.RUNNING, f"{len(todo)} of {len(self.runs)} runs to do")
        if not todo:
            self._finish()
            return
        futures = []
        for run in todo:
            future = self.client.submit(
                run_one,
                str(self.root),
                run.name,
                run.config,
                self._control_name,
                self._budget if self._budget.enabled else None,
                key=f"novelkit-run-{run.name}-{self._session}-{self._attempt}",
                pure=False,
                retries=2,
            )
            self._outstanding[run.name] = future
            self._names[future.key] = run.name
            futures.append(future)
        self._collector = threading.Thread(
            target=self._collect, args=(as_completed(futures, loop=self.client.loop),), daemon=True
        )
        self._collector.start()

    def _collect(self, finished: Any) -> None:
        for future in finished:
            try:
                self._settle(future)
            except Exception:  # one bad outcome must not leave the sweep running forever
                log.exception("novelkit: sweep could not record the outcome of %s", future.key)

    def _settle(self, future: Any) -> None:
        name = self._names.get(future.key)
        try:
            outcome = future.result()
        except Exception as exc:  # a task that failed on every try (e.g. KilledWorker)
            outcome = {
                "name": name,
                "state": S.FAILED.value,
                "error": f"{type(exc).__name__}: {exc}",
            }
            if name is not None:
                record = {**self._files.records.get(name, {}), **outcome}
                with contextlib.suppress(OSError):
                    write_json(run_file(self.root, name), record)
        with self._cond:
            if name is None or self._outstanding.get(name) is not future:
                return
            del self._outstanding[name]
            if not outcome.get("skipped") and "sweep budget" in str(outcome.get("message") or ""):
                self._budget_hit = True
                if self._state is S.RUNNING:  # the others stop before their next call too
                    self._word.set("pause")
                    self._set_state(S.PAUSING, str(outcome["message"]))
            if not self._outstanding:
                self._finish()

    def _finish(self) -> None:
        """Every submitted task is back: settle the sweep's state (condition held)."""
        self._files.scan()
        states = [(self._files.records.get(n) or {}).get("state") for n in self.runs]
        if self._state is S.CANCELLING:
            self._set_state(S.CANCELLED, "cancelled; nk.sweep(...) again continues it")
        elif self._state is S.PAUSING or self._budget_hit:
            self._set_state(S.PAUSED, self._message if self._budget_hit else "paused")
        elif all(s == S.SUCCEEDED.value for s in states):
            self._set_state(S.SUCCEEDED, f"all {len(states)} runs succeeded")
        elif any(s == S.FAILED.value for s in states):
            failed = sum(s == S.FAILED.value for s in states)
            self._set_state(S.FAILED, f"{failed} run(s) failed; resume() retries them")
        else:
            self._set_state(S.PAUSED, "some runs stopped before the end; resume() continues them")
        self._publish(force=True)

    def _set_state(self, state: JobState, message: str) -> None:
        self._state, self._message = state, message
        self._cond.notify_all()
        self._write_state()

    def _write_state(self, reply: dict[str, Any] | None = None) -> None:
        info = {
            **here(),
            "state": self._state.value,
            "message": self._message,
            "max_tokens": self._budget.max_tokens,
            "max_cost": self._budget.max_cost,
            "scheduler": getattr(self.client, "scheduler", None) and self.client.scheduler.address,
            "session": self._session,
        }
        previous = read_json(self.root / STATE_DIR / "state.json") or {}
        info["reply"] = reply if reply is not None else previous.get("reply")
        with contextlib.suppress(OSError):
            write_json(self.root / STATE_DIR / "state.json", info)

    def _watch(self) -> None:
        beat = time.monotonic()
        request_path = self.root / STATE_DIR / "control.json"
        while not self._stop.wait(MONITOR):
            try:
                request = read_json(request_path) if request_path.exists() else None
                if request is not None:
                    with contextlib.suppress(FileNotFoundError):
                        request_path.unlink()
                    self._answer(request)
                self._publish()
                if time.monotonic() - beat > 2.0:
                    beat = time.monotonic()
                    with self._cond:
                        self._write_state()
            except Exception:  # the monitor must outlive any one bad moment
                log.exception("novelkit: sweep monitor")

    def _answer(self, request: dict[str, Any]) -> None:
        action = str(request.get("action"))
        try:
            if action in ("pause", "pause-now"):
                result = self.pause(now=action == "pause-now")
            elif action == "resume":
                result = self.resume()
            elif action == "cancel":
                result = self.cancel()
            else:
                raise JobStateError(
                    f"unknown sweep action {action!r}", state=self._state, action=action
                )
            reply = {"id": request.get("id"), **result.to_dict()}
        except JobStateError as exc:
            reply = {"id": request.get("id"), "error": str(exc), "state": self._state.value}
        with self._cond:
            self._write_state(reply)

    def _publish(self, force: bool = False) -> None:
        changed = self._files.scan()
        now = time.monotonic()
        if (changed or force) and (force or now - self._published >= PUBLISH):
            self._published = now
            with contextlib.suppress(OSError):
                write_json(self.root / STATE_DIR / "status.json", self.status.to_dict())

    # -- control ------------------------------------------------------------------------------

    @property
    def state(self) -> JobState:
        return self._state

    def pause(self, now: bool = False) -> ControlResult:
        """No run starts a new call; in-flight calls finish and are saved (``now=True``: they
        are aborted and rerun on resume); then ``paused``."""
        with self._cond:
            if not _check("pause", self._state):
                return ControlResult(False, self._state, f"already {self._state.value}")
            self._word.set("pause-now" if now else "pause")
            self._set_state(S.PAUSING, "pausing: letting in-flight calls finish")
            if not self._outstanding:
                self._finish()
            return ControlResult(True, self._state, "pausing")

    def resume(
        self, *, max_cost: float | None = None, max_tokens: int | None = None
    ) -> ControlResult:
        """Continue every run that has not succeeded (from its saved calls); ``max_cost`` /
        ``max_tokens`` raise the sweep's budget first."""
        with self._cond:
            if not _check("resume", self._state):
                return ControlResult(False, self._state, "already running")
            if max_cost is not None or max_tokens is not None:
                self._budget = BudgetSpec(
                    self._budget.name,
                    max_tokens if max_tokens is not None else self._budget.max_tokens,
                    max_cost if max_cost is not None else self._budget.max_cost,
                )
                if self._ledger is None and self._budget.enabled:
                    self._ledger = Ledger(self._budget, self.client)
                elif self._ledger is not None:
                    self._ledger.spec = self._budget
            self._word.set("run")
            self._submit_unfinished()
            return ControlResult(True, self._state, "resumed")

    def cancel(self) -> ControlResult:
        """Abort in-flight calls and stop every run; finished work stays, and calling
        ``nk.sweep(...)`` again continues from it."""
        with self._cond:
            if not _check("cancel", self._state):
                return ControlResult(False, self._state, f"already {self._state.value}")
            self._word.set("cancel")
            self._set_state(S.CANCELLING, "cancelling: aborting in-flight calls")
            if not self._outstanding:
                self._finish()
            return ControlResult(True, self._state, "cancelling")

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the sweep stops (succeeded, failed, paused, cancelled); returns its
        state (the current one when ``timeout`` runs out)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._state.active, timeout)
            state = self._state
        if not state.active:
            self._publish(force=True)
        return state

    # -- reading ------------------------------------------------------------------------------

    @property
    def status(self) -> SweepStatus:
        """A row per run (state, progress, tokens, cost, wall time) and the sweep's state."""
        with self._cond:
            state, message = self._state, self._message
            outstanding = set(self._outstanding)
        records = self._files.records
        rows = []
        for name, run in self.runs.items():
            row = run_from(name, run.params, records.get(name))
            if name in outstanding and (row.state is None or not row.state.active):
                if row.state is not S.SUCCEEDED:  # submitted, not yet picked up by a worker
                    row = RunStatus(**{**row.__dict__, "state": S.QUEUED})
            rows.append(row)
        return SweepStatus(
            root=str(self.root),
            state=state,
            message=message,
            runs=tuple(rows),
            max_tokens=self._budget.max_tokens,
            max_cost=self._budget.max_cost,
        )

    def results(self) -> Any:
        """A DataFrame: a row per run with its parameters, its state and figures, and the
        figures of its scorecard (empty columns for runs without one yet)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Sweep.results() returns a pandas DataFrame; pip install 'novelkit[sweep]'"
            ) from None
        rows = []
        for run in self.status.runs:
            row: dict[str, Any] = {"run": run.name, **run.params}
            row.update(
                state=run.state.value if run.state is not None else "pending",
                tokens=run.tokens,
                cost=run.cost,
                wall_seconds=run.elapsed,
            )
            row.update(run_figures(self.root / run.name))
            rows.append(row)
        return pd.DataFrame(rows).set_index("run")

    def project(self, name: str) -> Any:
        """Open one run's project (e.g. to look at its artefacts or its own panel)."""
        import novelkit as nk

        if name not in self.runs:
            raise NovelkitError(
                f"the sweep has no run {name!r}; its runs: {', '.join(list(self.runs)[:5])}…"
            )
        return nk.open_project(self.root / name)

    def panel(self) -> Any:
        """A live SweepPanel of this sweep (needs ipywidgets)."""
        from ..widgets.sweep import SweepPanel

        return SweepPanel(self)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        try:
            return self.panel()._repr_mimebundle_(**kwargs)  # type: ignore[no-any-return]
        except ImportError:
            return {"text/plain": self.status.table()}

    def close(self) -> None:
        """Stop following the sweep; a cluster it started is shut down (runs still going are
        interrupted and resume on the next nk.sweep(...))."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            if self._state.active:
                with contextlib.suppress(Exception):
                    self._word.set("cancel")
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        self._publish(force=True)
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            with contextlib.suppress(Exception):
                self._cluster.close()

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sweep(
    root: str | os.PathLike[str],
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    base: Mapping[str, Any] | None = None,
    *,
    client: Any = None,
    workers: int | None = None,
    max_cost: float | None = None,
    max_tokens: int | None = None,
) -> Sweep:
    """Run one novel config over a grid of parameters on Dask; returns a :class:`Sweep` as soon
    as the runs are submitted (after starting a LocalCluster when no client is given).

    ``grid`` maps config keys to the values to try (every combination runs), or is a list of
    parameter dicts; ``base`` is the config they share. Each run is a project folder under
    ``root`` named from its parameters. ``client``: a ``distributed.Client`` or a scheduler
    address; by default a ``LocalCluster`` with ``workers`` processes (one job per worker).
    ``max_cost`` / ``max_tokens`` cap the whole sweep: it pauses before the call that would pass.
    Calling it again with the same arguments skips succeeded runs and resumes the others.

        s = nk.sweep("sweeps/temps", grid={"temperature": [0.6, 0.9]},
                     base={"premise": "A keeper finds a letter", "chapters": 3})
        s.wait(); s.results()
    """
    path = Path(root).resolve()
    runs = expand(grid, base)
    definition = SweepDefinition(path, dict(base or {}), runs)
    definition.check()
    state_info = read_json(path / STATE_DIR / "state.json") or {}
    if (
        state_info.get("state")
        and JobState(state_info["state"]).active
        and writer_alive(state_info)
    ):
        raise SweepError(
            f"{path} is being run by another process (pid {state_info.get('pid')} on "
            f"{state_info.get('host')}); pause or cancel it (novelkit sweep-status {path}) first"
        )
    if max_cost is not None and max_cost < 0 or max_tokens is not None and max_tokens < 1:
        raise SweepError("max_cost must be >= 0 and max_tokens >= 1")
    connected, cluster = _connect(client, workers)
    try:
        definition.write()
        handle = Sweep(
            definition,
            connected,
            cluster,
            BudgetSpec(f"novelkit-budget-{uuid.uuid4().hex[:12]}", max_tokens, max_cost),
        )
        handle._begin()
    except BaseException:
        if cluster is not None:
            connected.close()
            cluster.close()
        raise
    return handle


def control_sweep(
    root: str | os.PathLike[str], action: str, *, timeout: float = 5.0
) -> ControlResult:
    """Pause, resume or cancel a sweep driven by another process (the CLI and the sidecar)."""
    path = Path(root).resolve()
    info = read_json(path / STATE_DIR / "state.json")
    if not (path / "sweep.toml").exists() or info is None:
        raise SweepError(
            f"{path} holds no running sweep; start one with novelkit sweep {path} --grid grid.toml"
        )
    state = JobState(info["state"])
    if not writer_alive(info):
        raise JobStateError(
            f"the sweep in {path} is interrupted: the process that drove it is gone; run "
            f"novelkit sweep {path} --grid grid.toml (or nk.sweep with the same grid) to resume it",
            state=JobState.INTERRUPTED,
            action=action,
        )
    if action not in (*LEGAL, "pause-now"):
        raise SweepError(f"unknown sweep action {action!r}; use pause, resume or cancel")
    if not _check(action.removesuffix("-now"), state):
        return ControlResult(False, state, f"already {state.value}")
    request_id = uuid.uuid4().hex
    write_json(
        path / STATE_DIR / "control.json", {"action": action, "id": request_id, "at": time.time()}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_json(path / STATE_DIR / "state.json") or {}
        reply = info.get("reply") or {}
        if reply.get("id") == request_id:
            if "error" in reply:
                raise JobStateError(
                    str(reply["error"]), state=JobState(reply["state"]), action=action
                )
            return ControlResult(
                bool(reply["changed"]), JobState(reply["state"]), str(reply.get("message", ""))
            )
        time.sleep(0.05)
    raise SweepError(
        f"the process driving the sweep in {path} did not answer within {timeout:.0f} s"
    )
