"""``WS /api/v2/projects/{id}/ws?since=SEQ``: replay after SEQ, then live (novelkit/server/websocket.md).

Handshake: ``Origin`` must be this server or on the allowlist (else 403); credentials come as
the subprotocol pair ``novelkit.v1`` + ``novelkit.key.<KEY>``, a single-use ``?ticket=`` from
``POST /api/v2/ws-ticket``, or a header (non-browser clients). Failures are real HTTP answers
(401/403/404/422), never an accepted socket that closes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio.to_thread
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from .._errors import NovelkitError
from .auth import Principal
from .endpoint import URL_SECRETS, is_decimal, presented_key
from .errors import (
    UNAUTHORIZED_MESSAGE,
    ApiError,
    error_body,
    from_novelkit,
    public_message,
    unauthorized,
)
from .feed import RESYNC, Client, Outgoing, ProjectFeed
from .projects import not_found

if TYPE_CHECKING:
    from .._project import Project
    from .app import Sidecar

__all__ = ["PROTOCOL", "websocket_endpoint"]

log = logging.getLogger("novelkit.server")

PROTOCOL = "novelkit.v1"
KEY_PROTOCOL = "novelkit.key."
CLOSE_TOO_BIG = 1009


def origin_allowed(
    websocket: WebSocket, allowed: frozenset[str], proxy_headers: bool = False
) -> bool:
    """No Origin (not a browser), this server's own origin, or one on the allowlist.
    ``X-Forwarded-Host`` names this server only behind a trusted proxy (``proxy_headers``)."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if origin in allowed:
        return True
    netloc = urlsplit(origin).netloc
    hosts = {websocket.headers.get("host", "").lower()}
    if proxy_headers:
        hosts.add(websocket.headers.get("x-forwarded-host", "").lower())
    return bool(netloc) and netloc in hosts


def _credentials(websocket: WebSocket, sidecar: Sidecar) -> tuple[Principal, bool]:
    """(principal, whether the client speaks the novelkit.v1 subprotocol)."""
    if URL_SECRETS.intersection(k.lower() for k in websocket.query_params.keys()):
        raise unauthorized(
            "API keys are never accepted in a URL; use the subprotocol "
            f"'{KEY_PROTOCOL}<KEY>' or a ticket from POST /api/v2/ws-ticket"
        )
    offered = list(websocket.scope.get("subprotocols") or [])
    speaks = PROTOCOL in offered
    keys = [p[len(KEY_PROTOCOL) :] for p in offered if p.startswith(KEY_PROTOCOL)]
    principal: Principal | None = None
    if keys:
        principal = sidecar.keys.verify(keys[0])
    elif "ticket" in websocket.query_params:
        principal = sidecar.tickets.redeem(websocket.query_params["ticket"])
    else:
        principal = sidecar.keys.verify(presented_key(websocket.headers))
    if principal is None:
        raise unauthorized(UNAUTHORIZED_MESSAGE)
    return principal, speaks


async def _deny(websocket: WebSocket, error: ApiError) -> None:
    root = getattr(getattr(websocket.app.state, "sidecar", None), "root", None)
    error.message = public_message(error.message, root)
    response = JSONResponse(
        error_body(error.code, error.message), status_code=error.status, headers=error.headers
    )
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:  # a server without the denial extension turns a pre-accept close into 403
        await websocket.close(1008)


async def websocket_endpoint(websocket: WebSocket) -> None:
    sidecar: Sidecar = websocket.app.state.sidecar
    project_id = websocket.path_params["id"]
    try:
        if not origin_allowed(websocket, sidecar.allowed_origins, sidecar.proxy_headers):
            raise ApiError(
                403,
                "forbidden_origin",
                "this Origin may not open a WebSocket here; add it with --allow-origin",
            )
        principal, speaks = _credentials(websocket, sidecar)
        sidecar.limiter.check(principal.key_id)
        if not principal.sees(project_id):
            raise not_found(project_id)
        since_raw = websocket.query_params.get("since")
        if since_raw is not None and not is_decimal(since_raw, 15):
            raise ApiError(422, "invalid_query", "since must be a non-negative integer")
        # held open for the whole session (never closed to make room for another project)
        project = await anyio.to_thread.run_sync(sidecar.projects.acquire, project_id)
    except ApiError as error:
        await _deny(websocket, error)
        return
    except NovelkitError as exc:
        await _deny(websocket, from_novelkit(exc))
        return
    try:
        await websocket.accept(subprotocol=PROTOCOL if speaks else None)
        client = Client(sidecar.ws_queue_size)
        feed = await sidecar.join(project_id, project, client)
        last = feed.last_seq  # replayed from the store up to here; what follows comes live
        try:
            await _Session(websocket, sidecar, feed, project, client).run(
                int(since_raw) if since_raw is not None else None, last
            )
        finally:
            await sidecar.leave(project_id, feed, client)
    finally:
        sidecar.projects.release(project_id)


class _Session:
    def __init__(
        self,
        websocket: WebSocket,
        sidecar: Sidecar,
        feed: ProjectFeed,
        project: Project,
        client: Client,
    ) -> None:
        self.websocket = websocket
        self.sidecar = sidecar
        self.feed = feed
        self.project = project
        self.client = client

    async def run(self, since: int | None, last: int) -> None:
        try:
            await self._replay(since, last)
            await self._send(Outgoing({"type": "status_update", "status": await self._status()}))
            tasks = {
                asyncio.create_task(self._sender()),
                asyncio.create_task(self._receiver()),
                asyncio.create_task(self.client.killed.wait()),
            }
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.debug("novelkit sidecar: a WebSocket ended: %r", task.exception())
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the peer went away mid-replay

    async def _status(self) -> dict[str, Any]:
        return await self.sidecar.status.get(self.project)

    async def _resync_message(self, reason: str) -> Outgoing:
        store = self.project.store
        return Outgoing(
            {
                "type": "resync",
                "reason": reason,
                "first_seq": store.first_seq(),
                "last_seq": self.feed.last_seq,
                "status": await self._status(),
            }
        )

    async def _replay(self, since: int | None, last: int) -> None:
        if since is None or since >= last:
            if since is not None and since > last:
                await self._send(await self._resync_message("since_ahead"))
            return
        first = self.project.store.first_seq()
        if first and since + 1 < first:
            await self._send(await self._resync_message("since_too_old"))
            return
        cursor = since
        while cursor < last:
            events = self.project.store.events_since(cursor, 500)
            for event in events:
                if event.seq is None or event.seq > last:
                    return
                await self._send(Outgoing.from_event(event))
                cursor = event.seq
            if len(events) < 500:
                return

    async def _send(self, message: Outgoing) -> None:
        self.client.sending_since = time.monotonic()
        try:
            await self.websocket.send_text(message.text)
        finally:
            self.client.sending_since = None

    async def _sender(self) -> None:
        while True:
            item = await self.client.queue.get()
            message = await self._resync_message("queue_overflow") if item == RESYNC else item
            assert isinstance(message, Outgoing)
            await self._send(message)

    async def _receiver(self) -> None:
        limit = self.sidecar.max_frame
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw_bytes = message.get("bytes") or b""
                size = len(raw_bytes)
                raw = raw_bytes.decode("utf-8", errors="replace")
            else:
                size = len(raw.encode("utf-8"))
            if size > limit:
                await self.websocket.close(CLOSE_TOO_BIG, f"frames are limited to {limit} bytes")
                return
            await self._answer(raw)

    async def _answer(self, raw: str) -> None:
        try:
            request = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested thousands deep
            request = None
        kind = request.get("type") if isinstance(request, dict) else None
        if kind == "ping":
            reply: dict[str, Any] = {"type": "pong", "ts": time.time()}
            if isinstance(request, dict) and "id" in request:
                reply["id"] = request["id"]
            self.client.queue.put(Outgoing(reply))
        elif kind == "get_status":
            self.client.queue.put(
                Outgoing({"type": "status_update", "status": await self._status()}, "status_update")
            )
        else:
            self.client.queue.put(
                Outgoing(
                    {
                        "type": "error",
                        "error": {
                            "code": "bad_message",
                            "message": 'send {"type": "ping"} or {"type": "get_status"} as JSON',
                        },
                    }
                )
            )
