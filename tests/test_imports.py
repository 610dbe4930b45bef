"""``import novelkit`` stays cheap, and ``__all__`` is exactly the public API."""

from __future__ import annotations

import subprocess
import sys

import novelkit

HEAVY = [
    "ipywidgets",
    "starlette",
    "uvicorn",
    "docx",
    "ebooklib",
    "openai",
    "anthropic",
    "reportlab",
    "PIL",
    "httpx",
    "httpx2",
    "IPython",
    "websockets",
    "distributed",
    "dask",
    "pandas",
    "markdown_it",
]


def test_import_novelkit_loads_no_optional_heavy_module() -> None:
    code = (
        "import sys, novelkit\n"
        f"heavy = {HEAVY!r}\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_all_matches_the_public_api() -> None:
    public = {name for name in dir(novelkit) if not name.startswith("_")}
    modules = {"llm", "stages", "export", "widgets", "server", "cli", "report", "imports"}
    assert set(novelkit.__all__) == public - modules
    assert novelkit.__all__ == sorted(novelkit.__all__)


def test_every_exported_error_derives_from_the_base() -> None:
    errors = [getattr(novelkit, n) for n in novelkit.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, novelkit.NovelkitError) for e in errors)
