"""The guard every REST route goes through, declared once per route (also feeds OpenAPI).

Order: key in the URL → 401; no/bad key → 401; rate limit → 429; a key bound to another
project → 404 (as if it did not exist); read key on a write route → 403; unknown project →
404; body: wrong content type → 415, bad JSON → 400, schema → 422; then Idempotency-Key.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import Principal
from .errors import ApiError, unauthorized
from .projects import not_found

if TYPE_CHECKING:
    from .._project import Project
    from .app import Sidecar

__all__ = [
    "Call",
    "Endpoint",
    "authenticate",
    "is_decimal",
    "reject_secret_query",
    "routes_for",
]

URL_SECRETS = frozenset({"key", "api_key", "apikey", "token", "access_token"})


@dataclass
class Call:
    """What a handler gets: the request, who sent it, the project and the parsed body."""

    request: Request
    sidecar: Sidecar
    principal: Principal
    project_id: str = ""
    _project: Project | None = None
    body: Any = None

    @property
    def project(self) -> Project:
        assert self._project is not None
        return self._project


Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel] | None = None
    write: bool = False
    body: type[BaseModel] | None = None
    idempotent: bool = False
    success: int = 200
    statuses: dict[int, str] = field(default_factory=dict)
    query: tuple[tuple[str, dict[str, Any], str], ...] = ()
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag: str = "projects"
    media_type: str = ""  # a response that is not JSON (HTML, SVG): its media type

    @property
    def per_project(self) -> bool:
        return "{id}" in self.path

    async def __call__(self, request: Request) -> Response:
        sidecar: Sidecar = request.app.state.sidecar
        reject_secret_query(request.query_params.keys())
        principal = authenticate(request.headers, sidecar)
        sidecar.limiter.check(principal.key_id)
        call = Call(request, sidecar, principal)
        if self.per_project:
            call.project_id = request.path_params["id"]
            if not principal.sees(call.project_id):
                raise not_found(call.project_id)
        if self.write and not principal.can_write:
            raise ApiError(403, "forbidden", "this key is read-only; this route needs a write key")
        if not self.per_project:
            return await self._handle(call, request)
        registry = sidecar.projects
        call._project = registry.try_acquire(call.project_id) or await anyio.to_thread.run_sync(
            registry.acquire, call.project_id
        )
        try:  # the lease keeps the project open (not closed to make room) while it is used
            return await self._handle(call, request)
        finally:
            registry.release(call.project_id)

    async def _handle(self, call: Call, request: Request) -> Response:
        sidecar = call.sidecar
        principal = call.principal
        raw = b""
        if self.body is not None:
            raw = await request.body()
            call.body = parse_body(self.body, raw, request.headers.get("content-type"))
        key = request.headers.get("idempotency-key")
        if self.idempotent and key is not None:
            canonical = json.dumps(
                call.body.model_dump(mode="json") if call.body else None, sort_keys=True
            )
            return await sidecar.idempotency.run(
                principal.key_id,
                f"{self.method} {request.url.path}",
                key,
                canonical.encode(),
                lambda: self.handler(call),
            )
        return await self.handler(call)


def reject_secret_query(names: Any) -> None:
    if URL_SECRETS.intersection(n.lower() for n in names):
        raise unauthorized(
            "API keys are never accepted in a URL (it ends up in logs and history); "
            "send 'Authorization: Bearer KEY' or 'X-API-Key: KEY' instead"
        )


def is_decimal(raw: str, max_digits: int) -> bool:
    """ASCII digits only: ``str.isdigit()`` also accepts '²' (``int()`` then fails) and '٣'."""
    return 0 < len(raw) <= max_digits and raw.isascii() and raw.isdigit()


def presented_key(headers: Any) -> str | None:
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    key: str | None = headers.get("x-api-key")
    return key


def authenticate(headers: Any, sidecar: Sidecar) -> Principal:
    """The caller's principal; 401 with one and the same answer for a missing or a wrong key."""
    principal = sidecar.keys.verify(presented_key(headers))
    if principal is None:
        raise unauthorized()
    return principal


def parse_body(model: type[BaseModel], raw: bytes, content_type: str | None) -> BaseModel:
    if not raw.strip():
        try:
            return model.model_validate({})
        except ValidationError as exc:
            raise ApiError(
                422, "invalid_body", "a JSON body is required: " + _describe(exc)
            ) from None
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as application/json, not {media or 'no content type'}",
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    except RecursionError:  # json.loads recurses per level; 64 KiB of '[' is enough
        raise ApiError(
            400, "bad_json", "the body is nested too deeply; send a flat JSON object"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid_body", _describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def routes_for(endpoints: list[Endpoint]) -> list[Route]:
    """One Route per path, so a wrong method gets 405 with an Allow header naming every method."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for ep in endpoints:
        by_path.setdefault(ep.path, {})[ep.method] = ep
    routes = []
    for path, methods in by_path.items():

        async def dispatch(request: Request, methods: dict[str, Endpoint] = methods) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await methods[method](request)

        routes.append(Route(path, dispatch, methods=list(methods)))
    return routes
