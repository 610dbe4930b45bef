"""The exception tree of novelkit.

Every error says what was wrong and how to fix it.

    NovelkitError
    ├── ConfigError                 novel.toml or a keyword argument has a bad value
    ├── ProjectError                the project folder is missing, unwritable or not a project
    │   └── ProjectLockedError      another process is running a job on this project
    ├── ArtefactError               an artefact file is missing or no longer validates
    ├── PipelineError               unknown stage, missing upstream, bad dependency graph
    ├── JobStateError               an illegal job transition (HTTP 409)
    ├── BackendError                the language model backend failed
    │   ├── BackendConfigError      wrong key, model or URL: fails fast, not retried
    │   ├── TransientBackendError   rate limit, 5xx, timeout, dropped stream: retried
    │   └── ReplayMissError         a cassette has no response for this request
    ├── BudgetExceededError         the next call would pass max_cost / max_tokens
    ├── ExportError                 an export could not be written
    └── ManuscriptError             a file to import (or a cast, outline, world) cannot be read
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtefactError",
    "BackendConfigError",
    "BackendError",
    "BudgetExceededError",
    "ConfigError",
    "ExportError",
    "JobStateError",
    "ManuscriptError",
    "NovelkitError",
    "PipelineError",
    "ProjectError",
    "ProjectLockedError",
    "ReplayMissError",
    "TransientBackendError",
]


class NovelkitError(Exception):
    """Base class of every error novelkit raises on purpose."""


class ConfigError(NovelkitError, ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""


class ProjectError(NovelkitError):
    """The project folder cannot be used as asked."""


class ProjectLockedError(ProjectError):
    """Another process holds the project's writer lock."""


class ArtefactError(NovelkitError):
    """An artefact is missing or does not validate."""


class PipelineError(NovelkitError, ValueError):
    """A stage name, unit or dependency is wrong."""


class JobStateError(NovelkitError):
    """A control request is illegal in the job's current state."""

    def __init__(self, message: str, *, state: Any = None, action: str = "") -> None:
        super().__init__(message)
        self.state = state
        self.action = action


class BackendError(NovelkitError):
    """The language-model backend failed."""


class BackendConfigError(BackendError):
    """Authentication, model name or URL is wrong; retrying will not help."""


class TransientBackendError(BackendError):
    """A failure worth retrying (429, 5xx, timeout, dropped stream)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ReplayMissError(BackendError):
    """The replay cassette has no response for a request."""


class JobFailedError(NovelkitError):
    """A job ended ``failed``: raised by ``Job.result()`` and ``wait(raise_on_failure=True)``.

    ``error`` is the job's error message; when this process ran the job, the exception that
    failed it is the ``__cause__``. Fix the problem, then ``job.resume()``.
    """

    def __init__(self, message: str, *, job_id: str = "", error: str = "") -> None:
        super().__init__(message)
        self.job_id = job_id
        self.error = error


class BudgetExceededError(NovelkitError):
    """The next call would exceed the configured budget."""


class ExportError(NovelkitError):
    """An export could not be produced."""


class ManuscriptError(NovelkitError, ValueError):
    """A manuscript, cast, outline or world document to import cannot be read as given."""


def excerpt(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, marked when cut: errors never echo a 1 MB input."""
    shown = repr(value)
    if len(shown) <= limit:
        return shown
    size = (
        f"{len(value)} characters" if isinstance(value, str) else f"{len(shown)} characters as text"
    )
    return f"{shown[:limit]}… [cut; {size}]"
