"""A circuit breaker whose state lives in the database, shared by all worker processes.

States: ``closed`` (calls flow), ``open`` (calls refused until ``open_s`` has passed) and
``half_open`` (one worker won the right to send a probe call). Sharing the state means one
outage opens the breaker for every worker at once, and /readyz and /metrics report the very
state the workers act on.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from guardian.errors import CircuitOpenError
from guardian.store import Store

STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}


@dataclass(frozen=True)
class CircuitState:
    """A snapshot of one breaker."""

    name: str
    state: str
    consecutive_failures: int
    opened_at: float | None
    updated_at: float

    @property
    def value(self) -> int:
        """Numeric form for the Prometheus gauge: closed=0, half_open=1, open=2."""
        return STATE_VALUES[self.state]


class CircuitBreaker:
    """Shared breaker guarding calls to one dependency."""

    def __init__(
        self,
        store: Store,
        name: str = "upstream",
        failure_threshold: int = 3,
        open_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the breaker; thresholds are per dependency."""
        self.store = store
        self.name = name
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self.clock = clock

    def snapshot(self) -> CircuitState:
        """Return the current state (``closed`` if the breaker was never used)."""
        rows = self.store.read(
            "SELECT state, consecutive_failures, opened_at, updated_at FROM circuit WHERE name = ?",
            (self.name,),
        )
        if not rows:
            return CircuitState(self.name, "closed", 0, None, 0.0)
        state, failures, opened_at, updated_at = rows[0]
        return CircuitState(self.name, state, failures, opened_at, updated_at)

    def before_call(self) -> None:
        """Allow a call, or raise CircuitOpenError saying when to come back."""
        current = self.snapshot()
        now = self.clock()
        if current.state == "closed":
            return
        if current.state == "half_open" and now - current.updated_at < 2 * self.open_s:
            raise CircuitOpenError(f"circuit {self.name} half-open: probe in flight", 1.0)
        if current.state == "open" and current.opened_at is not None:
            remaining = current.opened_at + self.open_s - now
            if remaining > 0:
                raise CircuitOpenError(f"circuit {self.name} open", remaining)
        # Open long enough (or a probe went missing): try to become the single prober.
        with self.store.write() as conn:
            won = conn.execute(
                "UPDATE circuit SET state = 'half_open', updated_at = ? "
                "WHERE name = ? AND state = ? AND updated_at = ?",
                (now, self.name, current.state, current.updated_at),
            ).rowcount
        if won != 1:
            raise CircuitOpenError(f"circuit {self.name}: another worker is probing", 1.0)

    def record_success(self) -> None:
        """Close the breaker after a successful call (writes only if something changes)."""
        current = self.snapshot()
        if current.state == "closed" and current.consecutive_failures == 0:
            return
        self._write("closed", 0, None)

    def record_failure(self) -> CircuitState:
        """Count a failed call; open the breaker at the threshold or when a probe fails."""
        now = self.clock()
        with self.store.write() as conn:
            row = conn.execute(
                "SELECT state, consecutive_failures, opened_at FROM circuit WHERE name = ?",
                (self.name,),
            ).fetchone()
            state, failures, opened_at = row if row else ("closed", 0, None)
            failures += 1
            if state == "half_open" or failures >= self.failure_threshold:
                state, opened_at = "open", now
            self._upsert(conn, state, failures, opened_at, now)
        return CircuitState(self.name, state, failures, opened_at, now)

    def _write(self, state: str, failures: int, opened_at: float | None) -> None:
        """Set the breaker row in its own transaction."""
        with self.store.write() as conn:
            self._upsert(conn, state, failures, opened_at, self.clock())

    def _upsert(
        self,
        conn: sqlite3.Connection,
        state: str,
        failures: int,
        opened_at: float | None,
        now: float,
    ) -> None:
        """Insert or update the breaker row inside an open transaction."""
        conn.execute(
            "INSERT INTO circuit(name, state, consecutive_failures, opened_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET state = excluded.state, "
            "consecutive_failures = excluded.consecutive_failures, "
            "opened_at = excluded.opened_at, updated_at = excluded.updated_at",
            (self.name, state, failures, opened_at, now),
        )
