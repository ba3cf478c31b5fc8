"""What playbooks and the healer act on: the data dir, per-thread stores, the clock, state.

Fault injection is allowed only when the instance was started with
``--enable-fault-injection`` (``GUARDIAN_FAULT_INJECTION=1`` in every child's environment).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from guardian.errors import GuardianError
from guardian.paths import DataDir
from guardian.store import Store

FAULT_INJECTION_ENV = "GUARDIAN_FAULT_INJECTION"
FAULTS_ENABLED_MARKER = "faults-enabled"


class FaultInjectionDisabledError(GuardianError):
    """Fault injection was requested on an instance started without the flag."""


def fault_injection_enabled() -> bool:
    """Tell whether this process belongs to an instance started with fault injection."""
    return os.environ.get(FAULT_INJECTION_ENV) == "1"


def data_dir_allows_faults(data_dir: DataDir) -> bool:
    """Tell whether the instance serving ``data_dir`` was started with fault injection."""
    return (data_dir.root / FAULTS_ENABLED_MARKER).exists()


def read_state(store: Store, key: str, default: Any = None) -> Any:
    """Read one JSON value from ``healer_state``."""
    rows = store.read("SELECT value FROM healer_state WHERE key = ?", (key,))
    return json.loads(rows[0][0]) if rows else default


def write_state(store: Store, key: str, value: Any, counters: dict[str, int] | None = None) -> None:
    """Upsert one JSON value into ``healer_state``; add ``counters`` in the same transaction."""
    with store.write() as conn:
        conn.execute(
            "INSERT INTO healer_state(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )
        for name, amount in (counters or {}).items():
            conn.execute(
                "INSERT INTO healer_counters(name, n) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET n = n + excluded.n",
                (name, amount),
            )


class Clock:
    """Wall clock for governance decisions; a test-settable override exists only with faults.

    The override (``healer_state.clock_override``, epoch seconds) is honoured only when the
    process runs with fault injection enabled, so a production instance cannot be time-shifted
    out of its change window.
    """

    def __init__(self, store_for: Any = None, allow_override: bool = False) -> None:
        """``store_for()`` returns a Store to read the override from."""
        self.store_for = store_for
        self.allow_override = allow_override
        self.fixed: float | None = None

    def now(self) -> float:
        """Return the governance time as epoch seconds."""
        if self.fixed is not None:
            return self.fixed
        if self.allow_override and self.store_for is not None:
            value = read_state(self.store_for(), "clock_override")
            if value is not None:
                return float(value)
        return time.time()

    def local(self) -> datetime:
        """Return governance time as a local datetime."""
        return datetime.fromtimestamp(self.now())


@dataclass
class HealEnv:
    """The instance a healer (or an injector) works on."""

    data_dir: DataDir
    upstream_url: str | None = None
    busy_timeout_ms: int | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    _local: threading.local = field(default_factory=threading.local)
    _opened: list[Store] = field(default_factory=list)
    # id(store) -> the thread it was opened for
    _owners: dict[int, threading.Thread] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        """Build the governance clock."""
        self.clock = Clock(self.store, allow_override=fault_injection_enabled())

    def store(self) -> Store:
        """Return this thread's store connection (sqlite connections are per-thread).

        Playbook runs and canary rounds run in threads that end; the connections of ended threads
        are closed when a new one is opened (a ci soak saw the healer's open database files grow
        by two with every playbook run).
        """
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = Store(self.data_dir.db_path)
            if self.busy_timeout_ms is not None:
                # The healer must not sit out a held lock for the store's full 15 s.
                store.conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            self._local.store = store
            with self._lock:
                for ended in [s for s in self._opened if not self._owners[id(s)].is_alive()]:
                    self._opened.remove(ended)
                    del self._owners[id(ended)]
                    ended.close()
                self._opened.append(store)
                self._owners[id(store)] = threading.current_thread()
        return store

    def open_count(self) -> int:
        """How many connections this env holds open."""
        with self._lock:
            return len(self._opened)

    def close(self) -> None:
        """Close every connection opened through this env."""
        with self._lock:
            for store in self._opened:
                store.close()
            self._opened.clear()
            self._owners.clear()
