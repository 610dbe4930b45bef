"""Every error leaves the sidecar as ``{"error": {"code": ..., "message": ...}}``.

novelkit's own exceptions map to status codes here, in one table; anything unexpected becomes
a 500 that says nothing about its cause (the traceback goes to the server log only).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._errors import (
    ArtefactError,
    ConfigError,
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


# an absolute filesystem path of two or more parts (not one of this server's own routes)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/-])/(?!api/|docs|openapi|static/)[^\s'\"]*/[^\s'\",;)]*")
MAX_MESSAGE = 600


def public_message(message: str, root: Path | None) -> str:
    """An error message fit for a client: paths under the served root relative to it, any
    other absolute path hidden, and at most MAX_MESSAGE characters (the cut marked)."""
    if root is not None:
        message = message.replace(f"{root}{os.sep}", "").replace(str(root), "the served root")
    message = _ABSOLUTE_PATH.sub("<path>", message)
    if len(message) > MAX_MESSAGE:
        message = f"{message[:MAX_MESSAGE]}… [cut; {len(message)} characters]"
    return message


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
    if isinstance(exc, ConfigError):  # novel.toml unreadable or invalid: the folder's to fix
        return ApiError(409, "invalid_config", str(exc))
    return ApiError(409, "conflict", str(exc))


def _root(request: Request) -> Path | None:
    sidecar = getattr(request.app.state, "sidecar", None)
    return getattr(sidecar, "root", None)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    exc.message = public_message(exc.message, _root(request))
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
    error = from_novelkit(exc)
    error.message = public_message(error.message, _root(request))
    return error_response(error)


_last_resource_log = 0.0


async def _os_error(request: Request, exc: Exception) -> Response:
    """Out of descriptors (or memory for them): 503 with Retry-After, one log line a minute."""
    assert isinstance(exc, OSError)
    if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        return await _server_error(request, exc)
    global _last_resource_log
    now = time.monotonic()
    if now - _last_resource_log > 60.0:
        _last_resource_log = now
        log.warning("novelkit sidecar: out of resources (%s); answering 503 for now", exc.strerror)
    return error_response(
        ApiError(
            503,
            "busy",
            "the server is out of resources for a moment; retry shortly",
            headers={"Retry-After": "1"},
        )
    )


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
    OSError: _os_error,
    Exception: _server_error,
}
