"""Record the small cassette shipped for the notebooks (notebooks/cassettes/lighthouse.jsonl).

Run it again whenever a stage's prompt or material changes (tests/test_shipped_cassette.py fails
when the cassette no longer covers every request). It records the offline backend, and the
cassette's metadata says so: a cassette recorded against a real model drops in the same way.

    python scripts/record_cassette.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import novelkit as nk

ROOT = Path(__file__).resolve().parent.parent
CASSETTE = ROOT / "notebooks" / "cassettes" / "lighthouse.jsonl"
PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
CONFIG = {"chapters": 3, "words_per_chapter": 400, "seed": 1}


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        project = nk.new_project(
            Path(folder) / "lighthouse", premise=PREMISE, backend_options={"record": True}, **CONFIG
        )  # type: ignore[arg-type]
        state = project.start().wait()
        project.close()
        if state is not nk.JobState.SUCCEEDED:
            print(f"recording failed: {state}", file=sys.stderr)
            return 1
        CASSETTE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(project.root / "cassette.jsonl", CASSETTE)
    print(f"wrote {CASSETTE} ({CASSETTE.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
