"""Issue 18's adversarial probes, each reproduced and asserted by what a user sees."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _local_client import LocalClient

import novelkit as nk

# every job transition the state machine allows (docs/architecture.md); "interrupted" only after a
# process died, which never happens in these tests
LEGAL = {
    None: {"queued"},
    "queued": {"running", "paused", "cancelled"},
    "running": {"pausing", "cancelling", "succeeded", "failed", "paused"},
    "pausing": {"paused", "cancelling", "failed", "succeeded"},
    "paused": {"queued", "cancelled"},
    "cancelling": {"cancelled", "failed"},
    "cancelled": set(),
    "succeeded": set(),
    "failed": {"queued"},
}


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_opening_a_project_never_marks_another_process_s_live_job_interrupted(
    tmp_path: Path,
) -> None:
    """The storm of the probe: processes open the project (as status, pause and cancel do)
    while another starts and cancels jobs; every job's events are legal transitions."""
    folder = tmp_path / "p"
    nk.new_project(
        folder,
        "A keeper finds a letter.",
        chapters=2,
        words_per_chapter=200,
        backend_options={"tokens_per_second": 20000, "latency": 0.001},
    ).close()
    stop = tmp_path / "stop"
    writer = _python(f"""
        import random
        import novelkit as nk
        random.seed(7)
        for _ in range(8):
            project = nk.open_project({str(folder)!r})
            for _ in range(25):
                job = project.run_stage("premise", force=True)
                if random.random() < 0.5:
                    try:
                        job.cancel()
                    except nk.JobStateError:
                        pass  # it finished first
                job.wait(30)
            project.close()
        open({str(stop)!r}, "w").close()
    """)
    opener = _python(f"""
        import os
        import novelkit as nk
        while not os.path.exists({str(stop)!r}):
            project = nk.open_project({str(folder)!r})
            job = project.job
            if job is not None:
                job.state
            project.close()
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    openers = [subprocess.Popen(opener, env=env) for _ in range(3)]
    try:
        subprocess.run(writer, env=env, check=True, timeout=300)
    finally:
        stop.touch()
        for proc in openers:
            assert proc.wait(60) == 0
    project = nk.open_project(folder)
    events = [e for e in project.store.events_since(0, 1_000_000) if e.type == "job"]
    project.close()
    last: dict[str | None, str | None] = {}
    jobs = {e.job_id for e in events}
    assert len(jobs) == 200
    for event in events:
        previous, state = last.get(event.job_id), event.data["state"]
        assert event.data["previous"] == previous, (event.job_id, event.data)
        assert state in LEGAL[previous], f"{previous} → {state} for job {event.job_id}"
        last[event.job_id] = state


# -- 1. descriptors ---------------------------------------------------------------------------

SERVER = """
    import resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the probe's `ulimit -n 1024`
    from novelkit.server import serve_in_thread
    handle = serve_in_thread(sys.argv[1], port=0, rate_limit=None, log_level="warning",
                             idle_close=1.0, max_open=int(sys.argv[2]) or None)
    print(handle.port, flush=True)
    sys.stdin.read()  # until the test closes it
    handle.stop()
"""


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _hammer(port: int, key: str, ids: list[str], clients: int, rounds: int) -> list[object]:
    """The probe's load: ``clients`` parallel GETs cycling the list, a project's events, its
    stages and the project; each outcome is (status, Retry-After) or the exception's name."""
    import http.client
    from concurrent.futures import ThreadPoolExecutor

    paths = ["/api/v2/projects"]
    for project_id in ids:
        base = f"/api/v2/projects/{project_id}"
        paths += [f"{base}/events?since=0&limit=5", f"{base}/generate/stages", base]

    def client(offset: int) -> list[object]:
        outcomes: list[object] = []
        for i in range(rounds):
            path = paths[(offset * 7 + i) % len(paths)]
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request("GET", path, headers={"X-API-Key": key})
                response = connection.getresponse()
                response.read()
                outcomes.append((response.status, response.getheader("Retry-After")))
            except OSError as exc:
                outcomes.append(type(exc).__name__)
            finally:
                connection.close()
        return outcomes

    with ThreadPoolExecutor(clients) as pool:
        return [o for outcomes in pool.map(client, range(clients)) for o in outcomes]


def _served_root(tmp_path: Path, count: int) -> tuple[Path, str, list[str]]:
    from novelkit.server import create_key

    root = tmp_path / "root"
    ids = [f"book{i:03d}" for i in range(count)]
    for project_id in ids:
        nk.new_project(root / project_id, "A keeper finds a letter.", chapters=2).close()
    return root, create_key(root, "read"), ids


@pytest.mark.parametrize("max_open", [0, 8])  # the default for 1024 descriptors; a tight one
def test_the_sidecar_never_runs_out_of_descriptors_under_the_probe_s_load(
    tmp_path: Path, max_open: int
) -> None:
    """30 projects, `ulimit -n 1024`, 45 parallel GETs: every answer is 200 or 429/503 with
    Retry-After (no 500, no dropped connection), descriptors return to the idle baseline, and
    the log does not repeat an error per request."""
    root, key, ids = _served_root(tmp_path, 30)
    log = tmp_path / "server.log"
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            [*_python(SERVER), str(root), str(max_open)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        ) as server,
    ):
        assert server.stdout is not None and server.stdin is not None
        try:
            port = int(server.stdout.readline())
            baseline = _descriptors(server.pid)
            outcomes = _hammer(port, key, ids, clients=45, rounds=30)
            errors = [o for o in outcomes if not isinstance(o, tuple)]
            assert not errors, f"{len(errors)} dropped connections: {set(errors)}"
            answered = [o for o in outcomes if isinstance(o, tuple)]
            assert {status for status, _ in answered} <= {200, 429, 503}, answered
            assert all(retry for status, retry in answered if status != 200)
            served = sum(1 for status, _ in answered if status == 200)
            assert served > (len(answered) // 2 if max_open == 0 else 0)
            deadline = time.monotonic() + 30
            while _descriptors(server.pid) > baseline and time.monotonic() < deadline:
                time.sleep(0.2)  # idle projects close after idle_close (1 s here)
            assert _descriptors(server.pid) <= baseline
        finally:
            server.stdin.close()
            server.wait(30)
    lines = log.read_text().splitlines()
    assert len(lines) < 20, lines[:20]


# -- sidecar: paths, hosts, framing, error bodies ------------------------------------------------


def _sidecar(tmp_path: Path, **options: object) -> tuple[LocalClient, str, str]:
    from novelkit.server import create_app, create_key

    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    read, write = create_key(root, "read"), create_key(root, "write")
    app = create_app(root, rate_limit=None, **options)  # type: ignore[arg-type]
    return LocalClient(app, raise_server_exceptions=False), read, write


def test_a_symlink_out_of_the_root_is_neither_listed_nor_served(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    nk.new_project(elsewhere / "book", "A keeper finds a letter.").close()
    client, read, write = _sidecar(tmp_path)
    root = tmp_path / "root"
    nk.new_project(root / "inside", "A keeper finds a letter.").close()
    (root / "linked").symlink_to(elsewhere / "book")
    (root / "alias").symlink_to(root / "inside")  # a second name for a project: not served
    with client:
        listed = client.get("/api/v2/projects", headers={"X-API-Key": read}).json()
        assert [p["id"] for p in listed["projects"]] == ["inside"]
        for project_id in ("linked", "alias"):
            answer = client.get(f"/api/v2/projects/{project_id}", headers={"X-API-Key": read})
            assert answer.status_code == 404
            exported = client.post(
                f"/api/v2/projects/{project_id}/export",
                json={"format": "md"},
                headers={"X-API-Key": write},
            )
            assert exported.status_code == 404
    assert not (elsewhere / "book" / "exports").exists() or not any(
        (elsewhere / "book" / "exports").iterdir()
    )


def test_only_allowed_host_names_are_answered(tmp_path: Path) -> None:
    from starlette.testclient import WebSocketDenialResponse
    from starlette.websockets import WebSocketDisconnect

    client, read, _ = _sidecar(tmp_path)
    nk.new_project(tmp_path / "root" / "book", "A keeper finds a letter.").close()
    evil = {"Host": "evil.example:8765", "X-API-Key": read}
    with client:
        assert client.get("/api/v2/projects", headers={"X-API-Key": read}).status_code == 200
        refused = client.get("/api/v2/projects", headers=evil)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "bad_host"
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
        # DNS rebinding: a page on evil.example sends its own Origin and Host
        with pytest.raises((WebSocketDenialResponse, WebSocketDisconnect)):
            with client.websocket_connect(
                "ws://evil.example:8765/api/v2/projects/book/ws",
                subprotocols=["novelkit.v1", "novelkit.key." + read],
                headers={"Origin": "http://evil.example:8765"},
            ):
                pass
        # X-Forwarded-Host does not make an Origin this server's own unless proxy headers are on
        with pytest.raises((WebSocketDenialResponse, WebSocketDisconnect)):
            with client.websocket_connect(
                "/api/v2/projects/book/ws",
                subprotocols=["novelkit.v1", "novelkit.key." + read],
                headers={"Origin": "http://evil.example", "X-Forwarded-Host": "evil.example"},
            ):
                pass
    allowed, read2, _ = _sidecar(tmp_path, allowed_hosts=["books.lan"])
    with allowed:
        answer = allowed.get(
            "/api/v2/projects", headers={"Host": "books.lan:8765", "X-API-Key": read2}
        )
        assert answer.status_code == 200


def test_the_dashboard_and_docs_may_not_be_framed(tmp_path: Path) -> None:
    client, _, _ = _sidecar(tmp_path)
    with client:
        for path in ("/", "/docs"):
            answer = client.get(path)
            assert answer.status_code == 200
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert answer.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("damage", ["latin-1", "folder", "syntax"])
def test_a_broken_novel_toml_is_a_409_naming_the_file_without_server_paths(
    tmp_path: Path, damage: str
) -> None:
    client, read, _ = _sidecar(tmp_path)
    folder = tmp_path / "root" / "book"
    nk.new_project(folder, "A keeper finds a letter.").close()
    path = folder / "novel.toml"
    if damage == "latin-1":
        path.write_bytes(path.read_text().replace("Anonymous", "Andrés").encode("latin-1"))
    elif damage == "folder":
        path.unlink()
        path.mkdir()
    else:
        path.write_text(path.read_text().replace("chapters = 12", "chapters = = 12"))
    with client:
        answer = client.get("/api/v2/projects/book", headers={"X-API-Key": read})
        listed = client.get("/api/v2/projects", headers={"X-API-Key": read})
    if damage == "folder":  # no novel.toml file: not a project folder at all
        assert answer.status_code == 404
    else:
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["code"] == "invalid_config" and "book/novel.toml" in error["message"]
        assert str(tmp_path) not in answer.text
    assert listed.status_code == 200  # one broken folder does not hide the list


def test_a_huge_bad_value_is_a_short_error_body(tmp_path: Path) -> None:
    client, _, write = _sidecar(tmp_path, max_body=4_000_000)
    nk.new_project(tmp_path / "root" / "book", "A keeper finds a letter.").close()
    project = nk.open_project(tmp_path / "root" / "book")
    with pytest.raises(nk.ConfigError) as caught:
        project.configure(premise="word " * 200_000)
    project.close()
    assert len(str(caught.value)) < 500 and "cut; 1000000 characters" in str(caught.value)
    with client:
        answer = client.post(
            "/api/v2/projects/book/export",
            json={"format": "md", "author": "A" * 1_000_000},
            headers={"X-API-Key": write},
        )
    assert 400 <= answer.status_code < 500
    assert len(answer.content) < 2_000
    assert str(tmp_path) not in answer.text


# -- 9. vanished WebSocket clients ---------------------------------------------------------------


def test_websocket_clients_that_vanish_are_dropped_without_log_noise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """90 clients abort (TCP reset, no close frame) while a job streams to them: the server
    stops writing to each at its first failed send; the log holds a line at most."""
    import socket
    import struct

    from websockets.sync.client import connect

    from novelkit.server import create_key, serve_in_thread

    root = tmp_path / "root"
    nk.new_project(
        root / "book",
        "A keeper finds a letter.",
        chapters=3,
        words_per_chapter=2000,
        backend_options={"tokens_per_second": 30000, "latency": 0.001},
    ).close()
    read, write = create_key(root, "read"), create_key(root, "write")
    handle = serve_in_thread(root, port=0, rate_limit=None, log_level="warning")
    url = f"ws://127.0.0.1:{handle.port}/api/v2/projects/book/ws"
    try:
        with caplog.at_level(logging.WARNING):
            import httpx

            started = httpx.post(
                f"http://127.0.0.1:{handle.port}/api/v2/projects/book/generate",
                headers={"X-API-Key": write},
            )
            assert started.status_code in (200, 201, 202), started.text
            for _ in range(3):
                with contextlib.ExitStack() as stack:
                    clients = [
                        stack.enter_context(
                            connect(url, subprotocols=["novelkit.v1", f"novelkit.key.{read}"])  # type: ignore[list-item]
                        )
                        for _ in range(30)
                    ]
                    for ws in clients:
                        ws.recv(timeout=10)  # the first status: it is being served
                    time.sleep(0.3)  # the job streams to them meanwhile
                    for ws in clients:  # vanish: a reset, no close frame
                        ws.socket.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        ws.socket.close()
                    with contextlib.suppress(Exception):
                        stack.close()
            time.sleep(1.0)  # the job goes on streaming to where they were
            with connect(url, subprotocols=["novelkit.v1", f"novelkit.key.{read}"]) as alive:  # type: ignore[list-item]
                assert "status" in alive.recv(timeout=10)  # the server still serves
            httpx.post(
                f"http://127.0.0.1:{handle.port}/api/v2/projects/book/generate/cancel",
                headers={"X-API-Key": write},
            )
    finally:
        handle.stop()
    noise = [r.getMessage() for r in caplog.records if "send" in r.getMessage().lower()]
    assert len(noise) <= 1, noise[:5]


# -- 4. a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 2 MB tmpfs where the suite runs as root and may mount; else None (ENOSPC injected)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = os.geteuid() == 0 and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        == 0
    )
    yield mount if made else None
    if made:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_clear_error_and_status_stays_readable(
    small_disk: Path | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--chapters", "12", "--words-per-chapter", "2000"]
    args += ["--backend-option", "tokens_per_second=1000000"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cli = [sys.executable, "-m", "novelkit.cli"]
    if small_disk is not None:
        folder = small_disk / "p"
        run = subprocess.run(
            [*cli, "generate", "A keeper finds a letter.", "--out", str(folder), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert run.returncode == 1, run.stderr[-2000:]
        assert f"the disk holding {folder} is full: free space and resume" in run.stderr
        assert "Traceback" not in run.stderr
        status = subprocess.run(
            [*cli, "status", str(folder)], capture_output=True, text=True, env=env, timeout=60
        )
        assert status.returncode == 0, status.stderr
        assert "Traceback" not in status.stderr
        # room again: the job resumes and finishes, repeating nothing
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        resumed = subprocess.run(
            [*cli, "resume", str(folder)], capture_output=True, text=True, env=env, timeout=300
        )
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert (folder / "artefacts").is_dir()
    else:  # no mount here: the same outcome with ENOSPC injected where files are written
        import errno

        from novelkit import _artefacts
        from novelkit.cli import main

        def full(*_: object, **__: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(_artefacts, "write_atomic", full)
        folder = tmp_path / "p"
        assert main(["new", str(folder), "--premise", "A keeper finds a letter."]) == 1


# -- 10. a lost store ------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["deleted", "emptied"])
def test_a_lost_store_is_never_silently_regenerated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], loss: str
) -> None:
    from novelkit.cli import main

    folder = tmp_path / "p"
    generate = ["generate", "A keeper finds a letter.", "--out", str(folder)]
    assert main([*generate, "--chapters", "2", "--words-per-chapter", "200"]) == 0
    outline = folder / "artefacts" / "05-chapters.json"
    edited = outline.read_text().replace("The Quiet Keeper", "Ada's Own Title", 1)
    assert edited != outline.read_text()
    outline.write_text(edited)  # a hand edit, as in the probe
    before = {p: p.read_bytes() for p in (folder / "artefacts").rglob("*") if p.is_file()}
    state = folder / ".novelkit"
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (state / name).unlink(missing_ok=True)
    if loss == "emptied":
        (state / "state.db").write_bytes(b"")
    capsys.readouterr()
    assert main(["run", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "state.db is " + ("missing" if loss == "deleted" else "empty") in err
    assert "--rebuild-store" in err and "Traceback" not in err
    assert main(["run", str(folder), "--rebuild-store"]) == 0, capsys.readouterr().err
    after = {p: p.read_bytes() for p in (folder / "artefacts").rglob("*") if p.is_file()}
    assert after == before  # every artefact kept as it was, the hand edit included
    project = nk.open_project(folder)
    assert project.store.ledger() == {} or all(
        not row["prompt_tokens"] for row in project.store.ledger().values()
    )  # no paid call repeated
    assert all(stage.state.value == "succeeded" for stage in project.status().stages), [
        (s.name, s.state) for s in project.status().stages
    ]
    project.close()
