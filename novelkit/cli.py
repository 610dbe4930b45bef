"""The ``novelkit`` command (contracts: docs/architecture.md).

Exit codes: 0 success, 1 job failed, 2 bad input, 130 interrupted (Ctrl-C paused or cancelled).
"""

from __future__ import annotations

import argparse
import atexit
import errno
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO, get_args

from . import _errors as errors
from ._config import BackendName

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Usage(Exception):
    """Bad command-line input (exit code 2)."""


def _chapters(text: str) -> list[int]:
    try:
        out: list[int] = []
        for part in text.split(","):
            if "-" in part:
                start, end = part.split("-", 1)
                out += range(int(start), int(end) + 1)
            elif part.strip():
                out.append(int(part))
        return out
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a chapter list like 3,4 or 2-5"
        ) from None


def _option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} must look like KEY=VALUE")
    key, raw = text.split("=", 1)
    value: Any
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


BACKENDS: tuple[str, ...] = get_args(BackendName)
KEYED_BACKENDS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
EXAMPLE_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5"}

ENVIRONMENT = """\
environment variables:
  OPENAI_API_KEY     key for --backend openai (not needed for a local server given by --base-url)
  OPENAI_BASE_URL    OpenAI-compatible server when --base-url is not given
  ANTHROPIC_API_KEY  key for --backend anthropic
  ANTHROPIC_BASE_URL Anthropic-compatible server when --base-url is not given
  --backend offline (the default) needs none of them: it writes placeholder prose, with no
  model, to try the pipeline for free.
"""

EXAMPLES = """\
examples:
  novelkit generate "A keeper finds a letter from her drowned brother." --out lighthouse
  novelkit generate "..." --out book --backend openai --model gpt-4o-mini
  novelkit generate "..." --out book --backend openai --model llama3.1 \\
      --base-url http://localhost:11434/v1
  novelkit new book --premise "..." --chapters 8 && novelkit run book
  novelkit run book --stage draft --chapters 3,4 --force
  novelkit status book --json
  novelkit export book --format docx --format epub
  novelkit serve novels && novelkit keys create novels --scope write
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chapters", type=int, metavar="N", help="number of chapters, 1-200 (default 12)"
    )
    p.add_argument(
        "--words-per-chapter",
        type=int,
        metavar="N",
        help="target words per chapter, 100-20000 (default 2000)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="who writes: offline (default; placeholder prose, no model), openai "
        "(OpenAI or any compatible server), anthropic, or replay (a recorded cassette)",
    )
    p.add_argument(
        "--model",
        metavar="NAME",
        help="model for --backend openai or anthropic, e.g. gpt-4o-mini, claude-sonnet-4-5, "
        "llama3.1",
    )
    p.add_argument(
        "--base-url",
        metavar="URL",
        help="server for --backend openai/anthropic, e.g. http://localhost:11434/v1 (Ollama)",
    )
    p.add_argument("--seed", type=int, help="seed of every call; the same seed, the same book")
    p.add_argument(
        "--concurrency", type=int, metavar="N", help="model calls at once, 1-64 (default 4)"
    )
    p.add_argument("--genre", help="e.g. 'literary fiction' (the default) or 'cozy mystery'")
    p.add_argument("--title", help="title (default: the model proposes one)")
    p.add_argument("--author", help="author name for the title page and exports")
    p.add_argument(
        "--contact", help="contact block for the manuscript title page, lines separated by \\n"
    )
    p.add_argument("--language", metavar="CODE", help="language code, e.g. en (default) or fr-CA")
    p.add_argument(
        "--backend-option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="backend option (repeatable), e.g. tokens_per_second=200 (offline), "
        "api_key_env=MY_KEY (openai/anthropic), cassette=run.jsonl (replay)",
    )
    _add_max_cost(p)


def _guess_backend(model: str) -> str:
    return "anthropic" if model.lower().startswith("claude") else "openai"


def _check_backend_flags(args: argparse.Namespace) -> None:
    """Refuse flags the chosen backend would ignore, saying what to add instead."""
    backend = args.backend or "offline"
    options = dict(args.backend_option)
    fallback = options.get("fallback") if backend == "replay" else None
    uses_model = backend in KEYED_BACKENDS or fallback in KEYED_BACKENDS or backend == "replay"
    if args.model and not uses_model:
        guess = _guess_backend(args.model)
        other = "anthropic" if guess == "openai" else "openai"
        raise _Usage(
            f"--model {args.model} needs --backend {guess} (or --backend {other}); "
            f"the {backend} backend uses no model"
        )
    if args.base_url and backend not in KEYED_BACKENDS and fallback not in KEYED_BACKENDS:
        raise _Usage(
            f"--base-url needs --backend openai (any OpenAI-compatible server: Ollama, vLLM, "
            f"llama.cpp) or --backend anthropic; the {backend} backend calls no server"
        )
    if backend in KEYED_BACKENDS and not args.model:
        raise _Usage(
            f"--backend {backend} needs --model, e.g. --model {EXAMPLE_MODELS[backend]}"
            + (" (or llama3.1 with --base-url for Ollama)" if backend == "openai" else "")
        )


def _offline_note(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """What to tell a user who chose no backend: the book will be placeholder prose."""
    if args.backend is not None:
        return None
    keys = [name for name in KEYED_BACKENDS.values() if environ.get(name, "").strip()]
    found = (
        f" ({' and '.join(keys)} {'is' if len(keys) == 1 else 'are'} set but unused)"
        if keys
        else ""
    )
    return (
        "novelkit: no --backend given, so the offline backend writes placeholder prose (no "
        f"model is called){found}; for a real book add --backend openai --model gpt-4o-mini "
        "or --backend anthropic --model claude-sonnet-4-5\n"
    )


def _add_max_cost(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-cost",
        type=float,
        metavar="AMOUNT",
        help="pause before a call would spend more than this (saved to novel.toml; the model "
        "needs a price: built in for common OpenAI/Anthropic models, else [prices])",
    )


def _config_from(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name in (
        "chapters",
        "words_per_chapter",
        "backend",
        "model",
        "base_url",
        "seed",
        "concurrency",
        "genre",
        "title",
        "author",
        "contact",
        "language",
        "max_cost",
    ):
        value = getattr(args, name, None)
        if value is not None:
            config[name] = value
    if args.backend_option:
        config["backend_options"] = dict(args.backend_option)
    return config


def build_parser() -> argparse.ArgumentParser:
    from .export import export_formats

    formats = export_formats()
    parser = argparse.ArgumentParser(
        prog="novelkit",
        description="Write a novel with a language model, through twelve stages you can "
        "pause, resume, rerun and edit. `novelkit COMMAND --help` describes each command.",
        epilog=EXAMPLES + "\n" + ENVIRONMENT + "\nexit codes: 0 success, 1 the job failed, "
        "2 bad input, 130 interrupted (the job is paused and resumable)",
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, examples: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=("examples:\n" + examples if examples else None),
            formatter_class=_formatter,
        )
        p.set_defaults(parser=p)  # bad combinations are reported with this command's usage
        return p

    p = command(
        "generate",
        "create a project and write the whole novel",
        '  novelkit generate "A keeper finds a letter." --out lighthouse\n'
        '  novelkit generate "..." --out book --backend openai --model gpt-4o-mini\n'
        '  novelkit generate "..." --out book --backend anthropic --model claude-sonnet-4-5\n'
        "\n" + ENVIRONMENT,
    )
    p.add_argument("premise", help="one or two sentences about the story")
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="project folder to create"
    )
    p.add_argument(
        "--format",
        action="append",
        dest="formats",
        default=None,
        metavar="FORMAT",
        help=f"export format at the end (repeatable; default md and txt): {', '.join(formats)}",
    )
    _add_config_options(p)

    p = command(
        "new",
        "create a project without running it",
        '  novelkit new book --premise "A keeper finds a letter." --chapters 8\n'
        '  novelkit new book --premise "..." --backend openai --model gpt-4o-mini\n'
        "\n" + ENVIRONMENT,
    )
    p.add_argument("dir", type=Path, help="project folder to create")
    p.add_argument("--premise", required=True, help="one or two sentences about the story")
    _add_config_options(p)

    p = command(
        "import",
        "make a project from a manuscript (.docx, .md, .txt or .epub) and read its story "
        "bible from the text; run it again to resume one that stopped",
        "  novelkit import draft.docx --out book\n"
        "  novelkit import notes.txt --out book --chapter-pattern '^Part \\d+' --run\n"
        "  novelkit import novel.epub --out book --backend openai --model gpt-4o-mini\n",
    )
    p.add_argument("file", type=Path, help="the manuscript to import")
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="project folder to create"
    )
    p.add_argument(
        "--chapter-pattern",
        metavar="REGEX",
        help="a line matching this starts a chapter (default: headings, 'Chapter N' lines, "
        "page breaks)",
    )
    p.add_argument("--premise", help="the premise in your words (default: read from the text)")
    p.add_argument(
        "--run", action="store_true", help="then check continuity and assemble (as novelkit run)"
    )
    _add_config_options(p)

    p = command(
        "extend",
        "plan and write more chapters after the last one; the chapters so far stay as they are",
        "  novelkit extend book --chapters 3\n",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument(
        "--chapters", required=True, type=int, metavar="K", help="how many chapters to add"
    )

    p = command(
        "run",
        "run the pipeline (or one stage); Ctrl-C pauses, a second Ctrl-C cancels",
        "  novelkit run book\n  novelkit run book --stage draft --chapters 3,4 --force\n"
        "  novelkit run book --stage 7\n",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("--stage", help="run only this stage: its name or number (novelkit stages DIR)")
    p.add_argument(
        "--chapters",
        type=_chapters,
        metavar="LIST",
        help="with --stage: these chapters of a per-chapter stage, e.g. 3,4 or 2-5",
    )
    p.add_argument(
        "--force", action="store_true", help="with --stage: rerun units even if up to date"
    )
    _add_max_cost(p)
    _add_rebuild_store(p)

    p = command(
        "estimate",
        "predict a run's calls, tokens and cost before paying for one (an offline dry run)",
        "  novelkit estimate book\n  novelkit estimate book --json | jq .cost\n",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command(
        "status",
        "show the job, the stages, the backend and model, and the report",
        "  novelkit status book\n  novelkit status book --json | jq .backend\n",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_rebuild_store(p)

    p = command(
        "stages",
        "list the pipeline's stages (a project's own pipeline when given its folder)",
        "  novelkit stages\n  novelkit stages book\n",
    )
    p.add_argument(
        "dir", type=Path, nargs="?", help="project folder: its pipeline and each stage's state"
    )

    p = command("pause", "pause a running job (also one run by another process)")
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument(
        "--now", action="store_true", help="abort in-flight calls too (they are redone on resume)"
    )
    p = command("resume", "resume a paused or interrupted job in this process and follow it")
    p.add_argument("dir", type=Path, help="project folder")
    _add_rebuild_store(p)
    p = command("cancel", "cancel a job (also one run by another process); finished work stays")
    p.add_argument("dir", type=Path, help="project folder")

    p = command(
        "export",
        "export the manuscript",
        "  novelkit export book --format docx --format epub\n"
        "  novelkit export book --format pdf --out ~/book.pdf --option profile=kdp\n",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument(
        "--format",
        action="append",
        dest="formats",
        required=True,
        metavar="FORMAT",
        help=f"format to write (repeatable): {', '.join(formats)}",
    )
    p.add_argument("--out", type=Path, metavar="FILE", help="output file (one format only)")
    for name, text in (
        ("--author", "author name (saved to novel.toml)"),
        ("--contact", "contact block for the manuscript title page, lines separated by \\n"),
        ("--language", "language code, e.g. en or fr-CA"),
        ("--title", "title override"),
    ):
        p.add_argument(name, help=text)
    p.add_argument(
        "--option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="exporter option (repeatable), e.g. profile=kdp or wrap=72",
    )

    p = command(
        "report",
        "the scorecard of the book: figures, faults and charts (no model is called)",
        "  novelkit report book\n  novelkit report book --json > scorecard.json\n",
    )
    p.add_argument("dir", type=Path, help="project folder (any stage: scores what exists)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the scorecard as JSON")
    out.add_argument("--html", action="store_true", help="print the HTML page")
    p.add_argument(
        "--no-charts", action="store_true", help="skip drawing the charts (no matplotlib needed)"
    )

    p = command(
        "judge",
        "score the chapters and the book with an LLM judge (EQ-Bench Creative Writing rubric)",
        "  novelkit judge book\n"
        "  novelkit judge book --backend openai --model gpt-4o-mini --chapters 3,4 --no-book\n",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument(
        "--backend",
        choices=[b for b in BACKENDS if b != "offline"],
        help="the judge's backend (default: the project's)",
    )
    p.add_argument("--model", help="the judge's model")
    p.add_argument("--base-url", metavar="URL", help="OpenAI-compatible server URL")
    p.add_argument(
        "--chapters", type=_chapters, metavar="LIST", help="judge only these, e.g. 3,4 or 2-5"
    )
    p.add_argument("--no-book", action="store_true", help="judge the chapters only")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    from .server.cli import add_keys_create_arguments, add_serve_arguments

    add_serve_arguments(
        command(
            "serve",
            "run the HTTP/WebSocket sidecar over a folder of projects",
            "  novelkit keys create novels --scope write\n  novelkit serve novels --port 8765\n",
        )
    )
    _add_sweep_parsers(command)
    keys = command("keys", "manage sidecar API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    add_keys_create_arguments(
        ksub.add_parser(
            "create",
            help="create a key (printed once)",
            description="Create a sidecar API key; it is printed once and stored hashed.",
            epilog="examples:\n  novelkit keys create novels --scope read --project lighthouse\n",
            formatter_class=_formatter,
        )
    )
    return parser


def _version() -> str:
    from . import __version__

    return __version__


class _Progress:
    """Per-stage bars on stderr: redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.drawn = 0
        self.last: dict[str, tuple[str, int]] = {}

    def update(self, status: Any) -> None:
        if self.tty:
            text = status.table()
            if self.drawn:
                self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.stream.write(text + "\n")
            self.drawn = text.count("\n") + 1
        else:
            for s in status.stages:
                key = (s.state.value, s.done)
                if self.last.get(s.name) != key and s.state.value in (
                    "running",
                    "succeeded",
                    "failed",
                ):
                    self.last[s.name] = key
                    self.stream.write(
                        f"[{s.number:>2}/{len(status.stages)}] {s.name:<11} "
                        f"{s.state.value:<9} {s.done}/{s.total}\n"
                    )
            if status.retry and self.last.get("_retry", ("", 0))[0] != status.retry:
                self.last["_retry"] = (status.retry, 0)
                self.stream.write(f"  {status.retry}\n")
        self.stream.flush()


def _follow(job: Any, pause_hint: str = "novelkit pause DIR", again: str | None = None) -> int:
    """Show progress until the job stops; Ctrl-C pauses, a second Ctrl-C cancels. A job run by
    another process is only followed: Ctrl-C stops following and leaves it running. ``again``
    replaces the command the messages name for going on (an import is run again)."""
    from ._status import JobState

    presses = {"count": 0}
    following = not job.local

    def on_sigint(signum: int, frame: Any) -> None:
        presses["count"] += 1
        if following:
            return
        try:
            if presses["count"] == 1:
                sys.stderr.write("\npausing: finishing in-flight calls (Ctrl-C again to cancel)\n")
                job.pause()
            else:
                sys.stderr.write("\ncancelling\n")
                job.cancel()
        except errors.JobStateError:
            pass

    previous = signal.signal(signal.SIGINT, on_sigint)
    if following:  # said once the handler is in place, so a Ctrl-C right after it is ours
        row = job.project.store.job(job.id) or {}
        sys.stderr.write(
            f"following job {job.id} run by process {row.get('pid') or '?'}; Ctrl-C stops "
            f"following, it does not pause (to pause it: {pause_hint})\n"
        )
        sys.stderr.flush()
    progress = _Progress(sys.stderr)
    try:
        while True:
            state = job.wait(timeout=0.25)
            progress.update(job.status)
            if not state.active:
                break
            if following and presses["count"]:
                sys.stderr.write(
                    f"\nstopped following; job {job.id} is still {state.value} in the other "
                    "process\n"
                )
                return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
    status = job.status
    if status.error:
        sys.stderr.write(f"error: {status.error}\n")
    if state is JobState.SUCCEEDED:
        return EXIT_OK
    if state is JobState.FAILED and _disk_full(Exception(status.error or "")):
        where = job.project.root
        sys.stderr.write(f"the disk holding {where} is full: free space and resume\n")
        return EXIT_FAILED
    if state is JobState.FAILED:
        resume = again or "novelkit resume DIR"
        sys.stderr.write(f"the job failed; fix the problem and resume with: {resume}\n")
        return EXIT_FAILED
    if presses["count"]:
        sys.stderr.write(f"{state.value}; continue with: {again or 'novelkit run DIR'}\n")
    elif state is JobState.PAUSED:
        sys.stderr.write(f"paused: {status.message}\n")
    return EXIT_INTERRUPTED


def _export(
    project: Any, formats: list[str], out: Path | None = None, options: dict[str, Any] | None = None
) -> None:
    if out is not None and len(formats) > 1:
        raise _Usage("--out works with a single --format")
    for fmt in formats:
        path = project.export(fmt, out, **(options or {}))
        print(path)


def _cmd_generate(args: argparse.Namespace) -> int:
    import novelkit as nk

    from ._config import validate_config
    from ._prices import FREE_BACKENDS, format_cost
    from .llm import make_backend

    _check_backend_flags(args)
    config = _config_from(args)
    if (args.out / "novel.toml").exists():
        raise errors.ProjectError(
            f"{args.out} already holds a project; continue it with: novelkit run {args.out}"
        )
    # a backend that cannot start (a missing key, a bad option) fails before a folder is made
    make_backend(validate_config({"premise": args.premise, **config}, "command line"), args.out)
    note = _offline_note(args, os.environ)
    if note:
        sys.stderr.write(note)
    project = nk.new_project(args.out, premise=args.premise, **config)
    sys.stderr.write(f"backend: {_writer(project).label()}\n")
    if project.config.backend not in FREE_BACKENDS:
        sys.stderr.write(project.estimate().table() + "\n")
    code = _follow(project.start())
    if code == EXIT_OK:
        report = project.last_report()
        if report is not None:
            sys.stderr.write(report.headline() + "\n")
        status = project.status()
        sys.stderr.write(
            f"{status.tokens:,} tokens, cost {format_cost(status.cost, status.currency)}\n"
        )
        sys.stderr.write(f"written by: {_writer(project).label()}\n")
        _export(project, args.formats or ["md", "txt"])
    return code


def _writer(project: Any) -> Any:
    from ._provenance import Writer

    return Writer.of(project.config)


def _cmd_run(args: argparse.Namespace) -> int:
    import novelkit as nk

    project = nk.open_project(args.dir, rebuild_store=getattr(args, "rebuild_store", False))
    if args.max_cost is not None:
        project.configure(max_cost=args.max_cost)
    if args.stage is None:
        if args.chapters or args.force:
            raise _Usage("--chapters and --force need --stage")
        job = project.start()
    else:
        job = project.run_stage(args.stage, chapters=args.chapters, force=args.force)
    sys.stderr.write(f"backend: {_writer(project).label()}\n")
    return _follow(job, pause_hint=f"novelkit pause {args.dir}")


def _cmd_status(args: argparse.Namespace) -> int:
    import novelkit as nk

    project = nk.open_project(args.dir, rebuild_store=getattr(args, "rebuild_store", False))
    status = project.status()
    report = project.last_report()
    writer = _writer(project)
    if args.json:
        data = status.to_dict()
        data["backend"] = writer.to_dict()
        data["report"] = report.model_dump(mode="json") if report else None
        data["ledger"] = project.store.ledger()
        print(json.dumps(data, indent=2))
    else:
        print(status.table())
        print("  backend: " + writer.label())
        if report is not None and not status.extra.get("report"):
            print("  report: " + report.headline())
    return EXIT_OK


def _cmd_estimate(args: argparse.Namespace) -> int:
    import novelkit as nk

    estimate = nk.open_project(args.dir).estimate()
    print(json.dumps(estimate.to_dict(), indent=2) if args.json else estimate.table())
    return EXIT_OK


def _cmd_stages(args: argparse.Namespace) -> int:
    from ._pipeline import Pipeline
    from .stages import default_stages

    states: dict[str, str] = {}
    if args.dir is None:
        pipeline = Pipeline(default_stages())
    else:
        import novelkit as nk

        project = nk.open_project(args.dir)
        pipeline = project.pipeline
        states = {s.name: s.state.value for s in project.stages}
        print(f"{project.root.name}: {_writer(project).label()}")
    for number, stage in enumerate(pipeline, 1):
        units = (
            "per chapter" + (", parallel" if stage.parallel else "")
            if stage.per_chapter
            else "1 unit"
        )
        state = f"{states[stage.name]:<10}" if stage.name in states else ""
        print(f"{number:>2} {stage.name:<11} {state}{units:<21} {stage.description}")
    return EXIT_OK


def _cmd_control(args: argparse.Namespace) -> int:
    import novelkit as nk

    if (Path(args.dir) / "sweep.toml").exists():  # a sweep's ROOT: control the whole sweep
        from ._cli_sweep import control

        return control(args)

    project = nk.open_project(args.dir, rebuild_store=getattr(args, "rebuild_store", False))
    job = project.job
    if job is None:
        raise errors.JobStateError("this project has no job yet; start one with: novelkit run DIR")
    if args.command == "resume":
        job.resume()
        return _follow(job)
    result = job.pause(now=args.now) if args.command == "pause" else job.cancel()
    print(json.dumps(result.to_dict()))
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    import novelkit as nk

    project = nk.open_project(args.dir, rebuild_store=getattr(args, "rebuild_store", False))
    metadata = {
        k: getattr(args, k).replace("\\n", "\n")
        for k in ("author", "contact", "language", "title")
        if getattr(args, k) is not None
    }
    if metadata:
        project.configure(**metadata)
    _export(project, args.formats, args.out, dict(args.option))
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    import novelkit as nk

    project = nk.open_project(args.dir)
    card = project.report(charts=not args.no_charts)
    folder = project.root / "artefacts" / "report"
    if args.json:
        print(card.model_dump_json(indent=2))
    elif args.html:
        print((folder / "index.html").read_text(encoding="utf-8"), end="")
    else:
        print(card.headline())
        for problem in card.problems:
            print(f"  missing: {problem}")
        for issue in card.issues:
            where = f" ch {','.join(map(str, issue.chapters))}" if issue.chapters else ""
            print(f"  {issue.severity:<7} {issue.kind}{where}: {issue.message}")
        print(f"written: {folder / 'index.html'}")
    return EXIT_OK


def _cmd_judge(args: argparse.Namespace) -> int:
    import novelkit as nk

    project = nk.open_project(args.dir)
    backend = None
    settings = {
        k: v
        for k, v in (("backend", args.backend), ("model", args.model), ("base_url", args.base_url))
        if v is not None
    }
    if settings:
        from ._config import validate_config
        from .llm import make_backend

        current = project.config.model_dump(exclude_none=True)
        if settings.get("backend", current["backend"]) != current["backend"]:
            current.pop("backend_options", None)  # the project's options are another backend's
        config = validate_config({**current, **settings}, where="novelkit judge")
        backend = make_backend(config, project.root)
    scores = project.judge(backend, chapters=args.chapters, book=not args.no_book)
    if args.json:
        print(scores.model_dump_json(indent=2))
    else:
        for result in scores.results:
            label = "book" if result.chapter == 0 else f"chapter {result.chapter}"
            print(f"{label:<11} {result.score:4.1f}/10  {result.comment}")
        print(f"judge: {scores.model} ({scores.rubric}); cost {scores.cost:.4f}")
    return EXIT_OK


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ._cli_sweep import run

    return run(args)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server.cli import serve

    return serve(args)


def _cmd_keys(args: argparse.Namespace) -> int:
    from .server.cli import keys_create

    return keys_create(args)


def _cmd_new(args: argparse.Namespace) -> int:
    import novelkit as nk

    from ._config import validate_config
    from .llm import make_backend

    _check_backend_flags(args)
    config = _config_from(args)
    if config.get("backend") in KEYED_BACKENDS:  # offline is checked by new_project itself
        try:  # a bad backend option fails now; a key may still be set before the run
            make_backend(
                validate_config({"premise": args.premise, **config}, "command line"), args.dir
            )
        except errors.BackendConfigError as exc:
            sys.stderr.write(f"novelkit: note: {exc}; `novelkit run` needs it\n")
    project = nk.new_project(args.dir, premise=args.premise, **config)
    print(project.root)
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    import novelkit as nk

    config = _config_from(args)
    if args.premise is not None:
        config["premise"] = args.premise
    project = nk.import_manuscript(
        args.file,
        args.out,
        chapter_pattern=args.chapter_pattern,
        follow=lambda job: _follow(job, again="the same novelkit import command"),
        **config,
    )
    from .imports import import_info

    info = import_info(project.root)
    sys.stderr.write(
        f"imported {info['chapters']} chapters ({info['words']:,} words, found by "
        f"{info['found_by']}); the story bible is under {project.root / 'artefacts'}\n"
    )
    print(project.root)
    if args.run:
        return _follow(project.start())
    return EXIT_OK


def _cmd_extend(args: argparse.Namespace) -> int:
    import novelkit as nk

    project = nk.open_project(args.dir)
    return _follow(project.extend(chapters=args.chapters))


COMMANDS = {
    "generate": _cmd_generate,
    "new": _cmd_new,
    "import": _cmd_import,
    "extend": _cmd_extend,
    "run": _cmd_run,
    "status": _cmd_status,
    "stages": _cmd_stages,
    "estimate": _cmd_estimate,
    "pause": _cmd_control,
    "resume": _cmd_control,
    "cancel": _cmd_control,
    "export": _cmd_export,
    "report": _cmd_report,
    "judge": _cmd_judge,
    "serve": _cmd_serve,
    "keys": _cmd_keys,
    "sweep": _cmd_sweep,
    "sweep-status": _cmd_sweep,
}


def _add_sweep_parsers(command: Any) -> None:
    from ._cli_sweep import add_parsers

    add_parsers(command)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except _Usage as exc:
        getattr(args, "parser", parser).error(str(exc))
    except BrokenPipeError:  # output piped into head & co: stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (errors.NovelkitError, OSError, sqlite3.OperationalError) as exc:
        if _disk_full(exc):  # not bad input: the same command works once there is room
            where = getattr(args, "dir", None) or getattr(args, "out", None) or "the project"
            sys.stderr.write(f"novelkit: the disk holding {where} is full: free space and resume\n")
            return EXIT_FAILED
        if not isinstance(exc, errors.NovelkitError):
            raise
        sys.stderr.write(f"novelkit: {exc}\n")
        return EXIT_BAD_INPUT
    except ImportError as exc:
        sys.stderr.write(f"novelkit: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if argv is None:  # run as the program
            signal.signal(signal.SIGINT, _exit_interrupted)
            # after the threads are joined the interpreter resets Python's handlers to the
            # default, and a Ctrl-C would kill it by SIGINT; nothing is left to stop by then
            atexit.register(signal.signal, signal.SIGINT, signal.SIG_IGN)
    return EXIT_OK


def _add_rebuild_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rebuild-store",
        action="store_true",
        help="the store (.novelkit/state.db) is lost but artefacts exist: start a new one "
        "that adopts every artefact file as it is (nothing rewritten)",
    )


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC, SQLite's "database or disk is full", or an error that wraps either."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(seen)
        if "disk is full" in text or "No space left on device" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _exit_interrupted(signum: int, frame: Any) -> None:
    """Ctrl-C once the command has returned: what is left is the interpreter's shutdown
    (joining the job's threads, whose writes have landed); leave at once with the documented
    code instead of a KeyboardInterrupt in the middle of it (a second Ctrl-C that came just
    after the pause finished used to end the process by SIGINT)."""
    os._exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
