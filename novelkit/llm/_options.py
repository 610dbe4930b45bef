"""Checking a backend's ``backend_options``."""

from __future__ import annotations

import difflib
from typing import Any

from .._errors import ConfigError

__all__ = ["check_options"]


def check_options(
    options: dict[str, Any], allowed: dict[str, type | tuple[type, ...]], backend: str
) -> None:
    """Reject unknown or mistyped ``backend_options`` with a did-you-mean hint."""
    for key, value in options.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"backend_options.{key} is not an option of the {backend} backend{hint} "
                f"(valid: {', '.join(sorted(allowed))})"
            )
        expected = allowed[key]
        if not isinstance(value, expected) or (
            isinstance(value, bool) and bool not in _as_tuple(expected)
        ):
            names = "/".join(t.__name__ for t in _as_tuple(expected))
            raise ConfigError(f"backend_options.{key} = {value!r} is invalid: expected {names}")


def _as_tuple(value: type | tuple[type, ...]) -> tuple[type, ...]:
    return value if isinstance(value, tuple) else (value,)
