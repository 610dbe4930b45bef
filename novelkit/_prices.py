"""What a call costs: the ``[prices]`` in novel.toml over a dated table of list prices.

The table is data, not a promise: providers change prices, and a model that is not here (or a
local server, which costs nothing) needs a ``[prices."MODEL"]`` entry for ``max_cost`` to work.
``max_cost`` with a model that has no price refuses to start (:func:`check_prices`), so a budget
never silently fails to stop a run.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ._config import Price, _toml_key
from ._errors import ConfigError

if TYPE_CHECKING:
    from ._config import NovelConfig

__all__ = [
    "DEFAULT_PRICES",
    "FREE_BACKENDS",
    "PRICES_CURRENCY",
    "PRICES_DATE",
    "PRICES_SOURCE",
    "check_prices",
    "cost_of",
    "format_cost",
    "price_for",
    "stage_model",
]

PRICES_DATE = "2025-11-24"
PRICES_SOURCE = (
    "list prices on https://openai.com/api/pricing/ and https://www.anthropic.com/pricing "
    "(standard tier, no batch or cache discount, prompts under 200k tokens)"
)
PRICES_CURRENCY = "USD"

# model: (prompt, completion) in US dollars per million tokens, as of PRICES_DATE.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    # OpenAI
    "gpt-5.1": (1.25, 10.00),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "o1": (15.00, 60.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    # Anthropic
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-0": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-3-haiku": (0.25, 1.25),
}

# Backends that never bill a call.
FREE_BACKENDS = frozenset({"offline", "replay"})

# A dated snapshot or alias of a listed model: gpt-4o-2024-08-06, claude-sonnet-4-5-20250929,
# claude-3-5-sonnet-latest. Anything else (gpt-4o-audio-preview) is another model.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def _lookup(table: Mapping[str, Price], model: str) -> Price | None:
    if model in table:
        return table[model]
    base = _SNAPSHOT.sub("", model)
    return table.get(base) if base != model else None


@functools.cache
def _default_table() -> dict[str, Price]:
    return {name: Price(prompt=p, completion=c) for name, (p, c) in DEFAULT_PRICES.items()}


def price_for(config: NovelConfig, model: str | None) -> Price | None:
    """The price of ``model``: novel.toml's ``[prices]`` first, then the built-in table
    (which is in US dollars, so only when the project's ``currency`` is USD)."""
    if not model:
        return None
    price = _lookup(config.prices, model)
    if price is None and config.currency == PRICES_CURRENCY:
        price = _lookup(_default_table(), model)
    return price


def cost_of(
    config: NovelConfig, models: Iterable[str | None], prompt_tokens: int, completion_tokens: int
) -> float:
    """The cost of a call, priced as the first of ``models`` that has a price (else 0).

    ``models`` lists the names a call goes by, most specific first: the one the server says
    it served (``gpt-4o-2024-08-06``), then the one asked for (``gpt-4o``).
    """
    for model in models:
        price = price_for(config, model)
        if price is not None:
            return (prompt_tokens * price.prompt + completion_tokens * price.completion) / 1e6
    return 0.0


def format_cost(amount: float, currency: str = PRICES_CURRENCY) -> str:
    """``format_cost(0.01234, "USD")`` gives ``"0.0123 USD"``."""
    return f"{amount:,.4f} {currency}"


def stage_model(config: NovelConfig, stage: str, model: str | None = None) -> str | None:
    """The model a stage's calls ask for: ``run_stage(model=...)``, ``[stages.X] model``, or
    the project's ``model``."""
    return model or config.stage_override(stage).model or config.model


def check_prices(
    config: NovelConfig,
    backend: str,
    stages: Iterable[str],
    *,
    model: str | None = None,
    fallback: str = "",
) -> None:
    """Refuse a run whose ``max_cost`` could never stop it: a paid model without a price.

    ``backend`` is the backend's name, ``stages`` the stages that will run, ``fallback`` the
    name calls go by when no model is configured. Raises :class:`ConfigError` naming the model
    and the ``[prices]`` entry to add.
    """
    if config.max_cost is None or backend in FREE_BACKENDS:
        return
    names = list(stages)
    used: dict[str, list[str]] = {}
    for stage in names:
        used.setdefault(stage_model(config, stage, model) or fallback, []).append(stage)
    for name, where in used.items():
        if price_for(config, name) is None:
            every = len(names) > 1 and where == names
            used_by = "" if every else f" (used by {', '.join(where)})"
            raise ConfigError(
                f"max_cost = {config.max_cost} is set, but model {name!r}{used_by} has no "
                f"price, so the budget could never stop the run; nothing was started. Add its "
                f"price in {config.currency} per million tokens to novel.toml, for example\n\n"
                f"[prices.{_toml_key(name)}]\nprompt = 2.5\ncompletion = 10.0\n\n"
                "(0 and 0 for a local server that costs nothing), or remove max_cost"
            )
