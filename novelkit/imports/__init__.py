"""Bring your own story: import a manuscript, continue it, give a cast or an outline, write
a sequel, and keep the voice of your samples.

    project = nk.import_manuscript("draft.docx", "novels/mine")
    project.start().wait()            # continuity of the imported chapters, then assemble
    project.extend(chapters=3).wait() # three more chapters in the same bible and voice
    book2 = nk.new_project("novels/two", premise="...", sequel_of=project)
"""

from __future__ import annotations

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
    "read_voice",
    "read_manuscript",
    "voice_profile",
]
