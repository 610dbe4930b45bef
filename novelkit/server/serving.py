"""Run the sidecar under uvicorn: in a background thread (notebooks) or in the foreground (CLI).

The thread runs ``uvicorn.Server`` on its own event loop, so a Jupyter kernel's loop is never
touched (no ``asyncio.run`` inside it).
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from .app import DEFAULT_MAX_FRAME, create_app
from .auth import KeyStore, keys_path_for
from .limits import install_log_redaction

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "ServerHandle",
    "check_exposure",
    "is_loopback",
    "serve_in_thread",
    "uvicorn_config",
    "with_bound_host",
]

HEARTBEAT = 20.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def with_bound_host(allowed: Any, host: str) -> list[str]:
    """The Host names to answer: the address listened on (unless a wildcard) and ``allowed``."""
    names = list(allowed or [])
    if host not in ("0.0.0.0", "::", ""):
        names.append(host)
    return names


def check_exposure(
    root: str | os.PathLike[str], host: str, keys_path: str | os.PathLike[str] | None = None
) -> None:
    """Refuse to listen beyond this machine while no API key exists."""
    if is_loopback(host):
        return
    path = Path(keys_path) if keys_path is not None else keys_path_for(root)
    if KeyStore(path).count() == 0:
        raise PermissionError(
            f"refusing to listen on {host}: it is reachable from other machines and {path} holds "
            "no API key yet; create one first (novelkit keys create ROOT --scope write) or use "
            "--host 127.0.0.1"
        )


def uvicorn_config(
    app: Starlette,
    host: str,
    port: int,
    *,
    log_level: str = "info",
    max_frame: int = DEFAULT_MAX_FRAME,
    heartbeat: float = HEARTBEAT,
    log_config: Any = uvicorn.config.LOGGING_CONFIG,
    proxy_headers: bool = False,
) -> uvicorn.Config:
    install_log_redaction()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        ws_max_size=max_frame,
        ws_ping_interval=heartbeat,
        ws_ping_timeout=heartbeat,
        ws_per_message_deflate=False,  # per-client compression of the same frames: half the CPU
        server_header=False,
        proxy_headers=proxy_headers,  # X-Forwarded-* only from a proxy the user named
        log_config=log_config,
    )


class ServerHandle:
    """A sidecar running in a background thread: ``.url``, ``.stop()``."""

    def __init__(
        self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int, app: Starlette
    ) -> None:
        self.server = server
        self.thread = thread
        self.host = host
        self.port = port
        self.app = app

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ServerHandle {self.url} {state}>"

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: open WebSockets close, jobs this server started pause (resumable)."""
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(
    root: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    log_level: str = "warning",
    timeout: float = 10.0,
    heartbeat: float = HEARTBEAT,
    **options: Any,
) -> ServerHandle:
    """Start the sidecar in a background thread and return once it accepts connections.

    ``port=0`` picks a free port (see ``handle.url``); a WebSocket peer that does not answer a
    ping within ``heartbeat`` seconds is dropped. Other options go to :func:`create_app`.
    """
    check_exposure(root, host, options.get("keys_path"))
    options["allowed_hosts"] = with_bound_host(options.get("allowed_hosts"), host)
    app = create_app(root, **options)
    config = uvicorn_config(
        app,
        host,
        port,
        log_level=log_level,
        max_frame=options.get("max_frame", DEFAULT_MAX_FRAME),
        heartbeat=heartbeat,
        log_config=None,
        proxy_headers=bool(options.get("proxy_headers")),
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # SystemExit when the port is taken: report it to the caller
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"novelkit-sidecar-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            reason = f": {failure[0]!r}" if failure else ""
            raise OSError(
                f"the sidecar could not start on {host}:{port}{reason} "
                "(is the port in use? try port=0)"
            )
        time.sleep(0.01)
    actual = port
    for srv in server.servers:
        for sock in srv.sockets:
            actual = sock.getsockname()[1]
            break
    return ServerHandle(server, thread, host, actual, app)
