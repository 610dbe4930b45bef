"""The projects under the served root: one cached Project per folder, one status at a time."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from .._project import CONFIG, Project, open_project
from .errors import ApiError

__all__ = ["ProjectRegistry", "StatusCache"]

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


class ProjectRegistry:
    """Project folders under ``root``; ``projects`` handed in (e.g. from a notebook) are reused."""

    def __init__(self, root: Path, projects: dict[str, Project] | None = None) -> None:
        self.root = root.resolve()
        self._injected = dict(projects or {})
        self._opened: dict[str, Project] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"<ProjectRegistry {str(self.root)!r} {len(self._injected) + len(self._opened)} open>"
        )

    def _folder(self, project_id: str) -> Path | None:
        if not _VALID_ID.match(project_id) or ".." in project_id:
            return None
        folder = self.root / project_id
        if folder.parent != self.root or not (folder / CONFIG).is_file():
            return None
        return folder

    def ids(self) -> list[str]:
        found = set(self._injected)
        try:
            for child in self.root.iterdir():
                if self._folder(child.name) is not None:
                    found.add(child.name)
        except OSError as exc:
            log.warning("novelkit sidecar: cannot list %s: %s", self.root, exc)
        return sorted(found)

    def cached(self, project_id: str) -> Project | None:
        return self._injected.get(project_id) or self._opened.get(project_id)

    def get(self, project_id: str) -> Project:
        """The project, opened once; 404 for anything that is not a project folder under root."""
        if project_id in self._injected:
            return self._injected[project_id]
        with self._lock:
            project = self._opened.get(project_id)
            if project is not None:
                return project
            folder = self._folder(project_id)
            if folder is None:
                raise not_found(project_id)
            project = open_project(folder)
            self._opened[project_id] = project
            return project

    def close(self) -> None:
        """Pause jobs this server started (resumable later), then close what it opened."""
        with self._lock:
            opened, self._opened = list(self._opened.values()), {}
        for project in opened:
            job = project.job
            try:
                if job is not None and job.local:
                    if job.state.active:
                        job.pause(now=True)
                    job.wait(10)  # also joins a worker thread that is just finishing
            except Exception:
                log.exception("novelkit sidecar: could not pause the job of %s", project.root.name)
            project.close()


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
        self._cached[id(project)] = (now, status)
        return status

    def forget(self, project: Project) -> None:
        self._cached.pop(id(project), None)


def _status(project: Project) -> dict[str, Any]:
    status: dict[str, Any] = project.status().to_dict()
    return status
