"""Export a 150,000-word novel to docx, epub and pdf with novelkit and with pandoc; compare.

    python benchmarks/bench_export.py [--chapters 50] [--words 3000] [--repeat 3]

Each export runs in a fresh subprocess (interpreter start-up and Markdown parsing included, as
for pandoc); wall time is the best of ``--repeat`` runs, peak memory the largest ru_maxrss that
``os.wait4`` reports for the process and the children it waited for (pandoc's PDF engine).
Writes ``benchmarks/results/export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from novelkit.export import Manuscript, ManuscriptChapter, export_manuscript  # noqa: E402

FORMATS = ("docx", "epub", "pdf")
PDF_ENGINE = "weasyprint"
TITLE, AUTHOR = "The Long Tide", "Benchmark Author"
GOAL_RATIO, GOAL_PEAK_MB = 1.0, 300.0

_CHILD = f"""
import sys
from pathlib import Path
from novelkit.export import Manuscript, export_manuscript
fmt, source, target = sys.argv[1:4]
text = Path(source).read_text(encoding="utf-8")
manuscript = Manuscript.from_markdown(text, title={TITLE!r}, author={AUTHOR!r})
export_manuscript(manuscript, fmt, Path(target))
"""

_SUBJECTS = ("The keeper", "Mara", "The old captain", "A gull", "Her brother", "The fog", "Nobody")
_VERBS = ("watched", "remembered", "carried", "whispered to", "followed", "ignored", "mended")
_OBJECTS = (
    "the lamp",
    "the long tide",
    "a broken oar",
    "the ledger",
    "the harbour lights",
    "the storm",
)
_TAILS = (
    "before the bell rang twice",
    "as if the sea were listening",
    "and said nothing about it",
    "while the rain found every crack in the roof",
    "because there was no one else to do it",
)


def novel(chapters: int, words_per_chapter: int) -> Manuscript:
    """Deterministic pseudo-prose: 4-7 sentence paragraphs, 15 paragraphs a scene."""
    state = 1
    built = []
    for number in range(1, chapters + 1):
        scenes: list[tuple[str, ...]] = []
        paragraphs: list[str] = []
        words = 0
        while words < words_per_chapter:
            sentences = []
            for _ in range(4 + state % 4):
                state = (state * 1103515245 + 12345) % 2**31
                sentence = (
                    f"{_SUBJECTS[state % 7]} {_VERBS[(state >> 3) % 7]} "
                    f"{_OBJECTS[(state >> 6) % 6]} {_TAILS[(state >> 9) % 5]}."
                )
                if state % 5 == 0:
                    sentence = f"“{sentence[:-1]},” she said, “and that was that.”"
                sentences.append(sentence)
            paragraphs.append(" ".join(sentences))
            words += len(paragraphs[-1].split())
            if len(paragraphs) == 15:
                scenes.append(tuple(paragraphs))
                paragraphs = []
        if paragraphs:
            scenes.append(tuple(paragraphs))
        built.append(ManuscriptChapter(number, f"Chapter {number}: The Tide Turns", tuple(scenes)))
    return Manuscript(title=TITLE, author=AUTHOR, chapters=tuple(built), date="2024-05-17")


def measure(
    command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Run ``command``; return (wall seconds, peak resident MB of it and its waited children)."""
    start = time.perf_counter()
    # cwd matters: pandoc's PDF route leaves html2pdf* temp files in the working directory.
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {errors.decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024  # Linux reports KiB


def best_of(
    repeat: int, command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, float]:
    runs = [measure(command, cwd, env) for _ in range(repeat)]
    return min(t for t, _ in runs), max(m for _, m in runs)


def tool_version(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).splitlines()[0].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=int, default=50)
    parser.add_argument("--words", type=int, default=3000, help="words per chapter")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "export.json"
    )
    args = parser.parse_args()

    pandoc = shutil.which("pandoc")
    manuscript = novel(args.chapters, args.words)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="novelkit-bench-") as folder:
        work = Path(folder)
        start = time.perf_counter()
        source = export_manuscript(manuscript, "md", work / "book.md")
        markdown_seconds = time.perf_counter() - start
        for fmt in FORMATS:
            ours = [sys.executable, "-c", _CHILD, fmt, str(source), str(work / f"ours.{fmt}")]
            ours_s, ours_mb = best_of(args.repeat, ours, work, env)
            row: dict[str, Any] = {
                "format": fmt,
                "ours_s": round(ours_s, 3),
                "ours_peak_mb": round(ours_mb, 1),
            }
            if pandoc:
                theirs = [pandoc, "-f", "markdown", str(source), "-o", str(work / f"pandoc.{fmt}")]
                if fmt == "pdf":
                    theirs.append(f"--pdf-engine={PDF_ENGINE}")
                pandoc_s, pandoc_mb = best_of(args.repeat, theirs, work)
                row |= {
                    "pandoc_s": round(pandoc_s, 3),
                    "pandoc_peak_mb": round(pandoc_mb, 1),
                    "time_ratio": round(ours_s / pandoc_s, 3),
                }
            row["meets_goal"] = row.get("time_ratio", 0.0) <= GOAL_RATIO and ours_mb <= GOAL_PEAK_MB
            results.append(row)

    report = {
        "words": manuscript.word_count,
        "chapters": len(manuscript.chapters),
        "markdown_export_s": round(markdown_seconds, 3),
        "repeat": args.repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "pandoc": tool_version([pandoc, "--version"]) if pandoc else None,
        "pdf_engine": tool_version([PDF_ENGINE, "--version"]) if shutil.which(PDF_ENGINE) else None,
        "goal": {"time_ratio_max": GOAL_RATIO, "peak_mb_max": GOAL_PEAK_MB},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(
        f"{report['words']:,} words, {report['chapters']} chapters; best of {args.repeat}; {report['pandoc']}"
    )
    print(
        f"{'format':<7}{'ours s':>9}{'ours MB':>9}{'pandoc s':>10}{'pandoc MB':>11}{'ratio':>8}  goal"
    )
    for row in results:
        print(
            f"{row['format']:<7}{row['ours_s']:>9.2f}{row['ours_peak_mb']:>9.0f}"
            f"{row.get('pandoc_s', float('nan')):>10.2f}{row.get('pandoc_peak_mb', float('nan')):>11.0f}"
            f"{row.get('time_ratio', float('nan')):>8.2f}  {'ok' if row['meets_goal'] else 'MISSED'}"
        )
    print(f"pdf via pandoc --pdf-engine={PDF_ENGINE} ({report['pdf_engine']}); JSON: {args.output}")
    return 0 if all(row["meets_goal"] for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
