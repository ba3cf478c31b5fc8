"""Task leases: claim, extend, complete exactly once, retry, release and reap expired leases.

A worker owns a task only while it holds an unexpired lease identified by a random token.
Every state change is a conditional UPDATE on ``(id, status='running', lease_token)`` inside a
transaction, so a worker whose lease was released (it died, hung, or the task was cancelled)
can never record a completion: a task is completed at most once. A task whose worker dies is
re-queued (immediately by the supervisor, or after lease expiry by anyone), so it is completed
at least once. Together: exactly once.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, cast

from guardian.store import Store, bump_count, record_latency

DEFAULT_LEASE_S = 15.0


@dataclass(frozen=True)
class Lease:
    """A claimed task and the token that proves ownership of it."""

    task_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    created_at: float
    token: str
    owner: str


def _requeue_sql(where: str) -> str:
    """Build the UPDATE that puts leased tasks matching ``where`` back in the queue."""
    # ``where`` is one of two constant clauses in this module, never user input.
    return (
        "UPDATE tasks SET status = 'queued', lease_owner = NULL, lease_token = NULL, "  # noqa: S608
        f"lease_expires_at = NULL, not_before = ? WHERE status = 'running' AND {where} "
        "AND attempts < max_attempts RETURNING kind"
    )


def _exhaust_sql(where: str) -> str:
    """Build the UPDATE that fails leased tasks matching ``where`` whose attempts are used up."""
    return (
        "UPDATE tasks SET status = 'failed', error = ?, finished_at = ?, lease_owner = NULL, "  # noqa: S608
        f"lease_token = NULL, lease_expires_at = NULL WHERE status = 'running' AND {where} "
        "AND attempts >= max_attempts RETURNING kind"
    )


def _limits_clause(limits: dict[str, int] | None) -> tuple[str, tuple[Any, ...]]:
    """Build the clause (constant text, values bound) skipping kinds at their in-flight limit.

    A limit of 0 means none; a negative limit skips the kind entirely for now.
    """
    clause, params = "", cast("tuple[Any, ...]", ())
    for kind, limit in sorted((limits or {}).items()):
        if limit < 0:
            clause += " AND kind != ?"
            params += (kind,)
        elif limit > 0:
            clause += (
                " AND (kind != ? OR (SELECT COUNT(*) FROM tasks AS busy "
                "WHERE busy.status = 'running' AND busy.kind = ?) < ?)"
            )
            params += (kind, kind, limit)
    return clause, params


class LeaseManager:
    """Lease operations on one Store, for one owner (a worker id or the supervisor)."""

    def __init__(self, store: Store, owner: str, lease_s: float = DEFAULT_LEASE_S) -> None:
        """Bind to a store and an owner name used as ``lease_owner``."""
        self.store = store
        self.owner = owner
        self.lease_s = lease_s

    def has_work(
        self, now: float | None = None, in_flight_limits: dict[str, int] | None = None
    ) -> bool:
        """Cheap lock-free check whether any task is ready to claim (WAL readers never block)."""
        when = time.time() if now is None else now
        clause, params = _limits_clause(in_flight_limits)
        return bool(
            self.store.read(
                f"SELECT 1 FROM tasks WHERE status = 'queued' AND not_before <= ?{clause} LIMIT 1",  # noqa: S608
                (when, *params),
            )
        )

    def claim(
        self, now: float | None = None, in_flight_limits: dict[str, int] | None = None
    ) -> Lease | None:
        """Atomically take the oldest ready task, or return None if the queue is empty.

        ``in_flight_limits`` (kind → n) is a bulkhead: a task of a limited kind is skipped
        while n tasks of that kind are running (n < 0: skipped now). The count and the claim
        share the write transaction, so concurrent workers can never exceed the limit.
        """
        when = time.time() if now is None else now
        token = secrets.token_hex(8)
        clause, params = _limits_clause(in_flight_limits)
        with self.store.write() as conn:
            row = conn.execute(
                "UPDATE tasks SET status = 'running', lease_owner = ?, lease_token = ?, "  # noqa: S608
                "lease_expires_at = ?, attempts = attempts + 1, "
                "started_at = COALESCE(started_at, ?) "
                "WHERE id = (SELECT id FROM tasks WHERE status = 'queued' AND not_before <= ?"
                f"{clause} ORDER BY not_before LIMIT 1) "
                "RETURNING id, kind, payload, attempts, max_attempts, created_at",
                (self.owner, token, when + self.lease_s, when, when, *params),
            ).fetchone()
        if row is None:
            return None
        return Lease(
            task_id=row[0],
            kind=row[1],
            payload=json.loads(self.store.seal.unseal(row[2])),
            attempts=row[3],
            max_attempts=row[4],
            created_at=row[5],
            token=token,
            owner=self.owner,
        )

    def extend(self, now: float | None = None) -> int:
        """Push out the expiry of every lease this owner holds; return how many were extended."""
        when = time.time() if now is None else now
        with self.store.write() as conn:
            cursor = conn.execute(
                "UPDATE tasks SET lease_expires_at = ? WHERE status = 'running' "
                "AND lease_owner = ?",
                (when + self.lease_s, self.owner),
            )
            return cursor.rowcount

    def complete(self, lease: Lease, result: dict[str, Any], now: float | None = None) -> bool:
        """Record success exactly once; False if the lease was lost (task released/cancelled)."""
        when = time.time() if now is None else now
        with self.store.write() as conn:
            cursor = conn.execute(
                "UPDATE tasks SET status = 'completed', result = ?, error = NULL, "
                "finished_at = ?, lease_owner = NULL, lease_token = NULL, "
                "lease_expires_at = NULL WHERE id = ? AND status = 'running' AND lease_token = ?",
                (json.dumps(result), when, lease.task_id, lease.token),
            )
            if cursor.rowcount != 1:
                return False
            bump_count(conn, lease.kind, "completed")
            record_latency(conn, lease.kind, max(0.0, when - lease.created_at))
            conn.execute(
                "UPDATE workers SET tasks_done = tasks_done + 1 WHERE worker_id = ?", (self.owner,)
            )
        return True

    def fail(self, lease: Lease, error: str, now: float | None = None) -> bool:
        """Mark the task permanently failed; False if the lease was already lost."""
        when = time.time() if now is None else now
        with self.store.write() as conn:
            cursor = conn.execute(
                "UPDATE tasks SET status = 'failed', error = ?, finished_at = ?, "
                "lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL "
                "WHERE id = ? AND status = 'running' AND lease_token = ?",
                (error[:2000], when, lease.task_id, lease.token),
            )
            if cursor.rowcount != 1:
                return False
            bump_count(conn, lease.kind, "failed")
        return True

    def retry_or_fail(
        self, lease: Lease, error: str, delay_s: float, now: float | None = None
    ) -> str:
        """Re-queue after ``delay_s`` if attempts remain, else fail; return the outcome name."""
        if lease.attempts >= lease.max_attempts:
            return "failed" if self.fail(lease, error, now) else "lost"
        return (
            "retried"
            if self.release(lease, delay_s, error, refund_attempt=False, now=now)
            else "lost"
        )

    def release(
        self,
        lease: Lease,
        delay_s: float = 0.0,
        error: str | None = None,
        *,
        refund_attempt: bool = True,
        now: float | None = None,
    ) -> bool:
        """Give the task back to the queue (after ``delay_s``); optionally refund the attempt."""
        when = time.time() if now is None else now
        refund = 1 if refund_attempt else 0
        with self.store.write() as conn:
            cursor = conn.execute(
                "UPDATE tasks SET status = 'queued', lease_owner = NULL, lease_token = NULL, "
                "lease_expires_at = NULL, not_before = ?, attempts = attempts - ?, "
                "error = COALESCE(?, error) "
                "WHERE id = ? AND status = 'running' AND lease_token = ?",
                (when + delay_s, refund, error, lease.task_id, lease.token),
            )
            if cursor.rowcount != 1:
                return False
            bump_count(conn, lease.kind, "retried" if not refund_attempt else "released")
        return True

    def release_owner(self, owner: str, now: float | None = None) -> int:
        """Re-queue (or fail, if out of attempts) every task leased by a dead ``owner``."""
        when = time.time() if now is None else now
        return self._requeue(
            conn_where="lease_owner = ?",
            params=(owner,),
            now=when,
            reason=f"worker {owner} died holding the lease",
        )

    def reap_expired(self, now: float | None = None) -> int:
        """Re-queue (or fail) tasks whose lease expired: their worker died or hung."""
        when = time.time() if now is None else now
        return self._requeue(
            conn_where="lease_expires_at < ?", params=(when,), now=when, reason="lease expired"
        )

    def _requeue(self, conn_where: str, params: tuple[Any, ...], now: float, reason: str) -> int:
        """Shared body of release_owner/reap_expired: requeue, or fail exhausted tasks."""
        with self.store.write() as conn:
            requeued = conn.execute(_requeue_sql(conn_where), (now, *params)).fetchall()
            exhausted = conn.execute(
                _exhaust_sql(conn_where), (f"{reason}; attempts exhausted", now, *params)
            ).fetchall()
            for (kind,) in requeued:
                bump_count(conn, kind, "lease_lost")
            for (kind,) in exhausted:
                bump_count(conn, kind, "failed")
        return len(requeued) + len(exhausted)


def register_worker(store: Store, worker_id: str, slot: int, pid: int) -> None:
    """Insert (or reset) the heartbeat row of a starting worker."""
    now = time.time()
    with store.write() as conn:
        conn.execute(
            "INSERT INTO workers(worker_id, slot, pid, started_at, heartbeat_at, state) "
            "VALUES (?, ?, ?, ?, ?, 'running') ON CONFLICT(worker_id) DO UPDATE SET "
            "pid = excluded.pid, started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at, state = 'running'",
            (worker_id, slot, pid, now, now),
        )


def heartbeat(store: Store, worker_id: str, lease_s: float, now: float | None = None) -> None:
    """Record that ``worker_id`` is alive and extend the leases it holds, in one transaction."""
    when = time.time() if now is None else now
    with store.write() as conn:
        conn.execute(
            "UPDATE workers SET heartbeat_at = ?, state = 'running' WHERE worker_id = ?",
            (when, worker_id),
        )
        conn.execute(
            "UPDATE tasks SET lease_expires_at = ? WHERE status = 'running' AND lease_owner = ?",
            (when + lease_s, worker_id),
        )


def mark_worker(store: Store, worker_id: str, state: str) -> None:
    """Set the state column of a worker row (e.g. ``stopped``, ``dead``)."""
    with store.write() as conn:
        conn.execute("UPDATE workers SET state = ? WHERE worker_id = ?", (state, worker_id))


def live_workers(store: Store, max_age_s: float, now: float | None = None) -> list[sqlite3.Row]:
    """Return rows of workers in state running whose heartbeat is younger than ``max_age_s``."""
    when = time.time() if now is None else now
    return store.read(
        "SELECT worker_id, slot, pid, started_at, heartbeat_at, tasks_done FROM workers "
        "WHERE state = 'running' AND heartbeat_at >= ? ORDER BY slot",
        (when - max_age_s,),
    )


def prune_workers(store: Store, older_than_s: float, now: float | None = None) -> int:
    """Delete worker rows not heard from for ``older_than_s`` (keeps the table small)."""
    when = time.time() if now is None else now
    with store.write() as conn:
        return conn.execute(
            "DELETE FROM workers WHERE heartbeat_at < ?",
            (when - older_than_s,),
        ).rowcount
