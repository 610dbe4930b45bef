"""The REST routes (documented in /openapi.json), each a thin call into the Project/Job API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.responses import FileResponse, JSONResponse, Response

from .._errors import ExportError
from .._job import Job
from .._provenance import Writer
from .._status import ControlResult
from ..export import export_formats, get_exporter
from . import models as m
from .endpoint import Call, Endpoint, is_decimal
from .errors import ApiError
from .report_routes import REPORT_ENDPOINTS

__all__ = ["ENDPOINTS"]

MAX_EVENTS = 1000


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _control(result: ControlResult, job: Job | None = None) -> JSONResponse:
    body = result.to_dict()
    body["job_id"] = job.id if job is not None else None
    return _json(body)


def _current_job(call: Call) -> Job:
    job = call.project.job
    if job is None:
        raise ApiError(
            409, "no_job", "this project has no job yet; POST …/generate starts one", state=None
        )
    return job


async def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


# -- whoami / tickets / projects -------------------------------------------------------------


async def whoami(call: Call) -> Response:
    return _json(call.principal.to_dict())


async def ws_ticket(call: Call) -> Response:
    ticket = call.sidecar.tickets.issue(call.principal)
    return _json({"ticket": ticket, "expires_in": call.sidecar.tickets.ttl})


def _title(project_or_config: Any) -> str:
    config = getattr(project_or_config, "config", project_or_config)
    if config.title:
        return str(config.title)
    premise = str(config.premise)
    return premise if len(premise) <= 60 else premise[:57].rstrip() + "…"


def _summaries(call: Call) -> list[dict[str, Any]]:
    out = []
    for project_id in call.sidecar.projects.ids():
        if not call.principal.sees(project_id):
            continue
        try:  # read without opening it: a listing never fills the server's open projects
            found = call.sidecar.projects.summary(project_id)
        except Exception:  # a broken folder must not hide the others
            continue
        if found is None:
            continue
        config, state = found
        out.append(
            {
                "id": project_id,
                "title": _title(config),
                "chapters": config.chapters,
                "state": state,
            }
        )
    return out


async def list_projects(call: Call) -> Response:
    return _json({"projects": await _in_thread(_summaries, call)})


async def get_project(call: Call) -> Response:
    project = call.project
    config = project.config
    status = await call.sidecar.status.get(project)
    exports = await _in_thread(_export_infos, call)
    return _json(
        {
            "id": call.project_id,
            "title": _title(project),
            "premise": config.premise,
            "genre": config.genre,
            "chapters": config.chapters,
            "words_per_chapter": config.words_per_chapter,
            "backend": config.backend,
            "model": config.model,
            "writer": Writer.of(config).to_dict(),
            "status": status,
            "exports": {e["format"]: e for e in exports},
        }
    )


# -- the job ---------------------------------------------------------------------------------


async def generate(call: Call) -> Response:
    project = call.project
    before = project.job

    def start() -> tuple[Job, bool]:
        active = before is not None and before.state.active
        job = project.start()
        return job, not active

    job, changed = await _in_thread(start)
    call.sidecar.changed(project)
    body = {
        "changed": changed,
        "state": job.state.value,
        "job_id": job.id,
        "message": "started" if changed else f"a job is already {job.state.value}",
    }
    return _json(body, 202 if changed else 200)


async def generate_status(call: Call) -> Response:
    return _json(await call.sidecar.status.get(call.project))


async def pause(call: Call) -> Response:
    job = _current_job(call)
    result = await _in_thread(job.pause, now=call.body.now)
    call.sidecar.changed(call.project)
    return _control(result, job)


async def resume(call: Call) -> Response:
    job = _current_job(call)
    result = await _in_thread(job.resume)
    call.sidecar.changed(call.project)
    return _control(result, job)


async def cancel(call: Call) -> Response:
    job = _current_job(call)
    result = await _in_thread(job.cancel)
    call.sidecar.changed(call.project)
    return _control(result, job)


async def list_stages(call: Call) -> Response:
    stages = await _in_thread(lambda: [s.to_dict() for s in call.project.stages])
    return _json({"stages": stages})


async def run_stage(call: Call) -> Response:
    stage = call.request.path_params["stage"]
    project = call.project
    names = project.pipeline.names()
    if stage not in names and not (is_decimal(stage, 2) and 1 <= int(stage) <= len(names)):
        raise ApiError(
            422,
            "unknown_stage",
            f"unknown stage {stage[:40]!r}; valid stages: {', '.join(names)} "
            f"(or their numbers 1–{len(names)})",
            valid=names,
        )
    body: m.RunStageBody = call.body
    job = await _in_thread(project.run_stage, stage, body.chapters, force=body.force)
    call.sidecar.changed(project)
    return _json(
        {
            "changed": True,
            "state": job.state.value,
            "job_id": job.id,
            "message": f"running stage {project.pipeline.get(stage).name!r}",
        },
        202,
    )


async def events(call: Call) -> Response:
    params = call.request.query_params
    since = _int_param(params.get("since"), "since", 0)
    limit = _int_param(params.get("limit"), "limit", MAX_EVENTS)
    if not 1 <= limit <= MAX_EVENTS:
        raise ApiError(422, "invalid_query", f"limit must be between 1 and {MAX_EVENTS}")
    store = call.project.store

    def read() -> dict[str, Any]:
        page = call.project.events(since, limit + 1)
        more = len(page) > limit
        page = page[:limit]
        return {
            "events": page,
            "first_seq": store.first_seq(),
            "last_seq": store.last_seq(),
            "next_since": page[-1]["seq"] if page else since,
            "more": more,
        }

    return _json(await _in_thread(read))


def _int_param(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    if not is_decimal(raw, 15):  # matches the documented maximum
        raise ApiError(422, "invalid_query", f"{name} must be a non-negative integer")
    return int(raw)


# -- exports -----------------------------------------------------------------------------------


def _check_format(fmt: str) -> None:
    try:
        get_exporter(fmt)
    except ExportError:
        shown = fmt[:20] if fmt.isprintable() else "?"
        raise ApiError(
            422,
            "unknown_format",
            f"unknown export format {shown!r}; valid formats: {', '.join(export_formats())}",
            valid=export_formats(),
        ) from None


def _export_file(call: Call, fmt: str) -> Path | None:
    """The export's file, only if it exists inside this project's exports/ folder."""
    row = call.project.exports().get(fmt)
    if row is None or not row.get("exists"):
        return None
    folder = (call.project.root / "exports").resolve()
    path = Path(row["path"]).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        return None
    return path


def _export_info(call: Call, fmt: str) -> dict[str, Any]:
    exporter = get_exporter(fmt)
    row = call.project.exports().get(fmt)
    path = _export_file(call, fmt)
    info: dict[str, Any] = {
        "format": fmt,
        "media_type": exporter.media_type,
        "exported": path is not None,
        "filename": None,
        "size": None,
        "created": None,
        "modified": None,
        "stale": None,
    }
    if row is not None and path is not None:
        info.update(
            filename=path.name,
            size=row["size"],
            created=row["created"],
            modified=row["modified"],
            stale=bool(row["stale"]),
        )
    return info


def _export_infos(call: Call) -> list[dict[str, Any]]:
    return [_export_info(call, fmt) for fmt in export_formats()]


async def list_exports(call: Call) -> Response:
    return _json({"formats": export_formats(), "exports": await _in_thread(_export_infos, call)})


async def create_exports(call: Call) -> Response:
    body: m.ExportBody = call.body
    for fmt in body.formats:
        _check_format(fmt)
    done = []
    for fmt in dict.fromkeys(body.formats):
        try:
            await _in_thread(call.project.export, fmt)
        except ImportError as exc:
            raise ApiError(501, "format_unavailable", str(exc)) from None
        done.append(await _in_thread(_export_info, call, fmt))
    return _json({"formats": export_formats(), "exports": done})


async def download_export(call: Call) -> Response:
    fmt = call.request.path_params["format"]
    _check_format(fmt)
    path = await _in_thread(_export_file, call, fmt)
    if path is None:
        raise ApiError(
            404,
            "not_exported",
            f'there is no {fmt} export yet; POST …/export with {{"formats": ["{fmt}"]}} first',
        )
    exporter = get_exporter(fmt)
    return FileResponse(
        path, media_type=exporter.media_type, filename=f"{call.project_id}.{exporter.extension}"
    )


async def export_status(call: Call) -> Response:
    fmt = call.request.path_params["format"]
    _check_format(fmt)
    return _json(await _in_thread(_export_info, call, fmt))


# -- the table ---------------------------------------------------------------------------------

P = "/api/v2/projects/{id}"
_CONTROL = {409: "Illegal transition for the job's current state, or no job yet (`error.state`)."}
_SINCE = (
    "since",
    {"type": "integer", "minimum": 0, "maximum": 10**15 - 1},
    "Return events with seq greater than this.",
)
_LIMIT = ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_EVENTS}, "At most this many.")


def _stage_param() -> dict[str, Any]:
    from ..stages import default_stages

    names = [s.name for s in default_stages()]
    return {"type": "string", "enum": names + [str(n) for n in range(1, len(names) + 1)]}


ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET", "/api/v2/whoami", whoami, "The calling key's scope and project", m.WhoAmI, tag="auth"
    ),
    Endpoint(
        "POST",
        "/api/v2/ws-ticket",
        ws_ticket,
        "A single-use WebSocket ticket (30 s)",
        m.TicketOut,
        body=m.EmptyBody,
        tag="auth",
    ),
    Endpoint("GET", "/api/v2/projects", list_projects, "Projects this key can see", m.ProjectList),
    Endpoint("GET", P, get_project, "A project: settings, status and exports", m.ProjectOut),
    Endpoint(
        "POST",
        f"{P}/generate",
        generate,
        "Start or continue the job",
        m.ControlResponse,
        write=True,
        body=m.EmptyBody,
        idempotent=True,
        success=202,
        statuses={
            200: "A job is already active: `changed` is false.",
            409: "Another process holds the project's writer lock.",
            422: "`invalid_artefact`: an artefact edited by hand does not validate.",
        },
    ),
    Endpoint("GET", f"{P}/generate/status", generate_status, "The job's status", m.StatusOut),
    Endpoint(
        "POST",
        f"{P}/generate/pause",
        pause,
        "Pause (now=true: abort in-flight calls)",
        m.ControlResponse,
        write=True,
        body=m.PauseBody,
        statuses=_CONTROL,
    ),
    Endpoint(
        "POST",
        f"{P}/generate/resume",
        resume,
        "Resume a paused, interrupted or failed job",
        m.ControlResponse,
        write=True,
        body=m.EmptyBody,
        statuses=_CONTROL,
    ),
    Endpoint(
        "POST",
        f"{P}/generate/cancel",
        cancel,
        "Cancel; finished work stays",
        m.ControlResponse,
        write=True,
        body=m.EmptyBody,
        statuses=_CONTROL,
    ),
    Endpoint(
        "GET", f"{P}/generate/stages", list_stages, "The 12 stages and their state", m.StagesOut
    ),
    Endpoint(
        "POST",
        f"{P}/generate/stages/{{stage}}",
        run_stage,
        "Run one stage (or some chapters)",
        m.ControlResponse,
        write=True,
        body=m.RunStageBody,
        idempotent=True,
        success=202,
        statuses={
            409: "A job is active on this project.",
            422: "`unknown_stage`: no such stage (the message lists them); "
            "`invalid_stage_request`: chapters given to a single-unit stage, chapters the "
            "outline does not have, or an upstream stage that has not run.",
        },
        path_params={"stage": _stage_param()},
    ),
    Endpoint(
        "GET",
        f"{P}/events",
        events,
        "Persisted events after `since`",
        m.EventsPage,
        query=(_SINCE, _LIMIT),
        statuses={422: "`invalid_query`: since/limit is not an integer in range."},
    ),
    Endpoint(
        "GET",
        f"{P}/export",
        list_exports,
        "Every format and its export",
        m.ExportList,
        tag="exports",
    ),
    Endpoint(
        "POST",
        f"{P}/export",
        create_exports,
        "Write exports",
        m.ExportList,
        write=True,
        body=m.ExportBody,
        idempotent=True,
        tag="exports",
        statuses={
            409: "No manuscript yet: the message names the stage to run.",
            422: "`unknown_format`: no such format (the message lists them).",
            501: "The format's optional dependency is not installed.",
        },
    ),
    Endpoint(
        "GET",
        f"{P}/export/{{format}}",
        download_export,
        "Download an export",
        None,
        tag="exports",
        statuses={
            404: "Not exported yet.",
            422: "`unknown_format`: no such format (the message lists them).",
        },
        path_params={"format": {"type": "string"}},
    ),
    Endpoint(
        "GET",
        f"{P}/export/{{format}}/status",
        export_status,
        "One export's status",
        m.ExportInfo,
        tag="exports",
        statuses={422: "`unknown_format`: no such format (the message lists them)."},
        path_params={"format": {"type": "string"}},
    ),
]
ENDPOINTS += REPORT_ENDPOINTS
