"""The writer lock without ``fcntl``, as on Windows: the project imports, locks and runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import PREMISE

# Runs in a fresh interpreter where ``import fcntl`` fails, as it does on Windows. ``msvcrt`` is
# stood in for by a module with the same ``locking()`` call, which locks per open file as
# Windows does (with the real flock, taken before fcntl was hidden); the standard modules that
# take the presence of msvcrt to mean Windows are imported before it appears.
SCRIPT = textwrap.dedent(
    """
    import sys, types
    import fcntl as real
    import asyncio, subprocess  # noqa: these look for msvcrt to know they are on Windows

    sys.modules["fcntl"] = None  # from now on ``import fcntl`` raises ImportError
    msvcrt = types.ModuleType("msvcrt")
    msvcrt.LK_UNLCK, msvcrt.LK_NBLCK = 0, 2
    calls = []

    def locking(fd, mode, nbytes):
        calls.append((mode, nbytes))
        if mode == msvcrt.LK_NBLCK:
            try:
                real.flock(fd, real.LOCK_EX | real.LOCK_NB)
            except BlockingIOError:
                raise PermissionError(13, "Permission denied") from None
        else:
            real.flock(fd, real.LOCK_UN)

    msvcrt.locking = locking
    sys.modules["msvcrt"] = msvcrt

    import novelkit as nk

    try:
        import fcntl
    except ImportError:
        pass
    else:
        raise SystemExit("fcntl is still importable")

    folder, premise = sys.argv[1], sys.argv[2]
    project = nk.new_project(folder, premise=premise, chapters=2, words_per_chapter=200)
    print("premise:", project.run_stage("premise").result(60))
    other = nk.open_project(folder)
    project.writer.take()  # as a run does
    print("held elsewhere while taken:", other.writer.held_elsewhere())
    try:
        other.writer.take()
    except nk.ProjectLockedError as exc:
        print("second writer:", exc)
    project.writer.drop()
    print("held elsewhere after:", other.writer.held_elsewhere())
    print("lock calls:", sorted({mode for mode, _ in calls}))
    other.close()
    project.close()
    """
)


def test_a_project_runs_and_locks_without_fcntl(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "novel"), PREMISE],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "premise: succeeded" in out, out
    assert "held elsewhere while taken: True" in out, out
    assert "second writer:" in out and "being written by another process" in out, out
    assert "held elsewhere after: False" in out, out
    assert "lock calls: [0, 2]" in out, out  # msvcrt.locking took and dropped the lock
