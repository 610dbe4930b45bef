"""The ``novelkit`` command: generate, new, run, status, stages, export, control, exit codes."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import novelkit as nk
from novelkit._pipeline import Outputs, Stage
from novelkit._runner import UnitContext
from novelkit.cli import build_parser, main
from novelkit.stages import default_stages

PREMISE = "A ferry pilot smuggles letters across a closed border."


def test_generate_writes_a_complete_novel_and_exports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "novel"
    code = main(
        ["generate", PREMISE, "--out", str(out), "--chapters", "4", "--words-per-chapter", "400"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.split() == [
        str(out / "exports" / "novel.md"),
        str(out / "exports" / "novel.txt"),
    ]
    assert "[12/12] assemble    succeeded 1/1" in captured.err
    assert "words in 4 chapters" in captured.err
    text = (out / "exports" / "novel.md").read_text()
    assert text.startswith("---\n") and text.count("\n# ") >= 4


def test_new_then_run_stage_then_status_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    assert (
        main(
            [
                "new",
                str(folder),
                "--premise",
                PREMISE,
                "--chapters",
                "2",
                "--words-per-chapter",
                "200",
                "--backend-option",
                "chunk_words=4",
            ]
        )
        == 0
    )
    assert "chunk_words = 4" in (folder / "novel.toml").read_text()
    assert main(["run", str(folder), "--stage", "1"]) == 0
    capsys.readouterr()
    assert main(["status", str(folder), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "succeeded"
    assert [s["state"] for s in status["stages"]][:2] == ["succeeded", "pending"]
    assert status["ledger"]["premise"]["calls"] == 1
    assert main(["run", str(folder)]) == 0
    capsys.readouterr()
    assert main(["status", str(folder)]) == 0
    assert "report: " in capsys.readouterr().out
    assert main(["run", str(folder), "--stage", "draft", "--chapters", "2", "--force"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "{missing}"], "is not a folder"),
        (["new", "{tmp}/x", "--premise", "p", "--chapters", "0"], "chapters = 0 is invalid"),
        (
            ["new", "{tmp}/x", "--premise", "p", "--backend-option", "speed=3"],
            "not an option of the offline backend",
        ),
        (["run", "{project}", "--stage", "drafts"], "did you mean 'draft'"),
        (["run", "{project}", "--stage", "draft", "--chapters", "1"], "needs stage 1 'premise'"),
        (
            ["export", "{project}", "--format", "md"],
            "no manuscript yet: run the pipeline to stage 12",
        ),
        (
            ["export", "{project}", "--format", "odt"],
            "unknown export format 'odt'; choose one of: md, txt",
        ),
        (["resume", "{project}"], "has no job yet"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    project = tmp_path / "project"
    nk.new_project(project, premise=PREMISE, chapters=2).close()
    args = [a.format(missing=tmp_path / "nope", tmp=tmp_path, project=project) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_argument_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["run", "x", "--chapters", "three"])
    assert info.value.code == 2
    assert "is not a chapter list" in capsys.readouterr().err


def test_stages_lists_the_twelve(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stages"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and lines[6].split()[:2] == ["7", "draft"]


def slow_project(folder: Path) -> None:
    """A project whose job streams long enough to be interrupted from outside."""
    nk.new_project(
        folder,
        premise=PREMISE,
        chapters=3,
        words_per_chapter=300,
        backend_options={"tokens_per_second": 1500},
    ).close()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "novelkit.cli", *args]


@pytest.mark.slow
def test_ctrl_c_pauses_then_second_ctrl_c_cancels(tmp_path: Path) -> None:
    folder = tmp_path / "slow"
    slow_project(folder)
    with subprocess.Popen(_cli("run", str(folder)), stderr=subprocess.PIPE, text=True) as proc:
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "pausing" in err and "novelkit run DIR" in err
    project = nk.open_project(folder)
    assert project.job is not None and project.job.state is nk.JobState.PAUSED
    project.close()

    with subprocess.Popen(_cli("run", str(folder)), stderr=subprocess.PIPE, text=True) as proc:
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    project = nk.open_project(folder)
    assert project.job is not None and project.job.state in (
        nk.JobState.CANCELLED,
        nk.JobState.PAUSED,
    )
    assert project.start().wait(60) is nk.JobState.SUCCEEDED
    project.close()


@pytest.mark.slow
def test_pause_and_cancel_a_job_run_by_another_process(tmp_path: Path) -> None:
    folder = tmp_path / "other"
    slow_project(folder)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        _cli("run", str(folder)), stderr=subprocess.PIPE, text=True, env=env
    ) as runner:
        time.sleep(1.0)
        out = subprocess.run(
            _cli("pause", str(folder), "--now"), capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["changed"] is True
        _, err = runner.communicate(timeout=30)
    assert runner.returncode == 130, err
    status = subprocess.run(
        _cli("status", str(folder), "--json"), capture_output=True, text=True, timeout=30
    )
    assert json.loads(status.stdout)["state"] == "paused"
    resumed = subprocess.run(
        _cli("resume", str(folder)), capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    again = subprocess.run(_cli("pause", str(folder)), capture_output=True, text=True, timeout=30)
    assert again.returncode == 2 and "cannot pause a job that is succeeded" in again.stderr


def test_export_sets_metadata_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "novel"
    assert (
        main(
            [
                "generate",
                PREMISE,
                "--out",
                str(out),
                "--chapters",
                "2",
                "--words-per-chapter",
                "200",
            ]
        )
        == 0
    )
    capsys.readouterr()
    code = main(
        [
            "export",
            str(out),
            "--format",
            "md",
            "--author",
            "Ada Marlowe",
            "--contact",
            "ada@example.com\\n12 Quay Street",
            "--title",
            "Salt Letters",
        ]
    )
    assert code == 0
    path = Path(capsys.readouterr().out.strip())
    front = path.read_text().split("---")[1]
    assert "Ada Marlowe" in front and "Salt Letters" in front
    config = (out / "novel.toml").read_text()
    assert (
        'author = "Ada Marlowe"' in config
        and 'contact = "ada@example.com\\n12 Quay Street"' in config
    )
    project = nk.open_project(out)
    assert project.config.contact == "ada@example.com\n12 Quay Street"
    project.close()


def test_ctrl_c_while_the_program_exits_leaves_at_once_with_the_interrupted_code() -> None:
    """A second Ctrl-C often lands just after the pause finished, while the interpreter joins
    the job's threads: it must end the program with 130, not kill it by SIGINT."""
    child = textwrap.dedent(
        """
        import sys, threading, time
        from novelkit.cli import main
        sys.argv = ["novelkit", "stages"]
        threading.Thread(target=time.sleep, args=(5,)).start()  # joined at exit, like a job's
        code = main()
        print("returned", code, flush=True)
        sys.exit(code)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        lines = []
        while not (line := proc.stdout.readline()).startswith("returned"):
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert time.monotonic() - started < 2, "it waited for the thread instead of leaving"
    assert any("draft" in line for line in lines), "the command itself ran"


# -- flags the backend would ignore, help, stages DIR, python -m --------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "gpt-4o"], "--model gpt-4o needs --backend openai"),
        (["--model", "claude-sonnet-4-5"], "--model claude-sonnet-4-5 needs --backend anthropic"),
        (["--backend", "offline", "--model", "gpt-4o"], "the offline backend uses no model"),
        (["--base-url", "http://localhost:11434/v1"], "--base-url needs --backend openai"),
        (["--backend", "openai"], "--backend openai needs --model, e.g. --model gpt-4o-mini"),
        (["--backend", "anthropic"], "--backend anthropic needs --model"),
        (["--backend", "gpt"], "invalid choice: 'gpt' (choose from 'offline', 'openai'"),
    ],
)
@pytest.mark.parametrize("command", ["generate", "new"])
def test_a_flag_the_backend_would_ignore_exits_2_saying_what_to_add(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    flags: list[str],
    message: str,
) -> None:
    out = tmp_path / "book"
    argv = (
        ["generate", PREMISE, "--out", str(out)]
        if command == "generate"
        else ["new", str(out), "--premise", PREMISE]
    )
    with pytest.raises(SystemExit) as info:
        main([*argv, *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert f"novelkit {command}: error:" in err  # the command's own usage, not the top level
    assert not out.exists()


def test_generate_with_a_missing_key_fails_before_making_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    out = tmp_path / "book"
    code = main(
        ["generate", PREMISE, "--out", str(out), "--backend", "openai", "--model", "gpt-4o"]
    )
    assert code == 2
    assert "OPENAI_API_KEY is missing" in capsys.readouterr().err
    assert not out.exists()  # so the same command works once the key is set


def test_an_offline_book_is_labelled_placeholder_prose_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-unused")
    out = tmp_path / "book"
    assert main(["generate", PREMISE, "--out", str(out), "--chapters", "2"]) == 0
    err = capsys.readouterr().err
    assert "no --backend given, so the offline backend writes placeholder prose" in err
    assert "OPENAI_API_KEY is set but unused" in err
    assert "add --backend openai --model gpt-4o-mini" in err
    assert err.rstrip().endswith("written by: offline — placeholder prose, not written by a model")

    assert main(["status", str(out)]) == 0
    assert "backend: offline — placeholder prose, not written by a model" in capsys.readouterr().out
    assert main(["status", str(out), "--json"]) == 0
    backend = json.loads(capsys.readouterr().out)["backend"]
    assert backend["name"] == "offline" and backend["model"] is None
    assert backend["placeholder"] is True


def test_status_names_the_backend_and_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "book"
    argv = ["new", str(folder), "--premise", PREMISE, "--backend", "openai", "--model", "gpt-4o"]
    assert main(argv) == 0
    project = nk.open_project(folder)
    project.configure(stages={"draft": {"model": "gpt-4o-mini"}})
    project.close()
    capsys.readouterr()
    assert main(["status", str(folder)]) == 0
    assert "backend: openai, model gpt-4o (draft: gpt-4o-mini)" in capsys.readouterr().out
    assert main(["status", str(folder), "--json"]) == 0
    backend = json.loads(capsys.readouterr().out)["backend"]
    assert backend == {
        "name": "openai",
        "model": "gpt-4o",
        "stage_models": {"draft": "gpt-4o-mini"},
        "placeholder": False,
        "label": "openai, model gpt-4o (draft: gpt-4o-mini)",
    }


def _all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _all_parsers(sub)


def test_every_option_of_every_command_is_described() -> None:
    parsers = list(_all_parsers(build_parser()))
    assert {p.prog for p in parsers} >= {
        f"novelkit {c}"
        for c in ("generate", "new", "run", "status", "stages", "export", "serve", "keys create")
    }
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{parser.prog} {action.option_strings or action.dest} has no help"
    generate = next(p for p in parsers if p.prog == "novelkit generate")
    backend = next(a for a in generate._actions if "--backend" in a.option_strings)
    assert list(backend.choices or ()) == ["offline", "openai", "anthropic", "replay"]


def test_help_shows_examples_and_the_environment_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for variable in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"):
        assert variable in text
    assert "examples:" in text and "novelkit generate" in text and "exit codes" in text
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    assert "{offline,openai,anthropic,replay}" in text
    assert "examples:" in text and "OPENAI_API_KEY" in text
    for command in ("run", "status", "stages", "export", "serve"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "examples:" in capsys.readouterr().out, command


class Epilogue(Stage):
    name = "epilogue"
    description = "A short epilogue after the manuscript."
    inputs = ("assemble",)
    path = "13-epilogue.md"
    calls_llm = False

    async def run(self, ctx: UnitContext, unit: str) -> Outputs:
        return {self.path: "The end.\n"}


def test_stages_dir_lists_the_projects_own_pipeline_and_states(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import novelkit._project

    folder = tmp_path / "book"
    nk.new_project(folder, premise=PREMISE, chapters=2).close()
    monkeypatch.setattr(
        novelkit._project, "default_stages", lambda: [*default_stages(), Epilogue()]
    )
    project = nk.open_project(folder)
    assert project.run_stage("premise").wait(30) is nk.JobState.SUCCEEDED
    project.close()
    assert main(["stages", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "book: offline — placeholder prose, not written by a model"
    assert lines[1].split()[:3] == ["1", "premise", "succeeded"]
    assert lines[2].split()[:3] == ["2", "world", "pending"]
    assert lines[13].split()[:3] == ["13", "epilogue", "pending"]
    assert len(lines) == 14


def test_python_m_novelkit_is_the_same_command(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "novelkit", *args], capture_output=True, text=True, timeout=60
        )

    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"novelkit {nk.__version__}"
    assert run("stages").stdout.splitlines()[6].split()[:2] == ["7", "draft"]
    bad = run("generate", PREMISE, "--out", str(tmp_path / "b"), "--model", "gpt-4o")
    assert bad.returncode == 2 and "needs --backend openai" in bad.stderr
    missing = run("status", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_the_version_has_one_source() -> None:
    from importlib.metadata import version

    assert version("novelkit") == nk.__version__
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject


@pytest.mark.slow
def test_run_announces_following_another_process_and_ctrl_c_leaves_it_running(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "other"
    slow_project(folder)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(_cli("run", str(folder)), stderr=subprocess.DEVNULL, env=env) as runner:
        project = nk.open_project(folder)
        deadline = time.monotonic() + 30
        while (project.job is None or project.job.state is not nk.JobState.RUNNING) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert project.job is not None and project.job.state is nk.JobState.RUNNING
        with subprocess.Popen(
            _cli("run", str(folder)), stderr=subprocess.PIPE, text=True, env=env
        ) as follower:
            assert follower.stderr is not None
            first = follower.stderr.readline()
            announced = follower.stderr.readline()
            follower.send_signal(signal.SIGINT)
            _, rest = follower.communicate(timeout=30)
        assert first == "backend: offline — placeholder prose, not written by a model\n"
        assert announced.startswith(f"following job {project.job.id} run by process {runner.pid};")
        assert "Ctrl-C stops following, it does not pause" in announced
        assert follower.returncode == 130, rest
        assert "stopped following" in rest
        assert project.job.state is nk.JobState.RUNNING  # the runner's job was left alone
        assert runner.wait(timeout=120) == 0
    assert project.job.wait(timeout=10) is nk.JobState.SUCCEEDED
    project.close()


def test_new_refuses_an_option_of_another_backend_and_notes_a_missing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    folder = tmp_path / "book"
    argv = ["new", str(folder), "--premise", PREMISE, "--backend", "openai", "--model", "gpt-4o"]
    assert main([*argv, "--backend-option", "tokens_per_second=3"]) == 2
    assert "tokens_per_second is not an option of the openai backend" in capsys.readouterr().err
    assert not folder.exists()
    assert main(argv) == 0  # the key can be set before the run
    err = capsys.readouterr().err
    assert "note: OPENAI_API_KEY is missing" in err and "`novelkit run` needs it" in err
    assert (folder / "novel.toml").exists()
