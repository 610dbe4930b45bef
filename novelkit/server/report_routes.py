"""The scorecard over HTTP: its figures as JSON, the HTML page, and each chart as SVG."""

from __future__ import annotations

import base64

import anyio.to_thread
from starlette.responses import HTMLResponse, JSONResponse, Response

from ..report import Scorecard, report_folder, report_project
from ..report.charts import CHARTS, charts_available
from .endpoint import Call, Endpoint
from .errors import ApiError

__all__ = ["REPORT_ENDPOINTS"]

P = "/api/v2/projects/{id}"


async def _scorecard(call: Call) -> Scorecard:
    project = call.project
    return await anyio.to_thread.run_sync(lambda: report_project(project))


async def get_report(call: Call) -> Response:
    card = await _scorecard(call)
    return JSONResponse(card.model_dump(mode="json"))


async def report_html(call: Call) -> Response:
    card = await _scorecard(call)
    folder = report_folder(call.project)
    charts = {}
    for name in CHARTS:  # inlined: the page stands alone, and an <img> could not send the key
        path = folder / f"{name}.svg"
        if path.exists():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            charts[name] = f"data:image/svg+xml;base64,{data}"
    return HTMLResponse(card.to_html(charts))


async def report_chart(call: Call) -> Response:
    name = call.request.path_params["chart"]
    if name not in CHARTS:
        raise ApiError(422, "unknown_chart", f"unknown chart {name!r}; charts: {', '.join(CHARTS)}")
    if not charts_available():
        raise ApiError(
            501, "charts_unavailable", "charts need matplotlib: pip install 'novelkit[report]'"
        )
    path = report_folder(call.project) / f"{name}.svg"
    if not path.exists():
        await _scorecard(call)
    return Response(path.read_bytes(), media_type="image/svg+xml")


REPORT_ENDPOINTS = [
    Endpoint(
        "GET",
        f"{P}/report",
        get_report,
        "The scorecard (no model is called; also writes artefacts/report/)",
        Scorecard,
        tag="report",
    ),
    Endpoint(
        "GET",
        f"{P}/report/html",
        report_html,
        "The scorecard as a standalone HTML page, charts inlined",
        None,
        tag="report",
        media_type="text/html",
    ),
    Endpoint(
        "GET",
        f"{P}/report/charts/{{chart}}",
        report_chart,
        "One chart of the scorecard as SVG",
        None,
        tag="report",
        media_type="image/svg+xml",
        statuses={
            422: "`unknown_chart`: no chart of that name (the message lists them).",
            501: "matplotlib is not installed.",
        },
        path_params={"chart": {"type": "string", "enum": list(CHARTS)}},
    ),
]
