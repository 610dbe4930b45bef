"""One exporter registry behind ``project.export``, ``novelkit export`` and the sidecar.

An exporter writes a :class:`Manuscript` to a path. :func:`export_manuscript` hands it a temp
file in the destination folder and replaces the destination only when the exporter finished,
so a crash mid-export leaves the previous file intact.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ExportError
from ._manuscript import Manuscript, ManuscriptChapter

__all__ = [
    "Exporter",
    "Manuscript",
    "ManuscriptChapter",
    "export_formats",
    "export_manuscript",
    "get_exporter",
    "register_exporter",
]

WriteFn = Callable[..., None]


@dataclass(frozen=True)
class Exporter:
    """A format: its file extension, media type and where its writer lives (imported lazily)."""

    format: str
    extension: str
    media_type: str
    module: str
    """Dotted module with a ``write(manuscript, path, **options)`` function."""
    extra: str | None = None
    """The pip extra that brings its dependencies, for the ImportError message."""

    def load(self) -> WriteFn:
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            if self.extra is None:
                raise
            raise ImportError(
                f"exporting {self.format} needs {exc.name}: pip install 'novelkit[{self.extra}]'"
            ) from None
        write: WriteFn = module.write
        return write


_REGISTRY: dict[str, Exporter] = {}


def register_exporter(exporter: Exporter) -> None:
    """Add or replace a format."""
    _REGISTRY[exporter.format] = exporter


for _exporter in (
    Exporter("md", "md", "text/markdown; charset=utf-8", "novelkit.export.markdown"),
    Exporter("txt", "txt", "text/plain; charset=utf-8", "novelkit.export.text"),
    Exporter(
        "docx",
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "novelkit.export.docx",
        extra="docx",
    ),
    Exporter("epub", "epub", "application/epub+zip", "novelkit.export.epub", extra="epub"),
    Exporter("pdf", "pdf", "application/pdf", "novelkit.export.pdf", extra="pdf"),
):
    register_exporter(_exporter)


def export_formats() -> list[str]:
    return list(_REGISTRY)


def get_exporter(fmt: str) -> Exporter:
    try:
        return _REGISTRY[fmt]
    except KeyError:
        raise ExportError(
            f"unknown export format {fmt!r}; choose one of: {', '.join(_REGISTRY)}"
        ) from None


def export_manuscript(manuscript: Manuscript, fmt: str, path: Path, **options: Any) -> Path:
    """Write ``manuscript`` as ``fmt`` to ``path`` atomically and return the path."""
    exporter = get_exporter(fmt)
    write = exporter.load()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(manuscript, tmp, **options)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
