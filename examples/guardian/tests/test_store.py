"""Tests of the SQLite store: durability settings, submission, queries, cancel, settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from guardian import settings as settings_mod
from guardian.errors import SettingsError, StoreError, TaskNotFoundError, TaskStateError
from guardian.store import NewTask, Store, is_task_id, new_task_id


def test_pragmas_are_wal_and_full(store: Store) -> None:
    """The store runs in WAL mode with synchronous=FULL (2), as documented."""
    assert store.read("PRAGMA journal_mode")[0][0] == "wal"
    assert store.read("PRAGMA synchronous")[0][0] == 2


def test_submit_then_get_roundtrip(store: Store) -> None:
    """A submitted task is readable with its payload and queued status."""
    record = store.submit(NewTask("compute", {"cost_ms": 5}, request_id="r1"))
    fetched = store.get(record.id)
    assert fetched.status == "queued"
    assert fetched.payload == {"cost_ms": 5}
    assert fetched.to_json()["id"] == record.id


def test_submit_is_visible_to_another_connection(store: Store, tmp_path: Path) -> None:
    """Once submit returns, a separate connection sees the row (it is committed)."""
    record = store.submit(NewTask("orchestrate", {}))
    other = sqlite3.connect(store.path)
    try:
        assert other.execute("SELECT status FROM tasks WHERE id = ?", (record.id,)).fetchone() == (
            "queued",
        )
    finally:
        other.close()


def test_submit_many_bumps_submitted_counter(store: Store) -> None:
    """The submitted counter moves in the same transaction as the inserts."""
    store.submit_many([NewTask("compute", {}) for _ in range(3)] + [NewTask("orchestrate", {})])
    counts = store.event_counts()
    assert counts[("compute", "submitted")] == 3
    assert counts[("orchestrate", "submitted")] == 1


def test_get_missing_raises(store: Store) -> None:
    """Unknown ids raise TaskNotFoundError."""
    with pytest.raises(TaskNotFoundError):
        store.get(new_task_id())


def test_list_filters_and_limit(store: Store) -> None:
    """Listing filters by kind and status and honours the limit, newest first."""
    ids = [store.submit(NewTask("compute", {})).id for _ in range(3)]
    store.submit(NewTask("orchestrate", {}))
    listed = store.list_tasks(kind="compute", limit=2)
    assert [t.id for t in listed] == ids[::-1][:2]
    assert len(store.list_tasks(status="queued")) == 4
    assert store.list_tasks(status="completed") == []


def test_cancel_queued_then_cancel_again_conflicts(store: Store) -> None:
    """Cancelling a queued task works once; a second cancel is a state error."""
    record = store.submit(NewTask("compute", {}))
    assert store.cancel(record.id).status == "cancelled"
    assert store.event_counts()[("compute", "cancelled")] == 1
    with pytest.raises(TaskStateError):
        store.cancel(record.id)


def test_cancel_missing_raises(store: Store) -> None:
    """Cancelling an unknown id raises TaskNotFoundError and writes nothing."""
    with pytest.raises(TaskNotFoundError):
        store.cancel(new_task_id())
    assert store.event_counts() == {}


def test_status_counts_and_queue_depth(store: Store) -> None:
    """Status counts include every status, zero when empty."""
    store.submit(NewTask("compute", {}))
    counts = store.status_counts()
    assert counts["queued"] == 1
    assert counts["completed"] == 0
    assert store.queue_depth() == 1


def test_probe_write_and_integrity(store: Store) -> None:
    """The readiness probe really writes, and quick_check reports ok."""
    store.probe_write()
    assert store.read("SELECT COUNT(*) FROM readiness_probe")[0][0] == 1
    assert store.integrity_check() == "ok"


def test_write_rolls_back_on_error(store: Store) -> None:
    """An exception inside a write transaction rolls everything back."""
    with pytest.raises(RuntimeError), store.write() as conn:
        conn.execute("INSERT INTO settings(key, value) VALUES ('x', '1')")
        raise RuntimeError("boom")
    assert store.load_settings() == {}


def test_sql_error_becomes_store_error(store: Store) -> None:
    """SQLite errors surface as the typed StoreError, naming the query failure."""
    with pytest.raises(StoreError, match=r"query failed: no such table: no_such_table"):
        store.read("SELECT * FROM no_such_table")
    with pytest.raises(StoreError), store.write() as conn:
        conn.execute("INSERT INTO no_such_table VALUES (1)")


def test_open_failure_is_store_error(tmp_path: Path) -> None:
    """A database path that cannot be opened raises StoreError."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        Store(blocker / "sub" / "guardian.db")


def test_write_lock_timeout_is_store_error(store: Store) -> None:
    """A write lock held elsewhere past busy_timeout gives StoreError, not a hang."""
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    store.conn.execute("PRAGMA busy_timeout=50")
    try:
        with pytest.raises(StoreError), store.write():
            pass
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_task_id_shape() -> None:
    """Only 32 lowercase hex digits count as a task id."""
    assert is_task_id(new_task_id())
    assert not is_task_id("../../etc/passwd")
    assert not is_task_id("A" * 32)


def test_settings_roundtrip_and_validation(store: Store) -> None:
    """Settings persist, merge over defaults and reject unknown keys and out-of-bounds values."""
    assert settings_mod.load(store).worker_count == 2
    saved = settings_mod.save(store, {"worker_count": "3", "log_level": "debug"})
    assert saved.worker_count == 3
    assert saved.log_level == "DEBUG"
    assert settings_mod.load(store) == saved
    with pytest.raises(SettingsError):
        settings_mod.save(store, {"worker_count": 99})
    with pytest.raises(SettingsError):
        settings_mod.save(store, {"nope": 1})
    with pytest.raises(SettingsError):
        settings_mod.save(store, {"compute_cost_ms": "ten"})
    with pytest.raises(SettingsError):
        settings_mod.save(store, {"log_level": "LOUD"})


def test_bad_persisted_setting_falls_back_to_default(store: Store) -> None:
    """A hand-corrupted setting value is ignored instead of crashing every process."""
    store.save_settings({"worker_count": 500, "compute_cost_ms": 7})
    loaded = settings_mod.load(store)
    assert loaded.worker_count == 2
    assert loaded.compute_cost_ms == 7


class _LockedAtFirst:
    """A connection stand-in answering "database is locked" N times, then delegating."""

    def __init__(
        self, real: sqlite3.Connection, failures: int, message: str = "database is locked"
    ) -> None:
        self.real = real
        self.failures = failures
        self.message = message
        self.calls = 0

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError(self.message)
        return self.real.execute(sql, *args)

    def executescript(self, sql: str) -> sqlite3.Cursor:
        return self.real.executescript(sql)

    def close(self) -> None:
        self.real.close()


def test_initialise_retries_while_the_database_is_locked(store: Store) -> None:
    """Opening while another process switches to WAL retries on "locked" and then succeeds."""
    flaky = _LockedAtFirst(store.conn, failures=2)
    store.conn = flaky  # type: ignore[assignment]
    store._initialise(attempts=5)
    assert flaky.calls >= 3
    assert flaky.failures == 0


def test_initialise_gives_up_after_the_last_locked_attempt(store: Store) -> None:
    """A lock that never clears is raised after the given attempts, not retried forever."""
    flaky = _LockedAtFirst(store.conn, failures=100)
    store.conn = flaky  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store._initialise(attempts=3)
    assert flaky.calls == 3


def test_initialise_raises_other_errors_at_once(store: Store) -> None:
    """An error that is not a lock (e.g. a corrupt file) is not retried."""
    flaky = _LockedAtFirst(store.conn, failures=1, message="file is not a database")
    store.conn = flaky  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError, match="not a database"):
        store._initialise(attempts=5)
    assert flaky.calls == 1


def test_rollback_outside_a_transaction_is_a_no_op(store: Store) -> None:
    """Rolling back when SQLite already ended the transaction does nothing and raises nothing."""
    assert not store.conn.in_transaction
    store._rollback()
    assert not store.conn.in_transaction


def test_store_provider_reopen_gives_a_fresh_writable_connection(tmp_path: Path) -> None:
    """reopen() drops this thread's connection; the next get() opens a new one that can write."""
    from guardian.api.context import StoreProvider
    from guardian.paths import DataDir

    data_dir = DataDir(tmp_path / "d")
    data_dir.ensure()
    provider = StoreProvider(data_dir)
    first = provider.get()
    provider.reopen()
    second = provider.get()
    assert second is not first
    second.probe_write()
    provider.close_all()


def test_store_provider_closes_the_connections_of_ended_threads(tmp_path: Path) -> None:
    """A connection opened for a thread that has ended is closed when the next thread opens one."""
    import sqlite3
    import threading

    from guardian.api.context import StoreProvider
    from guardian.paths import DataDir

    data_dir = DataDir(tmp_path / "d")
    data_dir.ensure()
    provider = StoreProvider(data_dir)
    opened: list[Store] = []
    for _ in range(5):
        worker = threading.Thread(target=lambda: opened.append(provider.get()))
        worker.start()
        worker.join()
    mine = provider.get()
    assert provider.open_count() == 1
    for store in opened:
        with pytest.raises(sqlite3.ProgrammingError):
            store.conn.execute("SELECT 1")
    mine.probe_write()
    provider.close_all()
    assert provider.open_count() == 0


def test_heal_env_closes_the_connections_of_ended_threads(tmp_path: Path) -> None:
    """A playbook-run thread's connection is closed once it has ended and another one opens."""
    import sqlite3
    import threading

    from guardian.healing.env import HealEnv
    from guardian.paths import DataDir

    data_dir = DataDir(tmp_path / "d")
    data_dir.ensure()
    env = HealEnv(data_dir)
    opened: list[Store] = []
    for _ in range(5):
        run = threading.Thread(target=lambda: opened.append(env.store()))
        run.start()
        run.join()
    mine = env.store()
    assert env.open_count() == 1
    for store in opened:
        with pytest.raises(sqlite3.ProgrammingError):
            store.conn.execute("SELECT 1")
    mine.probe_write()
    env.close()
    assert env.open_count() == 0
