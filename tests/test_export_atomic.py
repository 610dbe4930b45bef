from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _manuscripts import normal_manuscript

import novelkit.export.text
from novelkit.export import Manuscript, export_manuscript

ROOT = Path(__file__).resolve().parents[1]


def test_a_failing_export_keeps_the_previous_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = export_manuscript(normal_manuscript(), "txt", tmp_path / "book.txt")
    before = target.read_bytes()
    real_write = novelkit.export.text.write

    def half_then_fail(manuscript: Manuscript, path: Path, **options: Any) -> None:
        real_write(manuscript, path, **options)
        with open(path, "r+b") as handle:
            handle.truncate(10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(novelkit.export.text, "write", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        export_manuscript(normal_manuscript(chapters=1), "txt", target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.txt"]


@pytest.mark.slow
def test_a_killed_export_keeps_the_previous_file(tmp_path: Path) -> None:
    target = export_manuscript(normal_manuscript(), "docx", tmp_path / "book.docx")
    before = target.read_bytes()
    # The child writes the whole new file to its temp path, says so, then hangs before the rename.
    child = textwrap.dedent(
        f"""
        import sys, time
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
        import novelkit.export.docx as docx
        from _manuscripts import prose_manuscript
        from novelkit.export import export_manuscript
        real = docx.write
        def write(manuscript, path, **options):
            real(manuscript, path, **options)
            print("written", flush=True)
            time.sleep(60)
        docx.write = write
        export_manuscript(prose_manuscript(3, 2000), "docx", {str(target)!r})
        """
    )
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "written"
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(temps) == 1 and temps[0].stat().st_size > 0  # it really was mid-export
        assert temps[0].name.startswith(".book.docx.")  # a leftover stays hidden
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    # A later export succeeds over the same path.
    export_manuscript(normal_manuscript(chapters=1), "docx", target)
    assert target.read_bytes() != before
