"""The ``novelkit`` command (contracts: docs/architecture.md).

Exit codes: 0 success, 1 job failed, 2 bad input, 130 interrupted (Ctrl-C paused or cancelled).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

from . import _errors as errors

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


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chapters", type=int, help="number of chapters (default 12)")
    p.add_argument("--words-per-chapter", type=int, help="target words per chapter (default 2000)")
    p.add_argument("--backend", help="offline (default), openai, anthropic or replay")
    p.add_argument("--model", help="model name for openai/anthropic backends")
    p.add_argument(
        "--base-url", help="OpenAI-compatible server URL, e.g. http://localhost:11434/v1"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--genre")
    p.add_argument("--title")
    p.add_argument("--author")
    p.add_argument("--contact")
    p.add_argument("--language")
    p.add_argument(
        "--backend-option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="backend option (repeatable), e.g. tokens_per_second=200",
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
    ):
        value = getattr(args, name, None)
        if value is not None:
            config[name] = value
    if args.backend_option:
        config["backend_options"] = dict(args.backend_option)
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novelkit", description="Write a novel with a language model."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="create a project and write the whole novel")
    p.add_argument("premise", help="one or two sentences about the story")
    p.add_argument("--out", required=True, type=Path, help="project folder to create")
    p.add_argument(
        "--format",
        action="append",
        dest="formats",
        default=None,
        help="export format(s) at the end (default md and txt)",
    )
    _add_config_options(p)

    p = sub.add_parser("new", help="create a project without running it")
    p.add_argument("dir", type=Path)
    p.add_argument("--premise", required=True)
    _add_config_options(p)

    p = sub.add_parser("run", help="run the pipeline, or one stage")
    p.add_argument("dir", type=Path)
    p.add_argument("--stage", help="stage name or number")
    p.add_argument("--chapters", type=_chapters, help="e.g. 3,4 or 2-5 (per-chapter stages)")
    p.add_argument("--force", action="store_true", help="rerun units even if up to date")

    p = sub.add_parser("status", help="show the job and stage states")
    p.add_argument("dir", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("stages", help="list the pipeline's stages")

    p = sub.add_parser("pause", help="pause a running job (also one run by another process)")
    p.add_argument("dir", type=Path)
    p.add_argument("--now", action="store_true", help="abort in-flight calls")
    p = sub.add_parser("resume", help="resume a paused or interrupted job here")
    p.add_argument("dir", type=Path)
    p = sub.add_parser("cancel", help="cancel a job (also one run by another process)")
    p.add_argument("dir", type=Path)

    p = sub.add_parser("export", help="export the manuscript")
    p.add_argument("dir", type=Path)
    p.add_argument(
        "--format",
        action="append",
        dest="formats",
        required=True,
        help="md, txt, docx, epub or pdf (repeatable)",
    )
    p.add_argument("--out", type=Path, help="output file (one format only)")
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
        help="exporter option, e.g. profile=kdp or wrap=72",
    )

    from .server.cli import add_keys_create_arguments, add_serve_arguments

    add_serve_arguments(
        sub.add_parser("serve", help="run the HTTP/WebSocket sidecar over a folder of projects")
    )
    keys = sub.add_parser("keys", help="manage sidecar API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    add_keys_create_arguments(ksub.add_parser("create", help="create a key (printed once)"))
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


def _follow(job: Any) -> int:
    """Show progress until the job stops; Ctrl-C pauses, a second Ctrl-C cancels."""
    from ._status import JobState

    presses = {"count": 0}

    def on_sigint(signum: int, frame: Any) -> None:
        presses["count"] += 1
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
    progress = _Progress(sys.stderr)
    try:
        while True:
            state = job.wait(timeout=0.25)
            progress.update(job.status)
            if not state.active:
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    status = job.status
    if status.error:
        sys.stderr.write(f"error: {status.error}\n")
    if state is JobState.SUCCEEDED:
        return EXIT_OK
    if state is JobState.FAILED:
        sys.stderr.write("the job failed; fix the problem and resume with: novelkit resume DIR\n")
        return EXIT_FAILED
    if presses["count"]:
        sys.stderr.write(f"{state.value}; continue with: novelkit run DIR\n")
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

    project = nk.new_project(args.out, premise=args.premise, **_config_from(args))
    code = _follow(project.start())
    if code == EXIT_OK:
        report = project.report()
        if report is not None:
            sys.stderr.write(report.headline() + "\n")
        _export(project, args.formats or ["md", "txt"])
    return code


def _cmd_run(args: argparse.Namespace) -> int:
    import novelkit as nk

    project = nk.open_project(args.dir)
    if args.stage is None:
        if args.chapters or args.force:
            raise _Usage("--chapters and --force need --stage")
        job = project.start()
    else:
        job = project.run_stage(args.stage, chapters=args.chapters, force=args.force)
    return _follow(job)


def _cmd_status(args: argparse.Namespace) -> int:
    import novelkit as nk

    project = nk.open_project(args.dir)
    status = project.status()
    report = project.report()
    if args.json:
        data = status.to_dict()
        data["report"] = report.model_dump(mode="json") if report else None
        data["ledger"] = project.store.ledger()
        print(json.dumps(data, indent=2))
    else:
        print(status.table())
        if report is not None and not status.extra.get("report"):
            print("  report: " + report.headline())
    return EXIT_OK


def _cmd_stages(args: argparse.Namespace) -> int:
    from ._pipeline import Pipeline
    from .stages import default_stages

    for number, stage in enumerate(Pipeline(default_stages()), 1):
        units = (
            "per chapter" + (", parallel" if stage.parallel else "")
            if stage.per_chapter
            else "1 unit"
        )
        print(f"{number:>2} {stage.name:<11} {units:<21} {stage.description}")
    return EXIT_OK


def _cmd_control(args: argparse.Namespace) -> int:
    import novelkit as nk

    project = nk.open_project(args.dir)
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

    project = nk.open_project(args.dir)
    metadata = {
        k: getattr(args, k).replace("\\n", "\n")
        for k in ("author", "contact", "language", "title")
        if getattr(args, k) is not None
    }
    if metadata:
        project.configure(**metadata)
    _export(project, args.formats, args.out, dict(args.option))
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server.cli import serve

    return serve(args)


def _cmd_keys(args: argparse.Namespace) -> int:
    from .server.cli import keys_create

    return keys_create(args)


def _cmd_new(args: argparse.Namespace) -> int:
    import novelkit as nk

    project = nk.new_project(args.dir, premise=args.premise, **_config_from(args))
    print(project.root)
    return EXIT_OK


COMMANDS = {
    "generate": _cmd_generate,
    "new": _cmd_new,
    "run": _cmd_run,
    "status": _cmd_status,
    "stages": _cmd_stages,
    "pause": _cmd_control,
    "resume": _cmd_control,
    "cancel": _cmd_control,
    "export": _cmd_export,
    "serve": _cmd_serve,
    "keys": _cmd_keys,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except _Usage as exc:
        parser.error(str(exc))
    except errors.NovelkitError as exc:
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


def _exit_interrupted(signum: int, frame: Any) -> None:
    """Ctrl-C once the command has returned: what is left is the interpreter's shutdown
    (joining the job's threads, whose writes have landed); leave at once with the documented
    code instead of a KeyboardInterrupt in the middle of it (a second Ctrl-C that came just
    after the pause finished used to end the process by SIGINT)."""
    os._exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
