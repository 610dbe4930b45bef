"""What a sweep runs: the grid expanded into runs, each run's name, and grid.toml.

A run's parameters are config keys (``temperature``) or dotted keys into a config table
(``backend_options.latency``, ``stages.draft.temperature``); its folder name is derived from
them alone, so the same parameters always land in the same folder.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._config import NovelConfig, validate_config
from .._errors import ConfigError

__all__ = ["Run", "expand", "load_grid_file", "run_name"]

_TABLES = ("backend_options", "stages", "prices")  # dict fields a dotted key may reach into


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its folder name, its parameters and its full config."""

    name: str
    params: dict[str, Any]
    config: dict[str, Any]


def _fields() -> list[str]:
    return sorted(NovelConfig.model_fields)


def _check_key(key: str) -> None:
    head = key.split(".", 1)[0]
    valid = _fields()
    if head in valid and ("." not in key or head in _TABLES):
        return
    close = difflib.get_close_matches(head, valid, n=1, cutoff=0.5)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    if head in valid:
        raise ConfigError(
            f"sweep grid key {key!r}: {head!r} is not a table; only "
            f"{', '.join(_TABLES)} take a dotted key"
        )
    raise ConfigError(
        f"sweep grid key {key!r} is not a config field{hint} Valid keys: {', '.join(valid)} "
        f"(and dotted keys into {', '.join(_TABLES)}, e.g. backend_options.latency)"
    )


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    target = config
    for part in parts[:-1]:
        inner = target.get(part)
        inner = dict(inner) if isinstance(inner, Mapping) else {}
        target[part] = inner
        target = inner
    target[parts[-1]] = value


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.")[:24] or "x"


def run_name(params: Mapping[str, Any]) -> str:
    """The folder name of the run with ``params``: readable, and the same on every call.

    >>> run_name({"temperature": 0.7, "seed": 2})
    'seed-2_temperature-0.7-...'
    """
    canonical = json.dumps(dict(params), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:8]
    readable = "_".join(
        f"{_slug(key.rsplit('.', 1)[-1])}-{_slug(params[key])}" for key in sorted(params)
    )
    return f"{readable[:80]}-{digest}" if readable else f"run-{digest}"


def expand(
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    base: Mapping[str, Any] | None = None,
) -> list[Run]:
    """The runs of ``grid`` (a mapping of key → values, or a list of parameter dicts) over
    ``base``; every run's config is validated before anything is written."""
    base = dict(base or {})
    for key in base:
        _check_key(key)
    combos: list[dict[str, Any]]
    if isinstance(grid, Mapping):
        if not grid:
            raise ConfigError(
                "the sweep grid is empty; give at least one key with a list of values, "
                "e.g. grid={'temperature': [0.6, 0.9]}"
            )
        keys = list(grid)
        values: list[list[Any]] = []
        for key in keys:
            _check_key(key)
            options = grid[key]
            if isinstance(options, str | bytes) or not isinstance(options, Sequence):
                raise ConfigError(
                    f"sweep grid key {key!r} needs a list of values, not {options!r}; "
                    f"write {key!r}: [{options!r}]"
                )
            if not options:
                raise ConfigError(f"sweep grid key {key!r} has an empty list of values")
            values.append(list(options))
        combos = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    else:
        combos = []
        for i, item in enumerate(grid):
            if not isinstance(item, Mapping):
                raise ConfigError(
                    f"sweep run {i} is {item!r}; each run must be a dict of config keys"
                )
            for key in item:
                _check_key(key)
            combos.append(dict(item))
        if not combos:
            raise ConfigError(
                "the sweep has no runs; give a grid dict or a non-empty list of dicts"
            )
    runs: dict[str, Run] = {}
    for params in combos:
        config = json.loads(json.dumps(base))
        for key, value in params.items():
            _set(config, key, value)
        name = run_name(params)
        if name in runs:
            raise ConfigError(f"the sweep lists the run {params!r} twice; list each run once")
        if "premise" not in config:
            raise ConfigError(
                "the sweep has no premise; put premise=... in base (or grid.toml's top level) "
                "or sweep over 'premise'"
            )
        validate_config(config, where=f"sweep run {name}")
        runs[name] = Run(name, params, config)
    return list(runs.values())


def load_grid_file(path: Path) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, Any]]:
    """``grid.toml``: top-level keys are the base config, ``[grid]`` the values to sweep,
    ``[sweep]`` the sweep's own settings (max_cost, max_tokens). Returns (base, grid, sweep)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; write a grid.toml (see the README)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    grid = data.pop("grid", None)
    settings = data.pop("sweep", {})
    if not isinstance(grid, dict):
        raise ConfigError(
            f"{path} has no [grid] table; add one, e.g. [grid] temperature = [0.6, 0.9]"
        )
    if not isinstance(settings, dict) or set(settings) - {"max_cost", "max_tokens"}:
        raise ConfigError(f"{path}: [sweep] takes only max_cost and max_tokens")
    return data, _flatten(grid), settings


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``[grid.backend_options] latency = [...]`` is the dotted key ``backend_options.latency``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
