"""The sweep on disk, readable by any process that sees ROOT:

ROOT/sweep.toml              the sweep's definition: base config, runs and their parameters
ROOT/<run>/                  one ordinary novelkit project per run
ROOT/.sweep/state.json       the sweep's state, written by the process that drives it
ROOT/.sweep/status.json      every run's latest figures in one file (the driver, ~2/s)
ROOT/.sweep/runs/<run>.json  one run's latest figures (the worker that runs it)
ROOT/.sweep/control.json     a pause/resume/cancel request from another process
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from .._config import dump_toml
from .._errors import ConfigError, ProjectError
from ._grid import Run

__all__ = [
    "SweepDefinition",
    "read_json",
    "write_json",
]

SWEEP_FILE = "sweep.toml"
STATE_DIR = ".sweep"
FORMAT = 1


def write_json(path: Path, data: Any, *, durable: bool = False) -> None:
    """Replace ``path`` atomically: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path: Path) -> Any:
    """The file's JSON, or None when it is missing or (briefly, on some filesystems) torn."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


class SweepDefinition:
    """ROOT/sweep.toml: what the sweep is, so a later call can tell the same sweep from another."""

    def __init__(self, root: Path, base: dict[str, Any], runs: list[Run]) -> None:
        self.root = root
        self.base = base
        self.runs = runs

    @property
    def path(self) -> Path:
        return self.root / SWEEP_FILE

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def _data(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "base": self.base,
            "runs": {run.name: {"params": _jsonable(run.params)} for run in self.runs},
        }

    def check(self) -> bool:
        """Check that ROOT is free for this sweep or already holds it; writes nothing.

        Returns True when the sweep is already recorded there (a re-run). Raises ProjectError
        when ROOT holds anything else.
        """
        root = self.root
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} is a file; give a folder for the sweep's runs")
        if (root / "novel.toml").exists():
            raise ProjectError(
                f"{root} is itself a novelkit project; give the sweep a folder of its own"
            )
        if self.path.exists():
            recorded = load_definition(root)
            if recorded != self._data():
                raise ProjectError(_difference(root, recorded, self._data()))
            return True
        names = {run.name for run in self.runs}
        strangers = (
            sorted(
                p.name
                for p in root.iterdir()
                if (p / "novel.toml").exists() and p.name not in names
            )
            if root.is_dir()
            else []
        )
        if strangers:
            raise ProjectError(
                f"{root} already holds novelkit projects that are not runs of this sweep "
                f"({', '.join(strangers[:5])}{'…' if len(strangers) > 5 else ''}); "
                "give the sweep an empty folder or the one it was started in"
            )
        return False

    def write(self) -> None:
        """Record the sweep in ROOT/sweep.toml (once: a re-run finds it there)."""
        if self.path.exists():
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            text = "# written by novelkit.sweep; each run's folder is named from its params\n"
            data = (text + dump_toml(self._data())).encode("utf-8")
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".sweep.toml.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise ProjectError(
                f"cannot write the sweep to {self.root}: {exc.strerror or exc}"
            ) from None


def load_definition(root: Path) -> dict[str, Any]:
    import tomllib

    path = root / SWEEP_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProjectError(
            f"{root} holds no sweep ({SWEEP_FILE} is missing); start one with novelkit sweep "
            "ROOT --grid grid.toml or nk.sweep(root, grid=...)"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from None
    data.setdefault("base", {})
    data.setdefault("runs", {})
    return data


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _difference(root: Path, old: dict[str, Any], new: dict[str, Any]) -> str:
    what = []
    if old.get("base") != new["base"]:
        what.append("its base config differs")
    gone = sorted(set(old.get("runs", {})) - set(new["runs"]))
    added = sorted(set(new["runs"]) - set(old.get("runs", {})))
    if added:
        what.append(f"{len(added)} run(s) are new (e.g. {added[0]})")
    if gone:
        what.append(f"{len(gone)} recorded run(s) are missing (e.g. {gone[0]})")
    return (
        f"{root} holds another sweep ({'; '.join(what) or 'its definition differs'}); nothing "
        "was changed. Give the new sweep its own folder, or call it with the same grid and base "
        f"as {root / SWEEP_FILE} to resume that one"
    )


def here() -> dict[str, Any]:
    """Who is writing: enough for another process to tell whether the writer is alive."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "updated": time.time()}


def writer_alive(info: dict[str, Any], *, stale_after: float = 10.0) -> bool:
    """On this host: is the process there? Elsewhere: did it write in the last ``stale_after`` s?"""
    if info.get("host") == socket.gethostname():
        try:
            os.kill(int(info.get("pid", 0)), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, OverflowError):
            return True
        return True
    return time.time() - float(info.get("updated", 0.0)) < stale_after
