"""The figures ``Sweep.results()`` shows for one run: read from the run's scorecard.

This is the one place that knows where a run's scorecard lives and how to flatten it into
columns; point it at a richer scorecard and every sweep view follows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["run_figures"]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        column = f"{prefix}{key}"
        if isinstance(value, bool):
            out[column] = value
        elif isinstance(value, int | float | str):
            out[column] = value
        elif isinstance(value, dict):
            out.update(_flatten(value, f"{column}."))
        elif isinstance(value, list):
            out[f"{column}_count"] = len(value)
            flags = [item.get("within_tolerance") for item in value if isinstance(item, dict)]
            if flags and all(isinstance(f, bool) for f in flags):
                out[f"{column}_within_tolerance"] = sum(bool(f) for f in flags) / len(flags)
    return out


def run_figures(run_dir: str | Path) -> dict[str, Any]:
    """The scorecard figures of the project in ``run_dir`` as flat columns (empty before its
    scorecard exists): numbers as they are, lists as counts, nested tables as dotted keys."""
    path = Path(run_dir) / "artefacts" / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return _flatten(data) if isinstance(data, dict) else {}
