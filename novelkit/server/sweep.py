"""Sweep routes of the sidecar (docs/architecture.md, "Contracts"): the sweep in the served ROOT, and its control.

    GET  /api/v2/sweep            every run's state, progress, tokens, cost and parameters
    POST /api/v2/sweep/pause      body {"now": false}                                (write)
    POST /api/v2/sweep/resume                                                        (write)
    POST /api/v2/sweep/cancel                                                        (write)
    GET  /sweep                   the dashboard's sweep page

A sweep's runs are ordinary projects under the same ROOT, so each row's ``name`` is also its
project id for /api/v2/projects/{id}. Control goes to the process that drives the sweep through
ROOT/.sweep/control.json; a key bound to one project does not see the sweep (404).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from .endpoint import Call, Endpoint
from .errors import ApiError

__all__ = ["SWEEP_ENDPOINTS", "sweep_page"]

STATIC = Path(__file__).parent / "static"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' "
    "data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)


class SweepRunOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(description="the run's folder: also its project id")
    params: dict[str, Any]
    state: str = Field(description="a job state, or 'pending' before a worker started it")
    progress: float
    tokens: int
    cost: float
    elapsed: float
    message: str
    error: str | None = None
    worker: str | None = None


class SweepOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    root: str
    state: str | None
    message: str
    progress: float
    tokens: int
    cost: float
    counts: dict[str, int]
    max_tokens: int | None = None
    max_cost: float | None = None
    runs: list[SweepRunOut]


class SweepControlOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    changed: bool
    state: str | None
    message: str


class SweepPauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    now: bool = Field(default=False, description="abort in-flight calls (rerun on resume)")


class SweepEmptyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _root(call: Call) -> Path:
    if call.principal.project is not None:  # a project-bound key sees only its project
        raise ApiError(404, "not_found", "no sweep here")
    root: Path = call.sidecar.root
    if not (root / "sweep.toml").is_file():
        raise ApiError(
            404,
            "no_sweep",
            "the served folder holds no sweep; serve a sweep's ROOT (novelkit serve ROOT)",
        )
    return root


async def get_sweep(call: Call) -> Response:
    from .._sweep import read_sweep_status

    root = _root(call)
    status = await anyio.to_thread.run_sync(read_sweep_status, root)
    return JSONResponse(status.to_dict())


def _controller(action: str) -> Any:
    async def control(call: Call) -> Response:
        from .._sweep import control_sweep

        root = _root(call)
        name = "pause-now" if action == "pause" and getattr(call.body, "now", False) else action
        result = await anyio.to_thread.run_sync(lambda: control_sweep(root, name))
        return JSONResponse(result.to_dict())

    return control


_CONTROL_STATUSES = {
    404: "The served folder holds no sweep.",
    409: "Illegal in the sweep's state, or the process driving it is gone (interrupted).",
}

SWEEP_ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/api/v2/sweep",
        get_sweep,
        "The sweep in the served folder: a row per run with its parameters and figures",
        SweepOut,
        statuses={404: "The served folder holds no sweep."},
        tag="sweep",
    ),
    Endpoint(
        "POST",
        "/api/v2/sweep/pause",
        _controller("pause"),
        "Pause every run of the sweep (in-flight calls finish unless now=true)",
        SweepControlOut,
        write=True,
        body=SweepPauseBody,
        statuses=_CONTROL_STATUSES,
        tag="sweep",
    ),
    Endpoint(
        "POST",
        "/api/v2/sweep/resume",
        _controller("resume"),
        "Resume every run that has not succeeded, from its saved calls",
        SweepControlOut,
        write=True,
        body=SweepEmptyBody,
        statuses=_CONTROL_STATUSES,
        tag="sweep",
    ),
    Endpoint(
        "POST",
        "/api/v2/sweep/cancel",
        _controller("cancel"),
        "Cancel the sweep; finished work stays, and running the sweep again continues it",
        SweepControlOut,
        write=True,
        body=SweepEmptyBody,
        statuses=_CONTROL_STATUSES,
        tag="sweep",
    ),
]


async def sweep_page(request: Request) -> Response:
    return FileResponse(
        STATIC / "sweep.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": PAGE_CSP},
    )
