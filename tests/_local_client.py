"""A Starlette TestClient that names the sidecar by a loopback Host, as a browser on this
machine does: the sidecar answers only allowed Host names (DNS rebinding), and Starlette's
own client says ``testserver`` (hard-coded for WebSockets)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

from starlette.testclient import TestClient, WebSocketTestSession

LOCAL = "http://127.0.0.1"


class LocalClient(TestClient):
    def __init__(self, app: Any, **kwargs: Any) -> None:
        kwargs.setdefault("base_url", LOCAL)
        super().__init__(app, **kwargs)

    def websocket_connect(
        self, url: str, subprotocols: Any = None, **kwargs: Any
    ) -> WebSocketTestSession:
        return super().websocket_connect(urljoin("ws://127.0.0.1", url), subprotocols, **kwargs)
