"""Optional material a stage carries when the project has it: the voice profile, and the
bible of the book before (a sequel). Read by the draft, revision and continuity stages."""

from __future__ import annotations

import json
from typing import Any

from .._runner import UnitContext

__all__ = ["SERIES", "VOICE", "optional_material"]

VOICE = "00-voice.json"
SERIES = "00-series.json"
_KEYS = {VOICE: "voice", SERIES: "series"}


def optional_material(ctx: UnitContext, paths: tuple[str, ...]) -> dict[str, Any]:
    """Context entries for those of ``paths`` that exist (a staged file counts)."""
    out: dict[str, Any] = {}
    for relative in paths:
        path = ctx.paths[relative]
        staged = ctx.unsaved.get(path)
        try:
            data = staged.data if staged is not None else path.read_bytes()
        except FileNotFoundError:
            continue
        try:
            value = json.loads(data)
        except json.JSONDecodeError:
            continue  # a broken file is reported where it is written, not in every prompt
        if relative == VOICE and isinstance(value, dict):
            features = value.get("features", {})
            value = {"description": value.get("description", ""), "features": features}
        out[_KEYS.get(relative, relative)] = value
    return out
