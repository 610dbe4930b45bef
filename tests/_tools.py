"""External tools the tests use: in CI a missing one fails the test, locally it skips it."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from typing import Any

import pytest

IN_CI = os.environ.get("CI") == "true"

STAGE_NAMES = [
    "premise",
    "world",
    "characters",
    "structure",
    "chapters",
    "scenes",
    "draft",
    "continuity",
    "revision",
    "polish",
    "metadata",
    "assemble",
]
"""The twelve stages in pipeline order, as a user reads them in README.md."""


def require_tool(name: str) -> str:
    """The tool's path; in CI a missing tool fails the test, locally it skips it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (scripts/install installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


class RecordingComm:
    """Stands in for the kernel's comm: keeps every message instead of sending it."""

    kernel = "Truthy"

    def __init__(self, log: list[tuple[float, str, dict[str, Any]]]) -> None:
        self.comm_id = uuid.uuid4().hex
        self._log = log

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send(self, data: dict[str, Any] | None = None, buffers: Any = None, **kwargs: Any) -> None:
        self._log.append((time.monotonic(), self.comm_id, data or {}))
