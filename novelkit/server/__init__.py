"""The optional Starlette sidecar: REST + WebSocket control of the projects under a root folder.

    from novelkit.server import create_app, create_key, serve_in_thread
    key = create_key("novels", "write")          # printed once, stored hashed
    handle = serve_in_thread("novels", port=8765)
    handle.url, handle.stop()

Needs ``pip install 'novelkit[server]'`` (starlette, uvicorn, swagger-ui-bundle).
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"the novelkit sidecar needs {exc.name}: pip install 'novelkit[server]'"
    ) from None

from .app import create_app
from .auth import KeyStore, Principal, create_key
from .serving import ServerHandle, is_loopback, serve_in_thread

__all__ = [
    "KeyStore",
    "Principal",
    "ServerHandle",
    "create_app",
    "create_key",
    "is_loopback",
    "serve_in_thread",
]
