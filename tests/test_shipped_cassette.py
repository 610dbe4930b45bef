"""The cassette shipped for the notebooks replays a whole novel with no backend at all."""

from __future__ import annotations

import json
from pathlib import Path

import novelkit as nk
from novelkit import JobState

ROOT = Path(__file__).resolve().parent.parent
CASSETTE = ROOT / "notebooks" / "cassettes" / "lighthouse.jsonl"
PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
CONFIG = {"chapters": 3, "words_per_chapter": 400, "seed": 1}


def test_shipped_cassette_says_who_recorded_it() -> None:
    meta = json.loads(CASSETTE.read_text().splitlines()[0])
    assert meta["type"] == "meta" and meta["backend"] == "offline" and meta["model"] == "offline"


def test_shipped_cassette_replays_the_whole_novel_identically(tmp_path: Path) -> None:
    """Fails when a prompt changed: re-record with `python scripts/record_cassette.py`."""
    replayed = nk.new_project(
        tmp_path / "replay",
        premise=PREMISE,
        backend="replay",
        backend_options={"cassette": str(CASSETTE)},
        **CONFIG,  # type: ignore[arg-type]
    )
    live = nk.new_project(tmp_path / "live", premise=PREMISE, **CONFIG)  # type: ignore[arg-type]
    try:
        assert replayed.start().wait(60) is JobState.SUCCEEDED, replayed.status().error
        assert live.start().wait(60) is JobState.SUCCEEDED
        for path in sorted((live.root / "artefacts").rglob("*")):
            if path.is_file():
                twin = replayed.root / "artefacts" / path.relative_to(live.root / "artefacts")
                assert twin.read_bytes() == path.read_bytes(), path.name
    finally:
        replayed.close()
        live.close()
