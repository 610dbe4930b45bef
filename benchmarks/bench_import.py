"""Import a 150,000-word docx and EPUB up to the point where extraction starts; compare with
exporting the same book to that format.

    python benchmarks/bench_import.py [--chapters 50] [--words 3000] [--repeat 3]

Both sides run in a fresh subprocess (interpreter start-up included). The import side reads
the file, finds the chapters, measures the voice, writes the source chapters and opens the
project: everything ``nk.import_manuscript`` does before its first model call (the process
stops there). Wall time is the best of ``--repeat`` runs, peak memory the largest ru_maxrss.
Goal: the same order as the export (time ratio at most 3, peak memory ratio at most 3).
Writes ``benchmarks/results/import.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_export import AUTHOR, TITLE, best_of, novel  # noqa: E402

from novelkit.export import export_manuscript  # noqa: E402

FORMATS = ("docx", "epub")
GOAL_TIME_RATIO, GOAL_MEMORY_RATIO = 3.0, 3.0

_EXPORT = f"""
import sys
from pathlib import Path
from novelkit.export import Manuscript, export_manuscript
fmt, source, target = sys.argv[1:4]
text = Path(source).read_text(encoding="utf-8")
manuscript = Manuscript.from_markdown(text, title={TITLE!r}, author={AUTHOR!r})
export_manuscript(manuscript, fmt, Path(target))
"""

# stops the import where extraction would start: the first thing that could call a model
_IMPORT = """
import os, sys
import novelkit as nk
from novelkit.imports import _importer

class Started(Exception):
    pass

def extraction_starts(project, book, follow):
    chapters = len(list((project.root / "artefacts" / "00-import").glob("ch*.md")))
    assert chapters == len(book.chapters) == int(sys.argv[3]), (chapters, len(book.chapters))
    raise Started

_importer._extract = extraction_starts
try:
    nk.import_manuscript(sys.argv[1], sys.argv[2])
except Started:
    os._exit(0)
sys.exit("extraction never started")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=int, default=50)
    parser.add_argument("--words", type=int, default=3000, help="words per chapter")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "import.json"
    )
    args = parser.parse_args()
    manuscript = novel(args.chapters, args.words)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="novelkit-bench-") as folder:
        work = Path(folder)
        source = export_manuscript(manuscript, "md", work / "book.md")
        for fmt in FORMATS:
            book = export_manuscript(manuscript, fmt, work / f"book.{fmt}")
            export = [sys.executable, "-c", _EXPORT, fmt, str(source), str(work / f"out.{fmt}")]
            export_s, export_mb = best_of(args.repeat, export, work, env)
            runs = []
            for run in range(args.repeat):
                target = work / f"imported-{fmt}-{run}"
                command = [
                    sys.executable,
                    "-c",
                    _IMPORT,
                    str(book),
                    str(target),
                    str(args.chapters),
                ]
                runs.append(best_of(1, command, work, env))
            import_s, import_mb = min(t for t, _ in runs), max(m for _, m in runs)
            row: dict[str, Any] = {
                "format": fmt,
                "file_mb": round(book.stat().st_size / 2**20, 2),
                "import_s": round(import_s, 3),
                "import_peak_mb": round(import_mb, 1),
                "export_s": round(export_s, 3),
                "export_peak_mb": round(export_mb, 1),
                "time_ratio": round(import_s / export_s, 3),
                "memory_ratio": round(import_mb / export_mb, 3),
            }
            row["meets_goal"] = (
                row["time_ratio"] <= GOAL_TIME_RATIO and row["memory_ratio"] <= GOAL_MEMORY_RATIO
            )
            results.append(row)
    report = {
        "words": manuscript.word_count,
        "chapters": len(manuscript.chapters),
        "repeat": args.repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "goal": {"time_ratio_max": GOAL_TIME_RATIO, "memory_ratio_max": GOAL_MEMORY_RATIO},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{report['words']:,} words, {report['chapters']} chapters; best of {args.repeat}")
    print(
        f"{'format':<7}{'import s':>10}{'import MB':>11}{'export s':>10}{'export MB':>11}"
        f"{'time':>7}{'memory':>8}  goal"
    )
    for row in results:
        print(
            f"{row['format']:<7}{row['import_s']:>10.2f}{row['import_peak_mb']:>11.0f}"
            f"{row['export_s']:>10.2f}{row['export_peak_mb']:>11.0f}"
            f"{row['time_ratio']:>7.2f}{row['memory_ratio']:>8.2f}  "
            f"{'ok' if row['meets_goal'] else 'MISSED'}"
        )
    print(f"JSON: {args.output}")
    return 0 if all(row["meets_goal"] for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
