"""Bring your own story: import a manuscript, continue it, give a cast or an outline, write
a sequel, and keep the voice of your samples.

    project = nk.import_manuscript("draft.docx", "novels/mine")
    project.start().wait()            # continuity of the imported chapters, then assemble
    project.extend(chapters=3).wait() # three more chapters in the same bible and voice
    book2 = nk.new_project("novels/two", premise="...", sequel_of=project)
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

# loaded on first use: the stages read ._material, and must not pull in the readers with it
_EXPORTS = {
    "Book": "._chapters",
    "ImportedChapter": "._chapters",
    "VoiceFeatures": "._voice",
    "VoiceProfile": "._voice",
    "chapter_drift": "._voice",
    "import_info": "._importer",
    "import_manuscript": "._importer",
    "load_cast": "._parts",
    "load_outline": "._parts",
    "load_world": "._parts",
    "measure": "._voice",
    "read_manuscript": "._importer",
    "read_voice": "._voice",
    "voice_profile": "._voice",
}

__all__ = [
    "Book",
    "ImportedChapter",
    "VoiceFeatures",
    "VoiceProfile",
    "chapter_drift",
    "import_info",
    "import_manuscript",
    "load_cast",
    "load_outline",
    "load_world",
    "measure",
    "read_manuscript",
    "read_voice",
    "voice_profile",
]


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'novelkit.imports' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if _TYPE_CHECKING:
    from ._chapters import Book, ImportedChapter
    from ._importer import import_info, import_manuscript, read_manuscript
    from ._parts import load_cast, load_outline, load_world
    from ._voice import (
        VoiceFeatures,
        VoiceProfile,
        chapter_drift,
        measure,
        read_voice,
        voice_profile,
    )
