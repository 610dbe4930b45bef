"""The optional Starlette sidecar: REST + WebSocket control of the projects under a root folder.

    from novelkit.server import create_app, create_key, serve_in_thread
    key = create_key("novels", "write")          # printed once, stored hashed
    handle = serve_in_thread("novels", port=8765)
    handle.url, handle.stop()

Needs ``pip install 'novelkit[server]'`` (starlette, uvicorn, swagger-ui-bundle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "KeyStore": ".auth",
    "Principal": ".auth",
    "ServerHandle": ".serving",
    "create_app": ".app",
    "create_key": ".auth",
    "is_loopback": ".serving",
    "serve_in_thread": ".serving",
}

__all__ = [
    "KeyStore",
    "Principal",
    "ServerHandle",
    "create_app",
    "create_key",
    "is_loopback",
    "serve_in_thread",
]


def __getattr__(name: str) -> Any:
    """Load the server lazily, so ``novelkit.server.cli`` can be imported without starlette."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'novelkit.server' has no attribute {name!r}")
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"the novelkit sidecar needs {exc.name}: pip install 'novelkit[server]'"
        ) from None
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .app import create_app
    from .auth import KeyStore, Principal, create_key
    from .serving import ServerHandle, is_loopback, serve_in_thread
