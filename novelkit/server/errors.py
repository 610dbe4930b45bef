"""Every error leaves the sidecar as ``{"error": {"code": ..., "message": ...}}``.

novelkit's own exceptions map to status codes here, in one table; anything unexpected becomes
a 500 that says nothing about its cause (the traceback goes to the server log only).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._errors import (
    ArtefactError,
    ExportError,
    JobStateError,
    NovelkitError,
    PipelineError,
    ProjectError,
    ProjectLockedError,
)

__all__ = ["ApiError", "error_response", "exception_handlers"]

log = logging.getLogger("novelkit.server")

UNAUTHORIZED_MESSAGE = (
    "a valid API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY' "
    "(create one with: novelkit keys create ROOT --scope read|write)"
)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


class ApiError(Exception):
    """An HTTP error with a stable ``code``; ``extra`` fields join the error object."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(error.code, error.message, **error.extra),
        status_code=error.status,
        headers=error.headers,
    )


def unauthorized(message: str = UNAUTHORIZED_MESSAGE) -> ApiError:
    return ApiError(
        401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="novelkit"'}
    )


def from_novelkit(exc: NovelkitError) -> ApiError:
    """The HTTP face of a novelkit error; the message already says how to fix it."""
    if isinstance(exc, JobStateError):
        state = getattr(exc.state, "value", exc.state)
        return ApiError(409, "illegal_transition", str(exc), state=state)
    if isinstance(exc, ProjectLockedError):
        return ApiError(409, "project_locked", str(exc))
    if isinstance(exc, PipelineError):
        return ApiError(422, "invalid_stage_request", str(exc))
    if isinstance(exc, ArtefactError):
        return ApiError(422, "invalid_artefact", str(exc))
    if isinstance(exc, ExportError):
        return ApiError(409, "export_unavailable", str(exc))
    if isinstance(exc, ProjectError):
        return ApiError(409, "project_unavailable", str(exc))
    return ApiError(409, "conflict", str(exc))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    messages = {404: "no such route; see /openapi.json", 405: "method not allowed on this route"}
    message = messages.get(exc.status_code, str(exc.detail))
    return JSONResponse(
        error_body(code, message), status_code=exc.status_code, headers=dict(exc.headers or {})
    )


async def _novelkit_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NovelkitError)
    return error_response(from_novelkit(exc))


async def _server_error(request: Request, exc: Exception) -> Response:
    # the traceback goes to the log; the client learns nothing about the cause
    log.error(
        "unhandled error on %s %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc_info=exc,
    )
    return JSONResponse(
        error_body("internal_error", "internal server error; the server log has details"),
        status_code=500,
    )


exception_handlers: dict[Any, Any] = {
    ApiError: _api_error,
    HTTPException: _http_error,
    NovelkitError: _novelkit_error,
    Exception: _server_error,
}
