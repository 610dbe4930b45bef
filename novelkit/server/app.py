"""The app factory: the REST routes, auth, limits, OpenAPI + Swagger UI, the dashboard.

from novelkit.server import create_app
app = create_app("novels")           # uvicorn novelkit.server.app:... or serve_in_thread
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from ..export import export_formats
from .auth import KeyStore, TicketBook, keys_path_for
from .endpoint import routes_for
from .errors import exception_handlers
from .feed import Client, ProjectFeed
from .idempotency import IdempotencyCache
from .limits import (
    DEFAULT_MAX_BODY,
    LOOPBACK_HOSTS,
    BodyLimitMiddleware,
    HostCheckMiddleware,
    RateLimit,
    RateLimiter,
    SecurityHeadersMiddleware,
    host_name,
)
from .openapi import build_openapi, downgrade_to_30
from .projects import ProjectRegistry, StatusCache
from .routes import ENDPOINTS
from .sweep import SWEEP_ENDPOINTS, sweep_page
from .websocket import websocket_endpoint

if TYPE_CHECKING:
    from .._project import Project

__all__ = ["Sidecar", "create_app"]

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_FRAME = 64 * 1024
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Swagger UI sets inline styles and loads the schema from this server
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class Sidecar:
    """What the routes share: the projects, keys, tickets, limits and live feeds."""

    def __init__(
        self,
        root: Path,
        *,
        projects: dict[str, Project] | None,
        keys_path: Path,
        allowed_origins: Sequence[str],
        rate_limit: RateLimit | None,
        max_frame: int,
        ws_queue_size: int,
        stall_timeout: float,
        proxy_headers: bool = False,
        max_open: int | None = None,
        idle_close: float = 60.0,
    ) -> None:
        self.root = root
        self.projects = ProjectRegistry(root, projects, max_open, idle_close)
        self.proxy_headers = proxy_headers
        self.keys = KeyStore(keys_path)
        self.tickets = TicketBook()
        self.limiter = RateLimiter(rate_limit)
        self.idempotency = IdempotencyCache()
        self.status = StatusCache()
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.max_frame = max_frame
        self.ws_queue_size = ws_queue_size
        self.stall_timeout = stall_timeout
        self._feeds: dict[str, ProjectFeed] = {}

    def __repr__(self) -> str:
        return f"<Sidecar {str(self.root)!r}>"

    async def join(self, project_id: str, project: Project, client: Client) -> ProjectFeed:
        """The project's live feed with ``client`` registered (started for the first client)."""
        feed = self._feeds.get(project_id)
        loop = asyncio.get_running_loop()
        if feed is not None and feed._loop is not loop:  # a new event loop (tests): start afresh
            await feed.stop()
            feed = None
        if feed is None:
            feed = ProjectFeed(
                project,
                lambda: self.status.get(project, fresh=True),
                stall_timeout=self.stall_timeout,
            )
            feed.start()
            self._feeds[project_id] = feed
        feed.add(client)
        return feed

    async def leave(self, project_id: str, feed: ProjectFeed, client: Client) -> None:
        """Unregister ``client``; the last one to leave stops the feed (no idle polling)."""
        feed.remove(client)
        if not feed.clients and self._feeds.get(project_id) is feed:
            del self._feeds[project_id]
            await feed.stop()

    def changed(self, project: Project) -> None:
        """After a control call: fresh status next time; the live feed looks at the store now."""
        self.status.forget(project)
        for feed in self._feeds.values():
            if feed.project is project:
                feed._wake.set()

    async def close(self) -> None:
        for feed in self._feeds.values():
            await feed.stop()
        self._feeds.clear()
        await anyio.to_thread.run_sync(self.projects.close)


def create_app(
    root: str | os.PathLike[str],
    *,
    projects: dict[str, Project] | None = None,
    keys_path: str | os.PathLike[str] | None = None,
    cors_origins: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
    rate_limit: RateLimit | None = RateLimit(),  # noqa: B008 - frozen dataclass, safe default
    max_body: int = DEFAULT_MAX_BODY,
    max_frame: int = DEFAULT_MAX_FRAME,
    ws_queue_size: int = 1000,
    stall_timeout: float = 30.0,
    allowed_hosts: Sequence[str] | None = None,
    proxy_headers: bool = False,
    max_open: int | None = None,
    idle_close: float = 60.0,
) -> Starlette:
    """The sidecar app over the project folders under ``root``.

    ``projects`` reuses already open projects (by folder name); ``cors_origins`` enables CORS
    for those origins (off by default); ``allowed_origins`` are extra browser origins allowed
    to open the WebSocket (the server's own origin always is); ``rate_limit=None`` disables
    the per-key limit. ``allowed_hosts`` are names the server answers to besides the loopback
    ones (``"*"``: any); ``proxy_headers=True`` trusts ``X-Forwarded-Host`` from a reverse
    proxy; ``max_open`` bounds the projects open at once (default: from the descriptor limit),
    and a project unused for ``idle_close`` seconds is closed.
    """
    root_path = Path(root).resolve()
    sidecar = Sidecar(
        root_path,
        projects=projects,
        keys_path=Path(keys_path) if keys_path is not None else keys_path_for(root_path),
        allowed_origins=allowed_origins,
        rate_limit=rate_limit,
        max_frame=max_frame,
        ws_queue_size=ws_queue_size,
        stall_timeout=stall_timeout,
        proxy_headers=proxy_headers,
        max_open=max_open,
        idle_close=idle_close,
    )
    document = build_openapi(ENDPOINTS + SWEEP_ENDPOINTS, export_formats())
    document_30 = downgrade_to_30(document)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    async def openapi_30(request: Request) -> Response:
        return JSONResponse(document_30)

    async def docs(request: Request) -> Response:
        return HTMLResponse(_DOCS_HTML, headers={"Content-Security-Policy": DOCS_CSP})

    async def dashboard(request: Request) -> Response:
        return FileResponse(
            STATIC / "index.html",
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": DASHBOARD_CSP},
        )

    routes: list[BaseRoute] = list(routes_for(ENDPOINTS + SWEEP_ENDPOINTS))
    routes += [
        WebSocketRoute("/api/v2/projects/{id}/ws", websocket_endpoint),
        Route("/openapi.json", openapi_json, include_in_schema=False),
        Route("/docs", docs, include_in_schema=False),
        Route("/docs/openapi-3.0.json", openapi_30, include_in_schema=False),
        Mount("/docs/static", StaticFiles(directory=_swagger_dir()), name="swagger"),
        Route("/", dashboard, include_in_schema=False),
        Route("/sweep", sweep_page, include_in_schema=False),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    hosts = LOOPBACK_HOSTS if allowed_hosts is None else (*LOOPBACK_HOSTS, *allowed_hosts)
    middleware = [
        Middleware(HostCheckMiddleware, allowed_hosts=frozenset(host_name(h) for h in hosts)),
        Middleware(SecurityHeadersMiddleware),
    ]
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
            )
        )
    middleware.append(Middleware(BodyLimitMiddleware, max_body=max_body))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {}
        await sidecar.close()

    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.sidecar = sidecar
    return app


def _swagger_dir() -> str:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        raise ImportError(
            "the API docs page needs swagger-ui-bundle: pip install 'novelkit[server]'"
        ) from None
    return str(swagger_ui_path)


_DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>novelkit sidecar API</title>
<link rel="stylesheet" href="docs/static/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/static/swagger-ui-bundle.js"></script>
<script src="static/docs.js"></script>
</body>
</html>
"""
