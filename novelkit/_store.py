"""The SQLite store (WAL, synchronous=FULL) and the per-project writer lock.

Everything that must survive ``kill -9`` lives here: jobs, units, LLM calls (the memo and the
cost ledger), persisted events, cross-process control requests, the live snapshot, exports.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ._errors import ProjectError, ProjectLockedError
from ._events import Event, EventBus

__all__ = ["CallRecord", "ProjectLock", "Store"]

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '', error TEXT, created REAL NOT NULL, updated REAL NOT NULL,
    pid INTEGER
);
CREATE TABLE IF NOT EXISTS units (
    stage TEXT NOT NULL, unit TEXT NOT NULL, variant TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL, fingerprint TEXT NOT NULL DEFAULT '', outputs TEXT NOT NULL DEFAULT '{}',
    error TEXT, job_id TEXT, updated REAL NOT NULL,
    PRIMARY KEY (stage, unit, variant)
);
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY, stage TEXT NOT NULL, unit TEXT NOT NULL, variant TEXT NOT NULL,
    task TEXT NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL, finish_reason TEXT NOT NULL,
    model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    latency REAL NOT NULL, cost REAL NOT NULL, job_id TEXT, created REAL NOT NULL,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, ts REAL NOT NULL, job_id TEXT, type TEXT NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS control (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, action TEXT NOT NULL,
    now INTEGER NOT NULL, created REAL NOT NULL, taken REAL
);
CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS exports (
    format TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL,
    modified REAL NOT NULL, manuscript_hash TEXT NOT NULL, options TEXT NOT NULL DEFAULT '{}'
);
"""


# reader connections per store, whatever the number of threads reading (each is 3 descriptors:
# the database, its WAL and its shared-memory index)
READERS = 2


@dataclass(frozen=True)
class CallRecord:
    key: str
    stage: str
    unit: str
    variant: str
    task: str
    request: dict[str, Any]
    response: str
    finish_reason: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency: float
    cost: float
    job_id: str | None = None
    reasoning_tokens: int = 0  # of completion_tokens: a reasoning model's hidden thinking


class Store:
    """One writer connection guarded by a lock; at most ``READERS`` reader connections."""

    def __init__(self, path: Path, bus: EventBus | None = None) -> None:
        self.path = path
        self.bus = bus or EventBus()
        self._lock = threading.RLock()
        self._readers: list[sqlite3.Connection | None] = [None] * READERS
        self._readers_guard = threading.Lock()
        self._pending: list[Event] = []
        self._held: dict[str, CallRecord] = {}
        self._known: set[str] | None = None  # every key in calls, while this process is the writer
        self._writer: ThreadPoolExecutor | None = None
        self._writer_guard = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            with self._lock:
                self._db.executescript(SCHEMA)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
                if "reasoning_tokens" not in columns:  # a store from before 0.2
                    self._db.execute(
                        "ALTER TABLE calls ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0"
                    )
        except (sqlite3.Error, OSError) as exc:
            raise ProjectError(f"cannot open the project store {path}: {exc}") from None
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        self._seq: int = row[0]

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def _reader(self) -> sqlite3.Connection:
        """A reader connection: at most READERS per store, shared by threads (SQLite is built
        serialized, so concurrent statements on one connection are safe). A connection per
        thread made a server's descriptors grow with its thread pool times its projects."""
        slot = threading.get_ident() % READERS
        db = self._readers[slot]
        if db is None:
            with self._readers_guard:
                db = self._readers[slot]
                if db is None:  # also after close(): reading a closed project still works
                    try:
                        db = self._connect()
                    except sqlite3.Error as exc:
                        raise ProjectError(
                            f"cannot read the project store {self.path}: {exc}"
                        ) from None
                    self._readers[slot] = db
        return db

    def close(self) -> None:
        with self._writer_guard:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)  # queued writes land before the connection goes
        with self._lock:
            self._closed = True
            self._db.close()
        with self._readers_guard:
            readers, self._readers = self._readers, [None] * READERS
        for db in readers:
            if db is not None:
                db.close()

    _closed = False

    def later(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on the store's writer thread, after every write queued before.

        A running job hands its writes here, so its event loop never waits for an fsync.
        """
        with self._writer_guard:
            if self._closed:
                raise ProjectError(f"the project store {self.path} is closed")
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="novelkit-writer")
            return self._writer.submit(fn, *args, **kwargs)

    # -- transactions and events ------------------------------------------------------------

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction; events appended inside are published after it commits.

        ``durable=False`` skips the fsync for records only views need (a unit started, a
        retry notice): they survive a crashed process, and the next durable commit makes them
        survive a crashed machine too.
        """
        with self._lock:
            if self._closed:
                raise ProjectError(
                    f"the project store {self.path} is closed; open the project again "
                    "with nk.open_project()"
                )
            nested = self._db.in_transaction
            try:
                if not nested:
                    if not durable:
                        self._db.execute("PRAGMA synchronous=NORMAL")
                    self._db.execute("BEGIN IMMEDIATE")
                    self._seq_at_begin = self._seq
                yield self._db
                if not nested:
                    self._db.execute("COMMIT")
            except BaseException:
                if not nested:
                    self._pending.clear()
                    self._seq = getattr(self, "_seq_at_begin", self._seq)
                    if self._db.in_transaction:  # a failed COMMIT may have rolled back already
                        self._db.execute("ROLLBACK")
                raise
            finally:
                if not nested and not durable:
                    self._db.execute("PRAGMA synchronous=FULL")
            if not nested:
                pending, self._pending = self._pending, []
        if not nested:
            for event in pending:
                self.bus.publish(event)

    def append_event(
        self, type: str, data: dict[str, Any], job_id: str | None = None, *, durable: bool = True
    ) -> Event:
        with self.transaction(durable=durable) as db:
            # another process may append events too (an export, a crashed job marked
            # interrupted): inside BEGIN IMMEDIATE, MAX(seq) is exact and cheap on the key
            latest = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            self._seq = max(self._seq, latest) + 1
            event = Event(type=type, data=data, seq=self._seq, job_id=job_id)
            db.execute(
                "INSERT INTO events (seq, ts, job_id, type, data) VALUES (?, ?, ?, ?, ?)",
                (event.seq, event.ts, job_id, type, json.dumps(data, ensure_ascii=False)),
            )
            self._pending.append(event)
        return event

    def publish_ephemeral(self, event: Event) -> None:
        self.bus.publish(event)

    def events_since(self, seq: int = 0, limit: int = 1000) -> list[Event]:
        rows = (
            self._reader()
            .execute(
                "SELECT seq, ts, job_id, type, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            )
            .fetchall()
        )
        return [
            Event(type=r[3], data=json.loads(r[4]), seq=r[0], ts=r[1], job_id=r[2]) for r in rows
        ]

    def first_seq(self) -> int:
        return int(self._reader().execute("SELECT COALESCE(MIN(seq), 0) FROM events").fetchone()[0])

    def last_seq(self) -> int:
        return int(self._reader().execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    # -- jobs -------------------------------------------------------------------------------

    def create_job(self, job_id: str, kind: str, spec: dict[str, Any], state: str) -> None:
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, spec, state, created, updated, pid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, kind, json.dumps(spec), state, now, now, os.getpid()),
            )

    def update_job(self, job_id: str, **fields: Any) -> None:
        fields["updated"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*fields.values(), job_id))

    def job(self, job_id: str) -> dict[str, Any] | None:
        row = (
            self._reader()
            .execute(
                "SELECT id, kind, spec, state, message, error, created, updated, pid FROM jobs WHERE id = ?",
                (job_id,),
            )
            .fetchone()
        )
        return _job_row(row) if row else None

    def last_job(self) -> dict[str, Any] | None:
        row = (
            self._reader()
            .execute(
                "SELECT id, kind, spec, state, message, error, created, updated, pid FROM jobs "
                "ORDER BY created DESC, rowid DESC LIMIT 1"
            )
            .fetchone()
        )
        return _job_row(row) if row else None

    # -- units ------------------------------------------------------------------------------

    def units(self, stage: str, variant: str = "") -> dict[str, dict[str, Any]]:
        rows = (
            self._reader()
            .execute(
                "SELECT unit, state, fingerprint, outputs, error FROM units WHERE stage = ? AND variant = ?",
                (stage, variant),
            )
            .fetchall()
        )
        return {
            r[0]: {"state": r[1], "fingerprint": r[2], "outputs": json.loads(r[3]), "error": r[4]}
            for r in rows
        }

    def unit(self, stage: str, unit: str, variant: str = "") -> dict[str, Any] | None:
        row = (
            self._reader()
            .execute(
                "SELECT state, fingerprint, outputs, error FROM units "
                "WHERE stage = ? AND unit = ? AND variant = ?",
                (stage, unit, variant),
            )
            .fetchone()
        )
        if row is None:
            return None
        return {
            "state": row[0],
            "fingerprint": row[1],
            "outputs": json.loads(row[2]),
            "error": row[3],
        }

    def all_units(self, variant: str = "") -> dict[str, dict[str, dict[str, Any]]]:
        rows = (
            self._reader()
            .execute(
                "SELECT stage, unit, state, fingerprint, outputs, error FROM units WHERE variant = ?",
                (variant,),
            )
            .fetchall()
        )
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for r in rows:
            out.setdefault(r[0], {})[r[1]] = {
                "state": r[2],
                "fingerprint": r[3],
                "outputs": json.loads(r[4]),
                "error": r[5],
            }
        return out

    def set_unit(
        self,
        stage: str,
        unit: str,
        state: str,
        *,
        variant: str = "",
        fingerprint: str | None = None,
        outputs: dict[str, str] | None = None,
        error: str | None = None,
        job_id: str | None = None,
    ) -> None:
        """Record a unit's state; fingerprint and outputs are kept unless given."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO units (stage, unit, variant, state, fingerprint, outputs, error, job_id, updated) "
                "VALUES (?, ?, ?, ?, COALESCE(?, ''), COALESCE(?, '{}'), ?, ?, ?) "
                "ON CONFLICT (stage, unit, variant) DO UPDATE SET state = excluded.state, "
                "fingerprint = COALESCE(?, units.fingerprint), outputs = COALESCE(?, units.outputs), "
                "error = excluded.error, job_id = excluded.job_id, updated = excluded.updated",
                (
                    stage,
                    unit,
                    variant,
                    state,
                    fingerprint,
                    None if outputs is None else json.dumps(outputs),
                    error,
                    job_id,
                    time.time(),
                    fingerprint,
                    None if outputs is None else json.dumps(outputs),
                ),
            )

    def invalidate(self, stages: list[str], variant: str = "") -> None:
        """Forget the fingerprints of these stages' units, so they count as stale."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE units SET fingerprint = '' WHERE stage = ? AND variant = ? AND state = 'done' "
                "AND fingerprint NOT LIKE 'kept:%'",  # imported or given work stays (_freshness.KEPT)
                [(stage, variant) for stage in stages],
            )

    # -- LLM calls: the memo and the ledger -------------------------------------------------

    def hold_call(self, record: CallRecord) -> None:
        """Let the memo answer with ``record`` while it is being saved (see :meth:`save_call`)."""
        self._held[record.key] = record

    def release_call(self, record: CallRecord) -> None:
        if self._held.get(record.key) is record:
            del self._held[record.key]

    def know_calls(self) -> None:
        """Keep the memo's keys in memory from now on: this process has just become the
        project's writer, so until :meth:`forget_calls` no other process can save a call, and
        a key not in the set is not in the table (a miss needs no query)."""
        keys = {r[0] for r in self._reader().execute("SELECT key FROM calls")}
        self._known = keys

    def forget_calls(self) -> None:
        """The writer lock is going: other processes may save calls again."""
        self._known = None

    def call(self, key: str) -> CallRecord | None:
        held = self._held.get(key)
        if held is not None:
            return held
        known = self._known
        if known is not None and key not in known:
            return None  # only a miss is trusted: a hit is read from the table
        row = (
            self._reader()
            .execute(
                "SELECT key, stage, unit, variant, task, request, response, finish_reason, model, "
                "prompt_tokens, completion_tokens, latency, cost, job_id, reasoning_tokens FROM calls "
                "WHERE key = ?",
                (key,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return CallRecord(
            key=row[0],
            stage=row[1],
            unit=row[2],
            variant=row[3],
            task=row[4],
            request=json.loads(row[5]),
            response=row[6],
            finish_reason=row[7],
            model=row[8],
            prompt_tokens=row[9],
            completion_tokens=row[10],
            latency=row[11],
            cost=row[12],
            job_id=row[13],
            reasoning_tokens=row[14],
        )

    def save_call(self, record: CallRecord) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO calls VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.key,
                    record.stage,
                    record.unit,
                    record.variant,
                    record.task,
                    json.dumps(record.request, ensure_ascii=False),
                    record.response,
                    record.finish_reason,
                    record.model,
                    record.prompt_tokens,
                    record.completion_tokens,
                    record.latency,
                    record.cost,
                    record.job_id,
                    time.time(),
                    record.reasoning_tokens,
                ),
            )
            known = self._known
            if known is not None:
                known.add(record.key)  # before the commit: a miss must never be wrong

    def call_count(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def models_used(self, exclude_stages: tuple[str, ...] = ()) -> list[str]:
        """The models named in the ledger, most calls first (``exclude_stages`` left out)."""
        marks = ", ".join("?" * len(exclude_stages))
        where = f"WHERE stage NOT IN ({marks}) " if exclude_stages else ""
        rows = (
            self._reader()
            .execute(
                f"SELECT model FROM calls {where}GROUP BY model ORDER BY COUNT(*) DESC",
                exclude_stages,
            )
            .fetchall()
        )
        return [str(r[0]) for r in rows]

    def ledger(self) -> dict[str, dict[str, float]]:
        """Per stage: calls, prompt and completion tokens, cost, latency."""
        rows = (
            self._reader()
            .execute(
                "SELECT stage, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), "
                "SUM(latency), SUM(reasoning_tokens) FROM calls GROUP BY stage"
            )
            .fetchall()
        )
        return {
            r[0]: {
                "calls": r[1],
                "prompt_tokens": r[2],
                "completion_tokens": r[3],
                "cost": r[4],
                "latency": r[5],
                "reasoning_tokens": r[6],
            }
            for r in rows
        }

    def variants(self, stage: str) -> list[str]:
        """The names of ``stage``'s variants that have a finished unit, in order."""
        rows = (
            self._reader()
            .execute(
                "SELECT DISTINCT variant FROM units WHERE stage = ? AND variant != '' "
                "AND state = 'done' ORDER BY variant",
                (stage,),
            )
            .fetchall()
        )
        return [r[0] for r in rows]

    def stage_events(self) -> list[tuple[float, dict[str, Any]]]:
        """Every stage event (a stage began, succeeded, failed) with its time, in order."""
        rows = (
            self._reader()
            .execute("SELECT ts, data FROM events WHERE type = 'stage' ORDER BY seq")
            .fetchall()
        )
        return [(ts, json.loads(data)) for ts, data in rows]

    # -- stages a cancelled run left unfinished -------------------------------------------

    def mark_cancelled(self, stage: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", (f"cancelled:{stage}",))

    def clear_cancelled(self, stage: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (f"cancelled:{stage}",))

    def cancelled_stages(self) -> set[str]:
        rows = (
            self._reader().execute("SELECT key FROM meta WHERE key LIKE 'cancelled:%'").fetchall()
        )
        return {r[0].split(":", 1)[1] for r in rows}

    def mark_interrupted(self, job_id: str, active: tuple[str, ...], message: str) -> bool:
        """Set a job ``interrupted`` (with its event) if the store still shows it in one of the
        ``active`` states; whether it changed."""
        with self.transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            changed = db.execute(
                f"UPDATE jobs SET state = 'interrupted', message = ?, updated = ? WHERE id = ? "
                f"AND state IN ({', '.join('?' * len(active))})",
                (message, time.time(), job_id, *active),
            ).rowcount
            if changed:
                self.append_event(
                    "job",
                    {
                        "state": "interrupted",
                        "previous": row[0],  # as recorded: queued, running, pausing, ...
                        "message": "the process running this job stopped",
                    },
                    job_id,
                )
        return bool(changed)

    # -- cross-process control and live snapshot ------------------------------------------

    def request_control(self, job_id: str, action: str, now: bool = False) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO control (job_id, action, now, created) VALUES (?, ?, ?, ?)",
                (job_id, action, int(now), time.time()),
            )

    def take_control(self, job_id: str) -> list[tuple[str, bool]]:
        if not self.pending_control(job_id):
            return []  # the common case: a read, no write transaction
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id, action, now FROM control WHERE job_id = ? AND taken IS NULL ORDER BY id",
                (job_id,),
            ).fetchall()
            if rows:
                db.executemany(
                    "UPDATE control SET taken = ? WHERE id = ?", [(time.time(), r[0]) for r in rows]
                )
        return [(r[1], bool(r[2])) for r in rows]

    def pending_control(self, job_id: str) -> bool:
        row = (
            self._reader()
            .execute("SELECT 1 FROM control WHERE job_id = ? AND taken IS NULL LIMIT 1", (job_id,))
            .fetchone()
        )
        return row is not None

    def write_snapshot(self, data: dict[str, Any]) -> None:
        with self.transaction(durable=False) as db:
            db.execute(
                "INSERT OR REPLACE INTO snapshot (id, data, updated) VALUES (1, ?, ?)",
                (json.dumps(data, ensure_ascii=False), time.time()),
            )

    def snapshot(self) -> dict[str, Any] | None:
        row = self._reader().execute("SELECT data FROM snapshot WHERE id = 1").fetchone()
        return json.loads(row[0]) if row else None

    # -- exports ----------------------------------------------------------------------------

    def record_export(
        self, fmt: str, path: str, size: int, manuscript_hash: str, options: dict[str, Any]
    ) -> None:
        now = time.time()
        with self.transaction() as db:
            old = db.execute("SELECT created FROM exports WHERE format = ?", (fmt,)).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO exports VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    fmt,
                    path,
                    size,
                    old[0] if old else now,
                    now,
                    manuscript_hash,
                    json.dumps(options),
                ),
            )

    def exports(self) -> dict[str, dict[str, Any]]:
        rows = (
            self._reader()
            .execute(
                "SELECT format, path, size, created, modified, manuscript_hash, options FROM exports"
            )
            .fetchall()
        )
        return {
            r[0]: {
                "format": r[0],
                "path": r[1],
                "size": r[2],
                "created": r[3],
                "modified": r[4],
                "manuscript_hash": r[5],
                "options": json.loads(r[6]),
            }
            for r in rows
        }

    def integrity_check(self) -> str:
        return str(self._reader().execute("PRAGMA integrity_check").fetchone()[0])


def _job_row(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", "kind", "spec", "state", "message", "error", "created", "updated", "pid")
    job = dict(zip(keys, row, strict=True))
    job["spec"] = json.loads(job["spec"])
    return job


# a probe holds the lock for microseconds, a recovery on open for one commit, a writer for
# its whole run: retry for ~1 s before calling the project locked
PROBE_RETRIES = 10


def _lock_api() -> tuple[Callable[[int], None], Callable[[int], None]]:
    """Take and drop an exclusive, non-blocking lock on a whole open file: ``flock`` on Linux
    and macOS, ``msvcrt.locking`` on its first byte on Windows. Each lock belongs to its file
    descriptor, so a second open of the file (another Project, another process) is refused.
    Taking a lock that is held raises OSError with errno EAGAIN or EACCES."""
    try:
        fcntl: Any = importlib.import_module("fcntl")
    except ImportError:  # Windows
        msvcrt: Any = importlib.import_module("msvcrt")

        def lock(fd: int) -> None:
            os.lseek(fd, 0, os.SEEK_SET)
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            except OSError as exc:
                raise OSError(errno.EACCES, f"locked: {exc}") from None

        def unlock(fd: int) -> None:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

        return lock, unlock

    return (
        lambda fd: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB),
        lambda fd: fcntl.flock(fd, fcntl.LOCK_UN),
    )


_lock_file, _unlock_file = _lock_api()


class ProjectLock:
    """An exclusive lock on ``.novelkit/lock`` (``flock``, or ``msvcrt.locking`` on Windows):
    held by the one process that runs a job."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._guard = threading.Lock()  # the job thread releases while the user may close

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        with self._guard:
            self._acquire()

    def _acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(PROBE_RETRIES + 1):
            try:
                _lock_file(fd)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if attempt < PROBE_RETRIES:  # maybe a probe (held_elsewhere) holding it briefly
                    time.sleep(0.001 * 2**attempt)
        else:
            os.close(fd)
            holder = self._holder()
            raise ProjectLockedError(
                f"{self.path.parent.parent} is being written by another process{holder}; "
                "pause or stop that job first (novelkit pause DIR), or wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def _holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            return ""
        return f" (pid {pid})" if pid else ""

    def release(self) -> None:
        with self._guard:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            _unlock_file(fd)
            os.close(fd)

    @contextmanager
    def hold_if_free(self) -> Iterator[bool]:
        """Hold the lock for the block if no other process does: ``True`` inside when held.

        Recovery checks that no process is writing and marks a dead job in one hold, so a
        process that takes the lock and starts a job in between cannot be marked interrupted.
        """
        with self._guard:
            if self._fd is not None:
                yield True
                return
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                yield False
                return
            try:
                try:
                    _lock_file(fd)
                except OSError:
                    yield False
                    return
                try:
                    yield True
                finally:
                    _unlock_file(fd)
            finally:
                os.close(fd)

    def held_elsewhere(self) -> bool:
        """True when another process (or another Project object) holds the lock.

        It probes by taking the lock for a moment: under the guard, so that a probe from one
        thread never makes another thread's :meth:`acquire` fail.
        """
        with self._guard:
            if self._fd is not None:
                return False
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                return False
            try:
                _lock_file(fd)
            except OSError:
                return True
            else:
                _unlock_file(fd)
                return False
            finally:
                os.close(fd)


class Writer:
    """The right to write a project's artefacts and store: the :class:`ProjectLock`, plus the
    claims this process made on it. Each run claims it; only the latest claim's run lets it go,
    so an older run still tidying up never drops it from under a newer one."""

    def __init__(self, lock: ProjectLock, store: Store, guard: threading.RLock) -> None:
        self.lock = lock
        self.store = store
        self.guard = guard  # the project's: a claim and a start() never interleave
        self.claims = 0

    @property
    def held(self) -> bool:
        return self.lock.held

    def held_elsewhere(self) -> bool:
        return self.lock.held_elsewhere()

    def hold_if_free(self) -> AbstractContextManager[bool]:
        """See :meth:`ProjectLock.hold_if_free`: a check and a mark in one hold."""
        return self.lock.hold_if_free()

    def take(self) -> int:
        """Take the lock (ProjectLockedError if another process has it); the claim's number."""
        held = self.lock.held
        self.lock.acquire()
        try:
            self.store.know_calls()  # the only writer now: the memo may trust its misses
        except BaseException:
            self.store.forget_calls()
            if not held:  # a lock this claim did not take stays with the run that did
                self.lock.release()
            raise
        self.claims += 1
        return self.claims

    def claim(self, job_id: str) -> int:
        """Become the writer for ``job_id``'s run; the claim's number for :meth:`release`."""
        with self.guard:
            claim = self.take()
            self.store.update_job(job_id, pid=os.getpid())
            return claim

    def release(self, claim: int, finished: bool) -> None:
        """The end of the run that made ``claim``: the lock goes if that run is the latest and
        its job stopped (``finished``)."""
        with self.guard:
            if claim == self.claims and finished:
                self.drop()

    def drop(self) -> None:
        self.store.forget_calls()  # before another process can take the lock and save calls
        self.lock.release()
