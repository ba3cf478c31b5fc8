"""Durable SQLite store: schema, transactions, task submission and queries.

Durability: the database runs in WAL mode with ``synchronous=FULL``. A transaction's COMMIT
returns only after its WAL frames are written *and fsync'ed*, so a committed task survives
SIGKILL of any process (the data is in the WAL file, which the next connection replays) and also
an OS crash or power loss. ``synchronous=NORMAL`` would already survive a process kill (the
WAL write happens before COMMIT returns; only the fsync is deferred), but FULL costs ~0.2 ms per
commit on the reference machine, cheap enough to take the stronger guarantee. The API answers
201 only after that COMMIT has returned.
"""

from __future__ import annotations

import bisect
import json
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardian.errors import StoreError, TaskNotFoundError, TaskStateError
from guardian.sealing import PayloadSeal, for_database

TASK_STATUSES = ("queued", "running", "completed", "failed", "cancelled")
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
TASK_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# Upper bounds (seconds) of the end-to-end task latency histogram; +Inf is implicit.
TASK_LATENCY_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
DEFAULT_MAX_ATTEMPTS = 5
BUSY_TIMEOUT_MS = 15_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    lease_owner TEXT,
    lease_token TEXT,
    lease_expires_at REAL,
    not_before REAL NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    result TEXT,
    error TEXT,
    request_id TEXT
);
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks(status, not_before);
CREATE INDEX IF NOT EXISTS tasks_lease ON tasks(lease_owner);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
CREATE INDEX IF NOT EXISTS tasks_kind_created ON tasks(kind, created_at);
CREATE TABLE IF NOT EXISTS task_counts (
    kind TEXT NOT NULL, event TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (kind, event)
);
CREATE TABLE IF NOT EXISTS task_latency (
    kind TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL, sum_s REAL NOT NULL,
    PRIMARY KEY (kind, bucket)
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY, slot INTEGER NOT NULL, pid INTEGER NOT NULL,
    started_at REAL NOT NULL, heartbeat_at REAL NOT NULL, state TEXT NOT NULL,
    tasks_done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS slots (
    role TEXT NOT NULL, slot INTEGER NOT NULL, state TEXT NOT NULL, pid INTEGER,
    consecutive_failures INTEGER NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (role, slot)
);
CREATE TABLE IF NOT EXISTS supervisor_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, role TEXT NOT NULL,
    slot INTEGER NOT NULL, event TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS circuit (
    name TEXT PRIMARY KEY, state TEXT NOT NULL, consecutive_failures INTEGER NOT NULL,
    opened_at REAL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS readiness_probe (id INTEGER PRIMARY KEY CHECK (id = 1), ts REAL);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT, playbook_id TEXT NOT NULL, diagnosis TEXT NOT NULL,
    service TEXT NOT NULL, subject TEXT NOT NULL, status TEXT NOT NULL,
    detected_at REAL NOT NULL, decided_at REAL, resolved_at REAL, approval_id INTEGER,
    params TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_playbook ON incidents(playbook_id, status);
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY AUTOINCREMENT, playbook_id TEXT NOT NULL, service TEXT NOT NULL,
    diagnosis TEXT NOT NULL, subject TEXT NOT NULL, tier INTEGER NOT NULL, params TEXT NOT NULL,
    status TEXT NOT NULL, requested_at REAL NOT NULL, decided_at REAL, decided_by TEXT,
    reason TEXT, incident_id INTEGER
);
CREATE TABLE IF NOT EXISTS healer_counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS healer_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS heal_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, incident_id INTEGER NOT NULL, action TEXT NOT NULL,
    status TEXT NOT NULL, requested_at REAL NOT NULL, done_at REAL, result TEXT
);
CREATE TABLE IF NOT EXISTS fault_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, action TEXT NOT NULL,
    amount INTEGER NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dependency_outcomes (
    ts INTEGER NOT NULL, outcome TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (ts, outcome)
);
"""


def new_task_id() -> str:
    """Return a fresh 32-hex-digit task id."""
    return uuid.uuid4().hex


def is_task_id(value: str) -> bool:
    """Tell whether ``value`` has the shape of a task id (guards queries and pages)."""
    return bool(TASK_ID_RE.match(value))


@dataclass(frozen=True)
class NewTask:
    """A validated submission waiting to be committed."""

    kind: str
    payload: dict[str, Any]
    request_id: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    task_id: str = field(default_factory=new_task_id)


@dataclass(frozen=True)
class TaskRecord:
    """One row of the tasks table as the rest of guardian sees it."""

    id: str
    kind: str
    status: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: dict[str, Any] | None
    error: str | None
    lease_owner: str | None

    def to_json(self) -> dict[str, Any]:
        """Return the public JSON shape of a task."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "payload": self.payload,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "error": self.error,
        }


_TASK_COLUMNS = (
    "id, kind, status, payload, attempts, max_attempts, created_at, started_at, finished_at, "
    "result, error, lease_owner"
)


def row_to_task(row: Sequence[Any], seal: PayloadSeal) -> TaskRecord:
    """Build a TaskRecord from a row of the standard column list (payload unsealed)."""
    return TaskRecord(
        id=row[0],
        kind=row[1],
        status=row[2],
        payload=json.loads(seal.unseal(row[3])),
        attempts=row[4],
        max_attempts=row[5],
        created_at=row[6],
        started_at=row[7],
        finished_at=row[8],
        result=json.loads(row[9]) if row[9] is not None else None,
        error=row[10],
        lease_owner=row[11],
    )


def bump_count(conn: sqlite3.Connection, kind: str, event: str, amount: int = 1) -> None:
    """Add ``amount`` to a task event counter inside the caller's transaction."""
    conn.execute(
        "INSERT INTO task_counts(kind, event, n) VALUES (?, ?, ?) "
        "ON CONFLICT(kind, event) DO UPDATE SET n = n + excluded.n",
        (kind, event, amount),
    )


def record_latency(conn: sqlite3.Connection, kind: str, latency_s: float) -> None:
    """Add one end-to-end latency sample to the histogram table in the caller's transaction."""
    bucket = bisect.bisect_left(TASK_LATENCY_BUCKETS_S, latency_s)
    conn.execute(
        "INSERT INTO task_latency(kind, bucket, n, sum_s) VALUES (?, ?, 1, ?) "
        "ON CONFLICT(kind, bucket) DO UPDATE SET n = n + 1, sum_s = sum_s + excluded.sum_s",
        (kind, bucket, latency_s),
    )


class Store:
    """A connection to one guardian database; not thread-safe (one per thread)."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database and apply pragmas and schema."""
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(
                path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self.conn.execute("PRAGMA synchronous=FULL")
            self._initialise()
            self.seal = for_database(path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc

    def _initialise(self, attempts: int = 50) -> None:
        """Switch to WAL and create the schema, retrying while another opener holds the lock.

        Switching a fresh database to WAL can fail with "database is locked" without waiting
        for the busy timeout when several processes open it at the same moment.
        """
        failures = 0
        while True:
            try:
                if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.conn.execute("PRAGMA journal_mode=WAL")
                if not self.conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'dependency_outcomes'"
                ).fetchone():
                    self.conn.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                failures += 1
                if "locked" not in str(exc) or failures >= attempts:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """Run the body in one ``BEGIN IMMEDIATE`` transaction; roll back on any error."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot start a write transaction: {exc}") from exc
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreError(f"write transaction failed: {exc}") from exc
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        """Roll back the open transaction if SQLite has not already done so."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one read query and return all rows, translating SQLite errors."""
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"query failed: {exc}") from exc

    # -- tasks -------------------------------------------------------------------------------

    def submit_many(self, new_tasks: Sequence[NewTask]) -> list[TaskRecord]:
        """Insert tasks in one durable transaction and return them as committed records."""
        now = time.time()
        with self.write() as conn:
            for task in new_tasks:
                conn.execute(
                    "INSERT INTO tasks(id, kind, payload, status, attempts, max_attempts, "
                    "not_before, created_at, request_id) VALUES (?, ?, ?, 'queued', 0, ?, ?, ?, ?)",
                    (
                        task.task_id,
                        task.kind,
                        self.seal.seal(json.dumps(task.payload)),
                        task.max_attempts,
                        now,
                        now,
                        task.request_id,
                    ),
                )
                bump_count(conn, task.kind, "submitted")
        return [
            TaskRecord(
                id=t.task_id,
                kind=t.kind,
                status="queued",
                payload=t.payload,
                attempts=0,
                max_attempts=t.max_attempts,
                created_at=now,
                started_at=None,
                finished_at=None,
                result=None,
                error=None,
                lease_owner=None,
            )
            for t in new_tasks
        ]

    def submit(self, new_task: NewTask) -> TaskRecord:
        """Insert one task durably."""
        return self.submit_many([new_task])[0]

    def get(self, task_id: str) -> TaskRecord:
        """Return the task with ``task_id`` or raise TaskNotFoundError."""
        rows = self.read(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?",  # noqa: S608 - constant
            (task_id,),
        )
        if not rows:
            raise TaskNotFoundError(f"task {task_id} not found")
        return row_to_task(rows[0], self.seal)

    def list_tasks(
        self, status: str | None = None, kind: str | None = None, limit: int = 50
    ) -> list[TaskRecord]:
        """Return newest-first tasks, optionally filtered by status and kind."""
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit)
        rows = self.read(
            f"SELECT {_TASK_COLUMNS} FROM tasks {where} ORDER BY created_at DESC LIMIT ?",  # noqa: S608 - only fixed clauses are interpolated
            params,
        )
        return [row_to_task(row, self.seal) for row in rows]

    def cancel(self, task_id: str) -> TaskRecord:
        """Cancel a queued or running task; a running worker's later completion is then refused."""
        now = time.time()
        with self.write() as conn:
            row = conn.execute("SELECT status, kind FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                raise TaskNotFoundError(f"task {task_id} not found")
            if row[0] in TERMINAL_STATUSES:
                raise TaskStateError(f"task {task_id} is already {row[0]}")
            conn.execute(
                "UPDATE tasks SET status = 'cancelled', finished_at = ?, lease_owner = NULL, "
                "lease_token = NULL, lease_expires_at = NULL WHERE id = ?",
                (now, task_id),
            )
            bump_count(conn, row[1], "cancelled")
        return self.get(task_id)

    def status_counts(self) -> dict[str, int]:
        """Return the number of tasks in each status (all statuses present, zero if none)."""
        counts = dict.fromkeys(TASK_STATUSES, 0)
        for status in TASK_STATUSES:
            # One indexed COUNT per status is faster than GROUP BY over the whole table.
            counts[status] = self.read("SELECT COUNT(*) FROM tasks WHERE status = ?", (status,))[0][
                0
            ]
        return counts

    def queue_depth(self) -> int:
        """Return the number of queued (not yet claimed) tasks."""
        return int(self.read("SELECT COUNT(*) FROM tasks WHERE status = 'queued'")[0][0])

    def event_counts(self) -> dict[tuple[str, str], int]:
        """Return the transactional task event counters keyed by (kind, event)."""
        return {(k, e): n for k, e, n in self.read("SELECT kind, event, n FROM task_counts")}

    def latency_histograms(self) -> dict[str, tuple[list[int], float]]:
        """Return per-kind non-cumulative bucket counts (last = +Inf) and the latency sum."""
        result: dict[str, tuple[list[int], float]] = {}
        for kind, bucket, count, sum_s in self.read(
            "SELECT kind, bucket, n, sum_s FROM task_latency"
        ):
            counts, total = result.get(kind, ([0] * (len(TASK_LATENCY_BUCKETS_S) + 1), 0.0))
            counts[bucket] += count
            result[kind] = (counts, total + sum_s)
        return result

    def probe_write(self) -> None:
        """Perform a real one-row write; raises StoreError if the store is not writable."""
        with self.write() as conn:
            conn.execute(
                "INSERT INTO readiness_probe(id, ts) VALUES (1, ?) "
                "ON CONFLICT(id) DO UPDATE SET ts = excluded.ts",
                (time.time(),),
            )

    def integrity_check(self) -> str:
        """Run SQLite's ``quick_check`` and return its verdict (``ok`` when healthy)."""
        return str(self.read("PRAGMA quick_check")[0][0])

    # -- settings ----------------------------------------------------------------------------

    def load_settings(self) -> dict[str, Any]:
        """Return the persisted settings as a plain dict."""
        return {
            key: json.loads(value) for key, value in self.read("SELECT key, value FROM settings")
        }

    def save_settings(self, values: dict[str, Any]) -> None:
        """Persist (upsert) the given settings keys in one transaction."""
        with self.write() as conn:
            for key, value in values.items():
                conn.execute(
                    "INSERT INTO settings(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, json.dumps(value)),
                )
