"""The sidecar's REST routes and WebSocket messages through Starlette's TestClient."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _local_client import LocalClient
from _tools import STAGE_NAMES
from starlette.testclient import TestClient

import novelkit as nk
from novelkit._events import Event
from novelkit.server import create_app, create_key
from novelkit.server.feed import RESYNC, Client, ClientQueue, Outgoing, ProjectFeed
from novelkit.server.limits import RateLimit

PREMISE = "A lighthouse keeper finds a letter from her drowned brother, dated after his death."
SLOW = {"tokens_per_second": 2000, "latency": 0.01}
STAGES = STAGE_NAMES


class Env:
    """A served root with projects, keys and a TestClient."""

    def __init__(self, root: Path, client: TestClient) -> None:
        self.root = root
        self.client = client
        self.write = create_key(root, "write")
        self.read = create_key(root, "read")

    def h(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.write}"}

    def get(self, path: str, key: str | None = None, **kw: Any) -> Any:
        return self.client.get(path, headers={**self.h(key), **kw.pop("headers", {})}, **kw)

    def post(self, path: str, body: Any = None, key: str | None = None, **kw: Any) -> Any:
        headers = {**self.h(key), **kw.pop("headers", {})}
        if body is None:
            return self.client.post(path, headers=headers, **kw)
        return self.client.post(path, json=body, headers=headers, **kw)

    def wait_state(self, project: str, *states: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = self.get(f"/api/v2/projects/{project}/generate/status").json()
            if status["state"] in states or time.monotonic() > deadline:
                return status
            time.sleep(0.02)


def make_root(root: Path, *, finished: bool = True) -> None:
    fast = nk.new_project(root / "done", premise=PREMISE, chapters=3, words_per_chapter=300)
    if finished:
        fast.start().wait(60)
        fast.export("md")
    fast.close()
    nk.new_project(
        root / "slow", premise=PREMISE, chapters=3, words_per_chapter=300, backend_options=SLOW
    ).close()
    nk.new_project(root / "fresh", premise=PREMISE, chapters=3, words_per_chapter=300).close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    make_root(tmp_path)
    app = create_app(tmp_path, rate_limit=None)
    with LocalClient(app) as client:
        yield Env(tmp_path, client)


# -- routes ------------------------------------------------------------------------------------


def test_whoami_reports_scope_and_project(env: Env) -> None:
    assert env.get("/api/v2/whoami").json()["scope"] == "write"
    scoped = create_key(env.root, "read", project="done")
    me = env.get("/api/v2/whoami", scoped).json()
    assert (me["scope"], me["project"]) == ("read", "done")
    assert "nk_" not in json.dumps(me)


def test_projects_list_and_detail(env: Env) -> None:
    listed = env.get("/api/v2/projects").json()["projects"]
    assert [p["id"] for p in listed] == ["done", "fresh", "slow"]
    assert {p["id"]: p["state"] for p in listed}["done"] == "succeeded"
    scoped = create_key(env.root, "read", project="fresh")
    assert [p["id"] for p in env.get("/api/v2/projects", scoped).json()["projects"]] == ["fresh"]
    detail = env.get("/api/v2/projects/done").json()
    assert detail["chapters"] == 3 and detail["status"]["state"] == "succeeded"
    assert detail["exports"]["md"]["exported"] is True
    assert str(env.root) not in json.dumps(detail)  # no server paths
    assert env.get("/api/v2/projects/nope").status_code == 404


def test_status_and_stages(env: Env) -> None:
    status = env.get("/api/v2/projects/fresh/generate/status", env.read).json()
    assert status["state"] is None and status["progress"] == 0
    stages = env.get("/api/v2/projects/done/generate/stages", env.read).json()["stages"]
    assert [s["name"] for s in stages] == STAGES
    assert all(s["state"] == "succeeded" for s in stages)


def test_generate_pause_resume_cancel_lifecycle(env: Env) -> None:
    base = "/api/v2/projects/slow/generate"
    first = env.post(base)
    assert first.status_code == 202 and first.json()["changed"] is True
    again = env.post(base)
    assert again.status_code == 200 and again.json()["changed"] is False
    assert again.json()["job_id"] == first.json()["job_id"]
    paused = env.post(f"{base}/pause", {"now": True})
    assert paused.status_code == 200 and paused.json()["changed"] is True
    assert env.wait_state("slow", "paused")["state"] == "paused"
    same = env.post(f"{base}/pause", {"now": False})
    assert same.status_code == 200 and same.json() == {
        **same.json(),
        "changed": False,
        "state": "paused",
    }
    resumed = env.post(f"{base}/resume")
    assert resumed.json()["changed"] is True
    assert env.post(f"{base}/resume").json()["changed"] is False
    cancelled = env.post(f"{base}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["changed"] is True
    assert env.wait_state("slow", "cancelled")["state"] == "cancelled"
    assert env.post(f"{base}/cancel").json()["changed"] is False
    illegal = env.post(f"{base}/pause")
    assert illegal.status_code == 409
    assert illegal.json()["error"]["code"] == "illegal_transition"
    assert illegal.json()["error"]["state"] == "cancelled"
    illegal_resume = env.post(f"{base}/resume")
    assert (
        illegal_resume.status_code == 409 and illegal_resume.json()["error"]["state"] == "cancelled"
    )


def test_control_without_a_job_is_409(env: Env) -> None:
    for action in ("pause", "resume", "cancel"):
        response = env.post(f"/api/v2/projects/fresh/generate/{action}")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "no_job"


def test_cancel_after_success_is_409_with_state(env: Env) -> None:
    response = env.post("/api/v2/projects/done/generate/cancel")
    assert response.status_code == 409 and response.json()["error"]["state"] == "succeeded"


def test_run_stage_for_real_and_its_errors(env: Env) -> None:
    base = "/api/v2/projects/done/generate/stages"
    unknown = env.post(f"{base}/drafts", {})
    assert unknown.status_code == 422
    assert all(name in unknown.json()["error"]["message"] for name in STAGES)
    assert env.post(f"{base}/0", {}).status_code == 422
    bad_chapters = env.post(f"{base}/draft", {"chapters": [9]})
    assert (
        bad_chapters.status_code == 422
        and "not in the outline" in bad_chapters.json()["error"]["message"]
    )
    single = env.post(f"{base}/premise", {"chapters": [1]})
    assert single.status_code == 422
    missing = env.post("/api/v2/projects/fresh/generate/stages/draft", {})
    assert missing.status_code == 422 and "has not run yet" in missing.json()["error"]["message"]
    ran = env.post(f"{base}/draft", {"chapters": [2], "force": True})
    assert ran.status_code == 202 and ran.json()["changed"] is True
    assert env.wait_state("done", "succeeded")["state"] == "succeeded"
    events = env.get("/api/v2/projects/done/events?since=0&limit=1000").json()["events"]
    done_units = [
        e
        for e in events
        if e["type"] == "unit"
        and e["stage"] == "draft"
        and e["state"] == "done"
        and e["job_id"] == ran.json()["job_id"]
    ]
    assert [e["unit"] for e in done_units] == ["ch02"]
    stages = {
        s["name"]: s["state"]
        for s in env.get("/api/v2/projects/done/generate/stages").json()["stages"]
    }
    assert stages["continuity"] == "stale"  # downstream of the rerun chapter


def test_run_stage_while_a_job_runs_is_409(env: Env) -> None:
    env.post("/api/v2/projects/slow/generate")
    response = env.post("/api/v2/projects/slow/generate/stages/premise", {"force": True})
    assert response.status_code == 409
    assert response.json()["error"]["state"] in ("queued", "running")
    env.post("/api/v2/projects/slow/generate/cancel")
    env.wait_state("slow", "cancelled")


def test_run_stage_while_another_stage_runs_is_409_and_leaves_it_alone(env: Env) -> None:
    nk.new_project(
        env.root / "crawl",
        premise=PREMISE,
        chapters=3,
        words_per_chapter=300,
        backend_options={"tokens_per_second": 100, "latency": 0.05},  # premise takes ~1 s
    ).close()
    base = "/api/v2/projects/crawl/generate/stages"
    first = env.post(f"{base}/premise", {})
    assert first.status_code == 202
    job_id = first.json()["job_id"]
    deadline = time.monotonic() + 20
    running = env.get("/api/v2/projects/crawl/generate/status").json()
    while running["stage"] != "premise" and time.monotonic() < deadline:
        time.sleep(0.02)
        running = env.get("/api/v2/projects/crawl/generate/status").json()
    assert (running["state"], running["stage"], running["id"]) == ("running", "premise", job_id)
    for stage, body in (("premise", {"force": True}), ("1", {}), ("world", {})):
        refused = env.post(f"{base}/{stage}", body)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "illegal_transition" and error["state"] == "running"
        assert "a job is running" in error["message"]
    during = env.get("/api/v2/projects/crawl/generate/status").json()
    assert (during["id"], during["state"]) == (job_id, "running")
    stages = {s["name"]: s["state"] for s in during["stages"]}
    assert stages["premise"] == "running" and stages["world"] == "pending"
    assert env.wait_state("crawl", "succeeded")["state"] == "succeeded"
    events = env.get("/api/v2/projects/crawl/events?limit=1000").json()["events"]
    assert {e["job_id"] for e in events if e["type"] == "job"} == {job_id}  # no second job
    states = [e["state"] for e in events if e["type"] == "job"]
    assert states == ["queued", "running", "succeeded"]
    units = [(e["stage"], e["state"]) for e in events if e["type"] == "unit"]
    assert units.count(("premise", "done")) == 1 and not any(s != "premise" for s, _ in units)


def test_stage_by_number(env: Env) -> None:
    response = env.post("/api/v2/projects/done/generate/stages/1", {"force": True})
    assert response.status_code == 202 and "premise" in response.json()["message"]
    env.wait_state("done", "succeeded")


def test_events_since_and_limits(env: Env) -> None:
    page = env.get("/api/v2/projects/done/events?since=0&limit=5").json()
    assert [e["seq"] for e in page["events"]] == [1, 2, 3, 4, 5]
    assert page["more"] is True and page["next_since"] == 5 and page["first_seq"] == 1
    rest = env.get(f"/api/v2/projects/done/events?since={page['last_seq'] - 2}").json()
    assert [e["seq"] for e in rest["events"]] == [page["last_seq"] - 1, page["last_seq"]]
    assert rest["more"] is False
    for bad in ("-1", "abc", "1.5"):
        assert env.get(f"/api/v2/projects/done/events?since={bad}").status_code == 422
    assert env.get("/api/v2/projects/done/events?limit=0").status_code == 422
    assert env.get("/api/v2/projects/done/events?limit=1001").status_code == 422


def test_exports_list_create_download_status(env: Env) -> None:
    listed = env.get("/api/v2/projects/done/export", env.read).json()
    assert listed["formats"][:2] == ["md", "txt"]
    assert {e["format"]: e["exported"] for e in listed["exports"]}["md"] is True
    created = env.post("/api/v2/projects/done/export", {"formats": ["txt", "md"]})
    assert created.status_code == 200
    assert [e["format"] for e in created.json()["exports"]] == ["txt", "md"]
    assert all(
        e["exported"] and e["size"] > 0 and e["stale"] is False for e in created.json()["exports"]
    )
    download = env.get("/api/v2/projects/done/export/txt", env.read)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/plain")
    assert 'filename="done.txt"' in download.headers["content-disposition"]
    assert download.content == (env.root / "done" / "exports" / "novel.txt").read_bytes()
    status = env.get("/api/v2/projects/done/export/txt/status").json()
    assert status["exported"] is True and status["filename"] == "novel.txt"


def test_export_errors(env: Env) -> None:
    unknown = env.post("/api/v2/projects/done/export", {"formats": ["md", "rtf"]})
    assert (
        unknown.status_code == 422
        and "md, txt, docx, epub, pdf" in unknown.json()["error"]["message"]
    )
    assert env.get("/api/v2/projects/done/export/rtf").status_code == 422
    assert env.get("/api/v2/projects/done/export/rtf/status").status_code == 422
    no_manuscript = env.post("/api/v2/projects/fresh/export", {"formats": ["md"]})
    assert no_manuscript.status_code == 409
    assert "assemble" in no_manuscript.json()["error"]["message"]
    not_yet = env.get("/api/v2/projects/fresh/export/md")
    assert not_yet.status_code == 404 and not_yet.json()["error"]["code"] == "not_exported"
    assert env.post("/api/v2/projects/done/export", {"formats": []}).status_code == 422
    assert env.post("/api/v2/projects/done/export", {}).status_code == 422


def test_exports_in_every_registered_format(env: Env) -> None:
    from novelkit.export import export_formats

    for fmt in export_formats():
        created = env.post("/api/v2/projects/done/export", {"formats": [fmt]})
        if created.status_code == 501:  # the format's optional dependency is missing here
            continue
        assert created.status_code == 200, created.text
        download = env.get(f"/api/v2/projects/done/export/{fmt}")
        assert (
            download.status_code == 200
            and len(download.content) == created.json()["exports"][0]["size"]
        )


# -- idempotency and concurrency ------------------------------------------------------------------


def test_idempotency_key_runs_once(env: Env) -> None:
    path = "/api/v2/projects/done/generate/stages/premise"
    headers = {"Idempotency-Key": "run-premise-1"}
    first = env.post(path, {"force": True}, headers=headers)
    assert first.status_code == 202
    env.wait_state("done", "succeeded")
    second = env.post(path, {"force": True}, headers=headers)
    assert second.status_code == 202 and second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    jobs = [
        e
        for e in env.get("/api/v2/projects/done/events?limit=1000").json()["events"]
        if e["type"] == "job" and e["state"] == "queued" and e["spec"].get("stage") == "premise"
    ]
    assert len(jobs) == 1
    other = env.post(path, {"force": False}, headers=headers)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert (
        env.post(path, {"force": True}, headers={"Idempotency-Key": "with space"}).status_code
        == 422
    )


def test_idempotency_on_generate_and_export(env: Env) -> None:
    headers = {"Idempotency-Key": "gen-1"}
    first = env.post("/api/v2/projects/fresh/generate", headers=headers)
    second = env.post("/api/v2/projects/fresh/generate", headers=headers)
    assert first.status_code == second.status_code == 202 and first.json() == second.json()
    env.wait_state("fresh", "succeeded")
    since = env.get("/api/v2/projects/fresh/events?limit=1").json()["last_seq"]
    exp = {"Idempotency-Key": "exp-1"}
    one = env.post("/api/v2/projects/fresh/export", {"formats": ["md"]}, headers=exp)
    two = env.post("/api/v2/projects/fresh/export", {"formats": ["md"]}, headers=exp)
    assert one.status_code == two.status_code == 200 and one.json() == two.json()
    assert "idempotent-replayed" not in one.headers
    assert two.headers["idempotent-replayed"] == "true"
    other = env.post("/api/v2/projects/fresh/export", {"formats": ["txt"]}, headers=exp)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    events = env.get(f"/api/v2/projects/fresh/events?since={since}").json()["events"]
    assert [e["format"] for e in events if e["type"] == "export"] == ["md"]  # ran once
    assert not (env.root / "fresh" / "exports" / "novel.txt").exists()


def test_idempotency_keys_are_per_api_key(env: Env) -> None:
    other = create_key(env.root, "write")
    headers = {"Idempotency-Key": "shared"}
    a = env.post("/api/v2/projects/done/generate/stages/premise", {"force": True}, headers=headers)
    env.wait_state("done", "succeeded")
    b = env.post(
        "/api/v2/projects/done/generate/stages/premise", {"force": True}, other, headers=headers
    )
    assert a.status_code == b.status_code == 202 and a.json()["job_id"] != b.json()["job_id"]
    env.wait_state("done", "succeeded")


def test_fifty_concurrent_control_calls(env: Env) -> None:
    env.post("/api/v2/projects/slow/generate")
    actions = ["pause", "resume", "cancel", "status"] * 13
    actions = actions[:50]

    def call(action: str) -> tuple[str, int, dict[str, Any]]:
        if action == "status":
            r = env.get("/api/v2/projects/slow/generate/status")
        else:
            r = env.post(
                f"/api/v2/projects/slow/generate/{action}",
                {} if action != "pause" else {"now": False},
            )
        return action, r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(call, actions))
    for action, code, body in results:
        assert code in (200, 409), (action, code, body)
        if code == 409:
            assert body["error"]["code"] == "illegal_transition" and body["error"]["state"]
        elif action != "status":
            assert isinstance(body["changed"], bool) and body["state"]
    final = env.wait_state("slow", "cancelled", "paused", "succeeded", timeout=30)
    assert final["state"] in ("cancelled", "paused", "succeeded")
    env.post("/api/v2/projects/slow/generate/cancel")
    assert env.wait_state("slow", "cancelled", "succeeded")["state"] in ("cancelled", "succeeded")
    with env.client.websocket_connect(
        "/api/v2/projects/slow/ws", subprotocols=["novelkit.v1", "novelkit.key." + env.read]
    ) as ws:
        assert ws.receive_json()["type"] == "status_update"  # still serving


# -- WebSocket ------------------------------------------------------------------------------------


def _ws(env: Env, project: str, key: str | None = None, query: str = "") -> Any:
    return env.client.websocket_connect(
        f"/api/v2/projects/{project}/ws{query}",
        subprotocols=["novelkit.v1", "novelkit.key." + (key or env.read)],
    )


def test_ws_replays_since_in_order_then_status(env: Env) -> None:
    last = env.get("/api/v2/projects/done/events?limit=1").json()["last_seq"]
    with _ws(env, "done", query="?since=10") as ws:
        assert ws.accepted_subprotocol == "novelkit.v1"
        seqs = []
        while True:
            message = ws.receive_json()
            if message["type"] == "status_update":
                break
            seqs.append(message["seq"])
        assert seqs == list(range(11, last + 1))
        assert message["status"]["state"] == "succeeded"


def test_ws_without_since_starts_with_status(env: Env) -> None:
    with _ws(env, "done") as ws:
        assert ws.receive_json()["type"] == "status_update"


def test_ws_ping_pong_get_status_and_bad_messages(env: Env) -> None:
    with _ws(env, "done") as ws:
        ws.receive_json()
        ws.send_json({"type": "ping", "id": 7})
        pong = ws.receive_json()
        assert pong["type"] == "pong" and pong["id"] == 7
        ws.send_json({"type": "get_status"})
        assert ws.receive_json()["type"] == "status_update"
        ws.send_text("not json")
        assert ws.receive_json()["type"] == "error"
        ws.send_json({"type": "launch_missiles"})
        assert ws.receive_json()["error"]["code"] == "bad_message"


def test_ws_live_stream_while_a_job_runs(env: Env) -> None:
    with _ws(env, "slow") as ws:
        assert ws.receive_json()["type"] == "status_update"
        env.post("/api/v2/projects/slow/generate")
        seen: list[dict[str, Any]] = []
        while not any(m["type"] == "job" and m["state"] == "succeeded" for m in seen):
            seen.append(ws.receive_json())
        types = {m["type"] for m in seen}
        assert {"job", "stage", "unit", "progress", "delta", "status_update", "call"} <= types
        seqs = [m["seq"] for m in seen if m.get("seq") is not None]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        assert seqs == list(range(seqs[0], seqs[-1] + 1))  # no gaps
        deltas = [m for m in seen if m["type"] == "delta"]
        assert all(m["seq"] is None and m["text"] for m in deltas)


def test_ws_pause_shows_paused(env: Env) -> None:
    with _ws(env, "slow") as ws:
        ws.receive_json()
        env.post("/api/v2/projects/slow/generate")
        while ws.receive_json()["type"] != "delta":
            pass
        env.post("/api/v2/projects/slow/generate/pause", {"now": True})
        states = []
        while "paused" not in states:
            message = ws.receive_json()
            if message["type"] == "job":
                states.append(message["state"])
        assert states[-2:] == ["pausing", "paused"]


def test_ws_resync_when_since_is_older_than_kept(env: Env) -> None:
    project = nk.open_project(env.root / "fresh")
    with project.store.transaction() as db:  # an old store whose first events were pruned
        project.store.append_event("log", {"message": "one"})
        project.store.append_event("log", {"message": "two"})
        project.store.append_event("log", {"message": "three"})
        db.execute("DELETE FROM events WHERE seq < 3")
    project.close()
    with _ws(env, "fresh", query="?since=0") as ws:
        message = ws.receive_json()
        assert message["type"] == "resync" and message["reason"] == "since_too_old"
        assert (
            message["first_seq"] == 3 and message["last_seq"] == 3 and "stages" in message["status"]
        )
    with _ws(env, "fresh", query="?since=99") as ws:
        assert ws.receive_json()["reason"] == "since_ahead"


def test_ws_ticket_is_single_use(env: Env) -> None:
    ticket = env.post("/api/v2/ws-ticket", key=env.read).json()["ticket"]
    with env.client.websocket_connect(f"/api/v2/projects/done/ws?ticket={ticket}") as ws:
        assert ws.accepted_subprotocol is None
        assert ws.receive_json()["type"] == "status_update"
    from starlette.testclient import WebSocketDenialResponse

    with pytest.raises(WebSocketDenialResponse) as denied:
        with env.client.websocket_connect(f"/api/v2/projects/done/ws?ticket={ticket}"):
            pass
    assert denied.value.status_code == 401


def test_ws_frame_over_limit_closes_1009(tmp_path: Path) -> None:
    make_root(tmp_path, finished=False)
    key = create_key(tmp_path, "read")
    from starlette.websockets import WebSocketDisconnect

    with LocalClient(create_app(tmp_path, max_frame=1024)) as client:
        with client.websocket_connect(
            "/api/v2/projects/fresh/ws", subprotocols=["novelkit.v1", "novelkit.key." + key]
        ) as ws:
            ws.receive_json()
            ws.send_text("x" * 2048)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1009


# -- the per-client queue -----------------------------------------------------------------------


def _progress(i: int) -> Outgoing:
    return Outgoing({"type": "progress", "stage": "draft", "done": i, "seq": i}, "progress:draft")


def _ab() -> Outgoing:
    return Outgoing(
        {"type": "delta", "stage": "draft", "unit": "ch01", "text": "ab", "seq": None},
        "delta:draft:ch01",
    )


def test_queue_coalesces_deltas_at_once_and_progress_once_behind() -> None:
    import asyncio

    queue = ClientQueue(maxsize=10)  # behind from 5 waiting messages on
    for i in range(100):
        queue.put(_progress(i))
        queue.put(_ab())
    assert len(queue) == 5 and queue.coalesced == 195 and queue.overflows == 0

    async def drain() -> list[Any]:
        return [await queue.get() for _ in range(len(queue))]

    sent = asyncio.run(drain())
    assert all(isinstance(m, Outgoing) for m in sent)
    assert [m.payload.get("done") for m in sent[:-1]] == [0, 1, 2, 99]  # then only the newest
    assert sent[-1].payload["text"] == "ab" * 100 and sent[-1].payload.get("truncated") is None


def test_queue_of_a_client_that_keeps_up_loses_no_seq() -> None:
    import asyncio

    queue = ClientQueue(maxsize=1000)

    async def scenario() -> list[int]:
        done = []
        for start in range(0, 300, 30):  # batches, as the feed reads them from the store
            for i in range(start, start + 30):
                queue.put(_progress(i))
            while len(queue):
                message = await queue.get()
                assert isinstance(message, Outgoing)
                done.append(message.payload["done"])
        return done

    assert asyncio.run(scenario()) == list(range(300))
    assert queue.coalesced == 0


def test_queue_keeps_only_the_tail_of_a_long_delta() -> None:
    import asyncio

    queue = ClientQueue()
    for _ in range(1500):
        queue.put(_ab())

    async def first() -> Any:
        return await queue.get()

    merged = asyncio.run(first())
    assert merged.payload["text"] == ("ab" * 1500)[-2000:] and merged.payload["truncated"] is True


def test_queue_overflow_becomes_one_resync_and_stays_bounded() -> None:
    import asyncio

    queue = ClientQueue(maxsize=50)
    for i in range(10_000):
        queue.put(Outgoing({"type": "unit", "seq": i}))
    assert len(queue) <= 50 and queue.overflows > 0

    async def first() -> Any:
        return await queue.get()

    assert asyncio.run(first()) == RESYNC


# -- the live feed ----------------------------------------------------------------------------


def _payloads_sent(
    project: nk.Project, publish: Callable[[], None], *, wait: float
) -> list[dict[str, Any]]:
    """The messages one feed client is sent while ``publish`` runs on another thread."""
    import asyncio
    import threading

    async def scenario() -> list[Any]:
        feed = ProjectFeed(project, _no_status, delta_interval=0.05)
        feed.start()
        client = Client(1000)
        feed.add(client)
        sent: list[Any] = []

        async def read() -> None:  # a client that keeps up, as a connected socket would
            while True:
                sent.append(await client.queue.get())

        reader = asyncio.create_task(read())
        publisher = threading.Thread(target=publish)
        publisher.start()
        await asyncio.to_thread(publisher.join)
        await asyncio.sleep(wait)
        reader.cancel()
        await feed.stop()
        return [m.payload for m in sent if isinstance(m, Outgoing)]

    return asyncio.run(scenario())


async def _no_status() -> dict[str, Any]:
    return {}


def _delta(project: nk.Project, unit: str, text: str) -> None:
    project.store.publish_ephemeral(
        Event("delta", {"stage": "draft", "unit": unit, "text": text}, job_id="j")
    )


def test_feed_merges_deltas_and_sends_a_units_text_before_its_events(
    make_project: Callable[..., nk.Project],
) -> None:
    project = make_project()

    def publish() -> None:
        for i in range(100):
            _delta(project, "ch01", f"a{i} ")
            _delta(project, "ch02", f"b{i} ")
        project.store.append_event("unit", {"stage": "draft", "unit": "ch01", "state": "done"})
        _delta(project, "ch02", "tail")

    payloads = _payloads_sent(project, publish, wait=0.3)
    kinds = [(p["type"], p.get("unit")) for p in payloads]
    assert kinds == [("delta", "ch01"), ("unit", "ch01"), ("delta", "ch02")]
    assert payloads[0]["text"] == "".join(f"a{i} " for i in range(100))
    assert payloads[2]["text"] == "".join(f"b{i} " for i in range(100)) + "tail"
    assert payloads[1]["seq"] is not None and payloads[0]["seq"] is None


def test_feed_sends_a_stream_a_few_times_a_second_not_per_chunk(
    make_project: Callable[..., nk.Project],
) -> None:
    project = make_project()

    def publish() -> None:
        for i in range(40):
            _delta(project, "ch01", f"{i},")
            time.sleep(0.01)  # 0.4 s of streaming at 100 chunks a second

    texts = [p["text"] for p in _payloads_sent(project, publish, wait=0.2)]
    assert 2 <= len(texts) <= 14  # one message per 50 ms flush, give or take a scheduler
    assert "".join(texts) == "".join(f"{i}," for i in range(40))


def test_feed_drops_a_client_whose_socket_stopped_draining(
    make_project: Callable[..., nk.Project],
) -> None:
    import asyncio

    project = make_project()

    async def scenario() -> tuple[bool, bool, bool]:
        feed = ProjectFeed(project, _no_status, poll_interval=0.02, stall_timeout=0.2)
        feed.start()
        stuck, reading = Client(1000), Client(1000)
        feed.add(stuck)
        feed.add(reading)
        stuck.sending_since = time.monotonic()  # a send that never completes
        await asyncio.sleep(0.6)
        result = (stuck.killed.is_set(), stuck in feed.clients, reading.killed.is_set())
        await feed.stop()
        return result

    assert asyncio.run(scenario()) == (True, False, False)


def test_feed_stops_when_its_last_client_leaves(env: Env) -> None:
    sidecar = env.client.app.state.sidecar  # type: ignore[attr-defined]
    with _ws(env, "done") as first, _ws(env, "done") as second:
        first.receive_json()
        second.receive_json()
        assert len(sidecar._feeds["done"].clients) == 2
    deadline = time.monotonic() + 5
    while "done" in sidecar._feeds and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "done" not in sidecar._feeds
    with _ws(env, "done") as again:  # a new client gets a new feed
        assert again.receive_json()["type"] == "status_update"


def test_a_job_in_another_process_streams_its_status(env: Env) -> None:
    import subprocess
    import sys

    runner = subprocess.Popen(
        [sys.executable, "-m", "novelkit.cli", "run", str(env.root / "slow")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with _ws(env, "slow") as ws:
            ws.receive_json()
            seen: list[dict[str, Any]] = []
            while not any(m["type"] == "job" and m["state"] == "succeeded" for m in seen):
                seen.append(ws.receive_json())
    finally:
        assert runner.wait(60) == 0
    seqs = [m["seq"] for m in seen if m.get("seq") is not None]
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # read from the store in order, no gaps
    previews = [m["status"]["preview"] for m in seen if m["type"] == "status_update"]
    assert any(previews)  # the other process's snapshot: its streamed text


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    make_root(tmp_path, finished=False)
    key = create_key(tmp_path, "read")
    with LocalClient(create_app(tmp_path, rate_limit=RateLimit(per_second=1, burst=3))) as client:
        codes = [
            client.get("/api/v2/whoami", headers={"X-API-Key": key}).status_code for _ in range(5)
        ]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        limited = client.get("/api/v2/whoami", headers={"X-API-Key": key})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
        other = create_key(tmp_path, "read")
        assert client.get("/api/v2/whoami", headers={"X-API-Key": other}).status_code == 200


def test_openapi_covers_every_rest_route(env: Env) -> None:
    from novelkit.server.routes import ENDPOINTS
    from novelkit.server.sweep import SWEEP_ENDPOINTS

    endpoints = ENDPOINTS + SWEEP_ENDPOINTS
    doc = env.client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyAuth"}
    for ep in endpoints:
        op = doc["paths"][ep.path][ep.method.lower()]
        assert "401" in op["responses"] and op["security"]
        if ep.body is not None:
            assert "requestBody" in op
    paths = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert paths == {(ep.method, ep.path) for ep in endpoints}
    assert env.client.get("/docs/openapi-3.0.json").json()["openapi"] == "3.0.3"


def test_docs_and_dashboard_are_local(env: Env) -> None:
    docs = env.client.get("/docs")
    assert docs.status_code == 200 and "http" not in docs.text.replace("charset", "")
    assert env.client.get("/docs/static/swagger-ui-bundle.js").status_code == 200
    page = env.client.get("/")
    assert page.status_code == 200 and "static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("static/app.js", "static/app.css", "static/docs.js"):
        body = env.client.get("/" + asset)
        assert body.status_code == 200
        assert "https://" not in body.text and "http://" not in body.text  # no CDN
    assert "/api/" not in env.client.get("/static/app.js").text.replace(
        '"api/', ""
    )  # relative URLs only


def test_injected_project_is_reused(
    tmp_path: Path, make_project: Callable[..., nk.Project]
) -> None:
    project = make_project("mine")
    key = create_key(project.root.parent, "read")
    with LocalClient(create_app(project.root.parent, projects={"mine": project})) as client:
        response = client.get("/api/v2/projects/mine", headers={"X-API-Key": key})
        assert response.status_code == 200
        assert client.app.state.sidecar.projects.get("mine") is project  # type: ignore[attr-defined]
