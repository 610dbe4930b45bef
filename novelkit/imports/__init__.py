"""Bring your own story: import a manuscript, continue it, give a cast or an outline, write
a sequel, and keep the voice of your samples.

    project = nk.import_manuscript("draft.docx", "novels/mine")
    project.start().wait()            # continuity of the imported chapters, then assemble
    project.extend(chapters=3).wait() # three more chapters in the same bible
"""

from __future__ import annotations

from ._chapters import Book, ImportedChapter
from ._importer import import_info, import_manuscript, read_manuscript

__all__ = ["Book", "ImportedChapter", "import_info", "import_manuscript", "read_manuscript"]
