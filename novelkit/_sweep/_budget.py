"""The sweep's shared budget: ``max_cost`` / ``max_tokens`` over every run of a sweep.

Each run's backend is wrapped in :class:`SharedBudgetBackend`, which reserves a call's
likely tokens and cost in one ledger held by the Dask scheduler (a ``Variable`` guarded by a
``Lock``) before the call goes out, and settles the reservation with the real usage after it.
A call that would pass the cap is not sent: it raises ``BudgetExceededError``, which pauses
that run the way a project's own budget does, and the sweep pauses the others. Calls answered
from a run's saved calls never reach the backend and cost nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .._config import NovelConfig
from .._errors import BudgetExceededError
from ..llm.base import Backend, Chunk, Done, Request

__all__ = ["BudgetSpec", "Ledger", "SharedBudgetBackend"]


@dataclass(frozen=True)
class BudgetSpec:
    """The caps and where the ledger lives (names of a scheduler Variable and Lock)."""

    name: str
    max_tokens: int | None = None
    max_cost: float | None = None

    @property
    def enabled(self) -> bool:
        return self.max_tokens is not None or self.max_cost is not None


class Ledger:
    """Spent-plus-reserved tokens and cost of the whole sweep, on the Dask scheduler."""

    def __init__(self, spec: BudgetSpec, client: Any) -> None:
        from distributed import Lock, Variable

        self.spec = spec
        self._variable = Variable(spec.name, client=client)
        self._lock = Lock(spec.name + "-lock", scheduler_rpc=client.scheduler, loop=client.loop)

    def reset(self, tokens: int, cost: float) -> None:
        """Start from what the runs have spent so far (a killed worker's reservation is gone)."""
        with self._lock:
            self._variable.set({"tokens": tokens, "cost": cost})

    def read(self) -> dict[str, float]:
        value = self._variable.get(timeout=5)
        return {"tokens": float(value["tokens"]), "cost": float(value["cost"])}

    def reserve(self, tokens: int, cost: float, where: str) -> None:
        spec = self.spec
        with self._lock:
            value = self._variable.get(timeout=10)
            spent_tokens, spent_cost = int(value["tokens"]), float(value["cost"])
            if spec.max_tokens is not None and spent_tokens + tokens > spec.max_tokens:
                raise BudgetExceededError(
                    f"sweep budget: paused before {where}: the next call (~{tokens:,} tokens) "
                    f"would pass the sweep's max_tokens ({spent_tokens:,} used or reserved of "
                    f"{spec.max_tokens:,}); raise it with sweep.resume(max_tokens=...)"
                )
            if spec.max_cost is not None and spent_cost + cost > spec.max_cost:
                raise BudgetExceededError(
                    f"sweep budget: paused before {where}: the next call (~{cost:.4f}) would "
                    f"pass the sweep's max_cost ({spent_cost:.4f} spent or reserved of "
                    f"{spec.max_cost:.4f}); raise it with sweep.resume(max_cost=...)"
                )
            self._variable.set({"tokens": spent_tokens + tokens, "cost": spent_cost + cost})

    def settle(self, reserved: tuple[int, float], used: tuple[int, float]) -> None:
        with self._lock:
            value = self._variable.get(timeout=10)
            self._variable.set(
                {
                    "tokens": int(value["tokens"]) - reserved[0] + used[0],
                    "cost": float(value["cost"]) - reserved[1] + used[1],
                }
            )


class SharedBudgetBackend:
    """Wraps a run's backend: every call is reserved in the sweep's ledger before it is sent."""

    def __init__(self, inner: Backend, ledger: Ledger, config: NovelConfig, run: str) -> None:
        self.inner = inner
        self.name = inner.name
        self._ledger = ledger
        self._config = config
        self._run = run
        self._seen: dict[str, int] = {}  # the largest answer seen per task: the next estimate

    def _cost(self, model: str, prompt: int, completion: int) -> float:
        price = self._config.prices.get(model)
        if price is None:
            return 0.0
        return (prompt * price.prompt + completion * price.completion) / 1_000_000

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        expected = min(request.max_output_tokens, self._seen.get(request.task, 10**9))
        model = request.model or self.inner.name
        reserved = (
            request.prompt_tokens + expected,
            self._cost(model, request.prompt_tokens, expected),
        )
        where = f"run {self._run} stage {request.stage!r} unit {request.unit}"
        await asyncio.to_thread(self._ledger.reserve, reserved[0], reserved[1], where)
        used = (0, 0.0)
        try:
            async for chunk in self.inner.stream(request):
                if isinstance(chunk, Done):
                    usage = chunk.usage
                    self._seen[request.task] = max(
                        self._seen.get(request.task, 0), int(usage.completion_tokens * 1.25) + 16
                    )
                    model = chunk.model or model
                    used = (
                        usage.prompt_tokens + usage.completion_tokens,
                        self._cost(model, usage.prompt_tokens, usage.completion_tokens),
                    )
                yield chunk
        finally:
            await asyncio.to_thread(self._ledger.settle, reserved, used)

    async def aclose(self) -> None:
        await self.inner.aclose()
