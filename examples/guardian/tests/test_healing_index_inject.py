"""The db-index-corrupt injector on a busy database: it waits out slow readers, within a bound."""

from __future__ import annotations

import sqlite3
import threading
import time

from guardian.healing.book.integrity import DamagedIndex
from guardian.healing.env import HealEnv
from guardian.paths import DataDir
from guardian.store import NewTask, Store


def _quick_check(data_dir: DataDir) -> str:
    """quick_check of the database from a fresh connection (errors as text)."""
    conn = sqlite3.connect(data_dir.db_path)
    try:
        return "\n".join(str(row[0]) for row in conn.execute("PRAGMA quick_check"))
    except sqlite3.DatabaseError as exc:
        return f"error: {exc}"
    finally:
        conn.close()


def _hold_read_snapshot(data_dir: DataDir, seconds: float, started: threading.Event) -> None:
    """Keep a read transaction open on the WAL for ``seconds`` (a reader slowed by a busy host)."""
    conn = sqlite3.connect(data_dir.db_path, isolation_level=None)
    try:
        # A commit first, so the WAL has frames and the snapshot below is one the WAL must keep.
        conn.execute("UPDATE tasks SET attempts = attempts + 1 WHERE rowid <= 50")
        conn.execute("BEGIN")
        conn.execute("SELECT COUNT(*) FROM tasks").fetchone()
        started.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_inject_waits_for_a_reader_slower_than_the_old_four_second_bound(data_dir: DataDir) -> None:
    """A reader holding the WAL for 6 s delays the injection; the page is zeroed all the same."""
    store = Store(data_dir.db_path)
    for number in range(400):
        store.submit(NewTask("orchestrate", {"note": f"task {number}"}))
    store.close()
    started = threading.Event()
    reader = threading.Thread(target=_hold_read_snapshot, args=(data_dir, 6.0, started))
    reader.start()
    try:
        assert started.wait(5)
        began = time.monotonic()
        injected = DamagedIndex().inject(HealEnv(data_dir, busy_timeout_ms=500), {})
        waited = time.monotonic() - began
    finally:
        reader.join(10)
    assert "error" not in injected, injected
    assert injected["wal_attempts"] > 1 and waited > 4.0
    assert _quick_check(data_dir) != "ok"
