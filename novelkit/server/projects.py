"""The projects under the served root: one cached Project per folder, one status at a time."""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .._config import NovelConfig, load_config
from .._project import CONFIG, Project, open_project
from .._status import JobState
from .._store import READERS, ProjectLock
from .errors import ApiError

__all__ = ["ProjectRegistry", "StatusCache", "default_max_open"]

log = logging.getLogger("novelkit.server")

# a project id is one folder name: no separators, no dot-files, no control characters
_VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$")


def not_found(project_id: str) -> ApiError:
    shown = project_id if _VALID_ID.match(project_id) else "?"
    return ApiError(
        404,
        "project_not_found",
        f"no project {shown!r} under the served root; GET /api/v2/projects lists them",
    )


# descriptors one open project holds: the writer and READERS reader connections (database,
# WAL, shared memory: 3 each) and the lock file
FDS_PER_PROJECT = 3 * (1 + READERS) + 1
# descriptors kept free for sockets, log files, exports and scans of the artefact folders
FDS_RESERVED = 256


def default_max_open() -> int:
    """Open projects kept at once: 64, fewer when the descriptor limit would not hold them."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 64
    if soft == resource.RLIM_INFINITY:
        return 64
    return max(4, min(64, (soft - FDS_RESERVED) // FDS_PER_PROJECT))


# how long a request waits for a slot among max_open before it is answered 503
SLOT_WAIT = 0.5


def busy(message: str) -> ApiError:
    return ApiError(503, "busy", message, headers={"Retry-After": "1"})


class ProjectRegistry:
    """Project folders under ``root``; ``projects`` handed in (e.g. from a notebook) are reused.

    At most ``max_open`` projects are open at once (least recently used first to close), so
    descriptors and memory are bounded by configuration, not by the number of folders. A
    project in use (a lease: a request or WebSocket on it) or running a job here stays open;
    when every slot is such a project, a new one answers 503 with ``Retry-After``.
    """

    def __init__(
        self,
        root: Path,
        projects: dict[str, Project] | None = None,
        max_open: int | None = None,
        idle_close: float = 60.0,
    ) -> None:
        self.root = root.resolve()
        self.max_open = max_open or default_max_open()
        self.idle_close = idle_close
        self._used: dict[str, float] = {}
        self._sweeper: threading.Thread | None = None
        self._closing = threading.Event()
        self._injected = dict(projects or {})
        self._opened: OrderedDict[str, Project] = OrderedDict()
        self._leases: dict[str, int] = {}
        self._lock = threading.Lock()  # the table; opening happens outside it
        self._freed = threading.Condition(self._lock)  # a lease ended: a slot may be free
        self._opening: dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return (
            f"<ProjectRegistry {str(self.root)!r} {len(self._injected) + len(self._opened)} open>"
        )

    def _folder(self, project_id: str) -> Path | None:
        """The project's folder, if its resolved path is directly under the resolved root
        (a symlink out of the root is no project of this server)."""
        if not _VALID_ID.match(project_id) or ".." in project_id:
            return None
        folder = self.root / project_id
        try:
            resolved = folder.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if resolved != folder:  # a symlink: out of the root, or a second name for a sibling
            return None
        if not (resolved / CONFIG).is_file() or (resolved / CONFIG).resolve().parent != resolved:
            return None
        return resolved

    def ids(self) -> list[str]:
        found = set(self._injected)
        try:
            for child in self.root.iterdir():
                if self._folder(child.name) is not None:
                    found.add(child.name)
        except OSError as exc:
            log.warning("novelkit sidecar: cannot list the served root: %s", exc.strerror or exc)
        return sorted(found)

    def cached(self, project_id: str) -> Project | None:
        return self._injected.get(project_id) or self._opened.get(project_id)

    def get(self, project_id: str) -> Project:
        """The project, opened once; 404 for anything that is not a project folder under root."""
        project = self.acquire(project_id)
        self.release(project_id)
        return project

    def acquire(self, project_id: str) -> Project:
        """The project, held open until :meth:`release` (blocking: may open it)."""
        if project_id in self._injected:
            return self._injected[project_id]
        with self._lock:
            project = self._opened.get(project_id)
            if project is not None:
                self._opened.move_to_end(project_id)
                self._leases[project_id] = self._leases.get(project_id, 0) + 1
                return project
            opening = self._opening.setdefault(project_id, threading.Lock())
        with opening:  # one opening per project; others wait for it rather than open twice
            deadline = time.monotonic() + SLOT_WAIT
            with self._lock:
                while True:
                    project = self._opened.get(project_id)
                    if project is not None:
                        self._leases[project_id] = self._leases.get(project_id, 0) + 1
                        return project
                    try:
                        victims = self._make_room()
                        break
                    except ApiError:  # every slot in use: wait a moment for one to be freed
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise
                        self._freed.wait(left)
            for victim in victims:
                _close(victim)
            folder = self._folder(project_id)
            if folder is None:
                raise not_found(project_id)
            project = open_project(folder)
            with self._lock:
                self._opened[project_id] = project
                self._leases[project_id] = self._leases.get(project_id, 0) + 1
                self._opening.pop(project_id, None)
                if self._sweeper is None and not self._closing.is_set():
                    self._sweeper = threading.Thread(
                        target=self._sweep, name="novelkit-sidecar-idle", daemon=True
                    )
                    self._sweeper.start()
            return project

    def _sweep(self) -> None:
        """Close projects nobody used for ``idle_close`` seconds: descriptors go back to the
        idle baseline after a burst of requests."""
        while not self._closing.wait(max(0.05, self.idle_close / 2)):
            now = time.monotonic()
            with self._lock:
                idle = [
                    project_id
                    for project_id, project in self._opened.items()
                    if not self._leases.get(project_id)
                    and not project.writer.held
                    and now - self._used.get(project_id, 0.0) >= self.idle_close
                ]
                victims = [self._opened.pop(project_id) for project_id in idle]
            for victim in victims:
                _close(victim)

    def try_acquire(self, project_id: str) -> Project | None:
        """The project if it is open (a lease taken, no blocking), else None."""
        if project_id in self._injected:
            return self._injected[project_id]
        with self._lock:
            project = self._opened.get(project_id)
            if project is not None:
                self._opened.move_to_end(project_id)
                self._leases[project_id] = self._leases.get(project_id, 0) + 1
            return project

    def release(self, project_id: str) -> None:
        if project_id in self._injected:
            return
        with self._lock:
            self._used[project_id] = time.monotonic()
            left = self._leases.get(project_id, 0) - 1
            if left > 0:
                self._leases[project_id] = left
            else:
                self._leases.pop(project_id, None)
                self._freed.notify()

    def _make_room(self) -> list[Project]:
        """Under the lock: take the least recently used idle projects out to leave one slot."""
        victims: list[Project] = []
        for project_id in list(self._opened):
            if len(self._opened) - len(victims) < self.max_open:
                break
            project = self._opened[project_id]
            if self._leases.get(project_id) or project.writer.held:  # in use, or writing here
                continue
            victims.append(self._opened.pop(project_id))
        if len(self._opened) >= self.max_open:
            for victim in victims:  # nothing closed after all: put them back
                self._opened[victim.root.name] = victim  # root.name is the id (no symlinks)
            raise busy(
                f"{self.max_open} projects are in use at once (the server's limit); "
                "retry in a moment"
            )
        return victims

    def summary(self, project_id: str) -> tuple[NovelConfig, str | None] | None:
        """(config, last job's state) without opening the project (no slot, no recovery):
        listing 300 folders must not open 300 stores. None for a folder that is not one."""
        project = self.try_acquire(project_id)
        if project is not None:
            try:
                last = project.store.last_job()
                return project.config, (last["state"] if last else None)
            finally:
                self.release(project_id)
        folder = self._folder(project_id)
        if folder is None:
            return None
        config = load_config(folder / CONFIG)
        state = _peek_state(folder / ".novelkit")
        if state is not None and JobState(state).active:
            if not ProjectLock(folder / ".novelkit" / "lock").held_elsewhere():
                state = JobState.INTERRUPTED.value  # what opening it will record
        return config, state

    def close(self) -> None:
        """Pause jobs this server started (resumable later), then close what it opened."""
        self._closing.set()
        with self._lock:
            opened, self._opened = list(self._opened.values()), OrderedDict()
            self._leases.clear()
        for project in opened:
            job = project.job
            try:
                if job is not None and job.local:
                    if job.state.active:
                        job.pause(now=True)
                    job.wait(10)  # also joins a worker thread that is just finishing
            except Exception:
                log.exception("novelkit sidecar: could not pause the job of %s", project.root.name)
            _close(project)


def _peek_state(state_dir: Path) -> str | None:
    """The last job's state, read through a short-lived read-only connection."""
    path = state_dir / "state.db"
    if not path.is_file():
        return None
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        row = db.execute(
            "SELECT state FROM jobs ORDER BY created DESC, rowid DESC LIMIT 1"
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return str(row[0]) if row else None


def _close(project: Project) -> None:
    try:
        project.close()
    except Exception as exc:
        log.warning("novelkit sidecar: could not close %s: %s", project.root.name, exc)


class StatusCache:
    """A project's status, computed at most once per ``max_age`` seconds however many ask.

    ``project.status()`` is cheap (a few SQLite reads), so it runs on the event loop: a thread
    hop per request would cost more than the work under a busy GIL.
    """

    def __init__(self, max_age: float = 0.01) -> None:
        self.max_age = max_age
        self._cached: dict[int, tuple[float, dict[str, Any]]] = {}

    async def get(self, project: Project, *, fresh: bool = False) -> dict[str, Any]:
        """``fresh=True`` after an event: a status computed before it may not show it."""
        now = time.monotonic()
        hit = self._cached.get(id(project))
        if not fresh and hit is not None and now - hit[0] < self.max_age:
            return hit[1]
        status = _status(project)
        if len(self._cached) > 1000:  # projects come and go (closed when idle): keep it small
            self._cached = {k: v for k, v in self._cached.items() if now - v[0] < self.max_age}
        self._cached[id(project)] = (now, status)
        return status

    def forget(self, project: Project) -> None:
        self._cached.pop(id(project), None)


def _status(project: Project) -> dict[str, Any]:
    status: dict[str, Any] = project.status().to_dict()
    return status
