"""The ``novelkit`` command: generate, new, run, status, stages, export, control, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import novelkit as nk
from novelkit.cli import main

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
