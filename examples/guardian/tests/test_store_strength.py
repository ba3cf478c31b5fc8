"""Store and lease tests that pin exact values: records, counters, histograms, limits, error texts.

The broader tests in test_store.py and test_leases.py check the task life cycle; these check the
figures each step leaves behind, the ones the API, the metrics and an operator read, so that a
changed column, key, counter name or boundary is noticed (the release harness's mutation
sampling, G1.strength, asks exactly that).
"""

from __future__ import annotations

import threading
import time

import pytest

from guardian.errors import TaskNotFoundError, TaskStateError
from guardian.leases import (
    LeaseManager,
    heartbeat,
    live_workers,
    mark_worker,
    prune_workers,
    register_worker,
)
from guardian.store import TASK_LATENCY_BUCKETS_S, NewTask, Store
from tests.test_store import _LockedAtFirst

T0 = time.time() + 3600.0


def _task(store: Store, kind: str = "compute", max_attempts: int = 5) -> str:
    """Submit one task and return its id."""
    return store.submit(NewTask(kind, {"n": 1}, max_attempts=max_attempts)).id


def _column(store: Store, task_id: str, column: str) -> object:
    """One column of a task row."""
    return store.read(f"SELECT {column} FROM tasks WHERE id = ?", (task_id,))[0][0]


def test_submitted_record_equals_the_stored_one(store: Store) -> None:
    """What submit_many returns is exactly what get reads back, field by field, in order."""
    made = store.submit_many(
        [NewTask("compute", {"n": 1}, request_id="r1", max_attempts=3), NewTask("sleep", {"s": 2})]
    )
    assert [store.get(record.id) for record in made] == made
    first = made[0]
    assert (first.kind, first.status, first.payload, first.attempts, first.max_attempts) == (
        "compute",
        "queued",
        {"n": 1},
        0,
        3,
    )
    assert first.created_at == pytest.approx(time.time(), abs=30)
    assert (first.started_at, first.finished_at, first.result, first.error, first.lease_owner) == (
        None,
    ) * 5
    assert _column(store, first.id, "request_id") == "r1"
    assert _column(store, first.id, "not_before") == first.created_at
    assert store.event_counts() == {("compute", "submitted"): 1, ("sleep", "submitted"): 1}


def test_task_json_has_the_public_keys(store: Store) -> None:
    """to_json gives the documented keys with the record's values (no lease owner)."""
    record = store.get(_task(store))
    assert record.to_json() == {
        "id": record.id,
        "kind": "compute",
        "status": "queued",
        "payload": {"n": 1},
        "attempts": 0,
        "max_attempts": 5,
        "created_at": record.created_at,
        "started_at": None,
        "finished_at": None,
        "result": None,
        "error": None,
    }


def test_list_filters_by_status_and_kind_together(store: Store) -> None:
    """Both filters apply at once; no filter lists everything newest first, up to the limit."""
    compute = _task(store, "compute")
    sleep = _task(store, "sleep")
    store.cancel(sleep)
    assert [t.id for t in store.list_tasks(status="queued", kind="compute")] == [compute]
    assert store.list_tasks(status="queued", kind="sleep") == []
    assert [t.id for t in store.list_tasks(status="cancelled")] == [sleep]
    assert {t.id for t in store.list_tasks()} == {compute, sleep}
    assert len(store.list_tasks(limit=1)) == 1


def test_cancel_clears_the_lease_and_counts(store: Store) -> None:
    """Cancelling a running task stamps finished_at, clears its lease, counts cancelled."""
    task_id = _task(store)
    assert LeaseManager(store, "w1").claim() is not None
    before = time.time()
    cancelled = store.cancel(task_id)
    assert (cancelled.status, cancelled.lease_owner) == ("cancelled", None)
    assert cancelled.finished_at is not None and cancelled.finished_at >= before
    assert (
        _column(store, task_id, "lease_token"),
        _column(store, task_id, "lease_expires_at"),
    ) == (None, None)
    assert store.event_counts()[("compute", "cancelled")] == 1
    with pytest.raises(TaskStateError, match=f"task {task_id} is already cancelled"):
        store.cancel(task_id)
    with pytest.raises(TaskNotFoundError, match=r"task 0{32} not found"):
        store.cancel("0" * 32)


def test_status_counts_are_exact(store: Store) -> None:
    """Every status is present with its count."""
    assert store.status_counts() == dict.fromkeys(
        ("queued", "running", "completed", "failed", "cancelled"), 0
    )
    _task(store)
    store.cancel(_task(store))
    assert store.status_counts() == {
        "queued": 1,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 1,
    }
    assert store.queue_depth() == 1


def test_latency_histogram_buckets_and_sum(store: Store) -> None:
    """Completions land in the bucket of their latency; counts and sums add up per kind."""
    leases = LeaseManager(store, "w1")
    for latency_s in (0.004, 0.007, 400.0):
        _task(store)
        lease = leases.claim(now=T0)
        assert lease is not None
        assert leases.complete(lease, {"ok": True}, now=lease.created_at + latency_s)
    counts, total_s = store.latency_histograms()["compute"]
    assert len(counts) == len(TASK_LATENCY_BUCKETS_S) + 1
    assert (counts[0], counts[1], counts[-1], sum(counts)) == (1, 1, 1, 3)
    assert total_s == pytest.approx(400.011)
    assert store.event_counts()[("compute", "completed")] == 3


def test_probe_write_and_quick_check(store: Store) -> None:
    """The readiness probe writes its row; a healthy database's quick_check says ok."""
    before = time.time()
    store.probe_write()
    store.probe_write()
    ((probe_id, ts),) = store.read("SELECT id, ts FROM readiness_probe")
    assert probe_id == 1 and ts >= before
    assert store.integrity_check() == "ok"
    assert store.read("PRAGMA journal_mode")[0][0] == "wal"


def test_settings_upsert(store: Store) -> None:
    """Saved settings read back as values; saving a key again replaces it."""
    store.save_settings({"worker_count": 2, "note": "a"})
    store.save_settings({"worker_count": 4})
    assert store.load_settings() == {"worker_count": 4, "note": "a"}


def test_claim_returns_the_whole_lease(store: Store) -> None:
    """A claim's lease carries kind, payload, attempts, limit, creation time, token, owner."""
    task = store.submit(NewTask("sleep", {"s": 1}, max_attempts=2))
    lease = LeaseManager(store, "w9", lease_s=7.0).claim(now=T0)
    assert lease is not None
    assert (lease.task_id, lease.kind, lease.payload, lease.attempts, lease.max_attempts) == (
        task.id,
        "sleep",
        {"s": 1},
        1,
        2,
    )
    assert (lease.created_at, lease.owner, len(lease.token)) == (task.created_at, "w9", 16)
    assert _column(store, task.id, "lease_token") == lease.token
    assert _column(store, task.id, "lease_expires_at") == T0 + 7.0
    assert store.get(task.id).started_at == T0


def test_a_reclaimed_task_keeps_its_first_start(store: Store) -> None:
    """started_at is the first claim's time; a second claim after a release does not move it."""
    task_id = _task(store)
    leases = LeaseManager(store, "w1")
    lease = leases.claim(now=T0)
    assert lease is not None
    assert leases.release(lease, now=T0 + 1)
    again = leases.claim(now=T0 + 2)
    assert again is not None and again.attempts == 1
    assert store.get(task_id).started_at == T0


def test_claim_skips_tasks_not_yet_due(store: Store) -> None:
    """A task released with a delay is not claimable before its not_before, and is at it."""
    _task(store)
    leases = LeaseManager(store, "w1")
    lease = leases.claim(now=T0)
    assert lease is not None
    assert leases.release(lease, delay_s=10.0, now=T0)
    assert leases.claim(now=T0 + 9.9) is None
    assert not leases.has_work(now=T0 + 9.9)
    assert leases.has_work(now=T0 + 10.0)
    assert leases.claim(now=T0 + 10.0) is not None


def test_release_defaults_to_now_without_delay_and_refunds(store: Store) -> None:
    """release(lease) re-queues at once, keeps no error, refunds the attempt and counts released."""
    task_id = _task(store)
    leases = LeaseManager(store, "w1")
    lease = leases.claim(now=T0)
    assert lease is not None
    assert leases.release(lease, now=T0)
    assert (_column(store, task_id, "not_before"), _column(store, task_id, "attempts")) == (T0, 0)
    assert _column(store, task_id, "error") is None
    assert store.event_counts()[("compute", "released")] == 1
    assert ("compute", "retried") not in store.event_counts()
    assert not leases.release(lease, now=T0)


def test_retry_keeps_the_attempt_and_the_error(store: Store) -> None:
    """With attempts left, retry_or_fail re-queues after the delay, keeping attempt and error."""
    task_id = _task(store, max_attempts=3)
    leases = LeaseManager(store, "w1")
    lease = leases.claim(now=T0)
    assert lease is not None
    assert leases.retry_or_fail(lease, "boom", delay_s=5.0, now=T0) == "retried"
    assert (_column(store, task_id, "not_before"), _column(store, task_id, "attempts")) == (
        T0 + 5.0,
        1,
    )
    assert _column(store, task_id, "error") == "boom"
    assert store.event_counts()[("compute", "retried")] == 1
    assert leases.retry_or_fail(lease, "again", delay_s=5.0, now=T0) == "lost"


def test_the_last_attempt_fails_and_a_lost_lease_says_lost(store: Store) -> None:
    """Out of attempts, retry_or_fail fails the task; a lease already lost gives lost."""
    task_id = _task(store, max_attempts=1)
    leases = LeaseManager(store, "w1")
    lease = leases.claim(now=T0)
    assert lease is not None
    assert leases.retry_or_fail(lease, "boom", delay_s=1.0, now=T0 + 3) == "failed"
    record = store.get(task_id)
    assert (record.status, record.error, record.finished_at) == ("failed", "boom", T0 + 3)
    assert leases.retry_or_fail(lease, "boom", delay_s=1.0, now=T0 + 4) == "lost"
    assert store.event_counts()[("compute", "failed")] == 1


def test_a_long_error_is_cut_at_2000_characters(store: Store) -> None:
    """fail() keeps the first 2000 characters of the error."""
    task_id = _task(store)
    leases = LeaseManager(store, "w1")
    lease = leases.claim(now=T0)
    assert lease is not None
    assert leases.fail(lease, "e" * 1999 + "xyz", now=T0)
    assert store.get(task_id).error == "e" * 1999 + "x"


def test_complete_stores_the_result_and_counts_the_worker(store: Store) -> None:
    """A completion stores result and finish time, clears the lease, counts the worker's task."""
    register_worker(store, "w1", 0, 11)
    task_id = _task(store)
    leases = LeaseManager(store, "w1")
    lease = leases.claim(now=T0)
    assert lease is not None
    assert leases.complete(lease, {"v": 2}, now=T0 + 1)
    record = store.get(task_id)
    assert (record.status, record.result, record.finished_at, record.lease_owner) == (
        "completed",
        {"v": 2},
        T0 + 1,
        None,
    )
    assert store.read("SELECT tasks_done FROM workers WHERE worker_id = 'w1'")[0][0] == 1
    assert not leases.complete(lease, {"v": 3}, now=T0 + 2)


def test_expired_and_dead_owner_leases_say_why_when_exhausted(store: Store) -> None:
    """Tasks out of attempts are failed with the reason: lease expiry or the dead worker's name."""
    expired = _task(store, max_attempts=1)
    dead = _task(store, max_attempts=1)
    assert LeaseManager(store, "w1", lease_s=1.0).claim(now=T0) is not None
    assert LeaseManager(store, "w2", lease_s=100.0).claim(now=T0) is not None
    reaper = LeaseManager(store, "supervisor")
    assert reaper.reap_expired(now=T0 + 2) == 1
    assert store.get(expired).error == "lease expired; attempts exhausted"
    assert store.get(expired).finished_at == T0 + 2
    assert reaper.release_owner("w2", now=T0 + 3) == 1
    assert store.get(dead).error == "worker w2 died holding the lease; attempts exhausted"
    assert store.event_counts()[("compute", "failed")] == 2
    assert reaper.reap_expired(now=T0 + 4) == 0


def test_requeued_leases_count_as_lost(store: Store) -> None:
    """A task with attempts left goes back to the queue, lease cleared, counted lease_lost."""
    task_id = _task(store)
    assert LeaseManager(store, "w1", lease_s=1.0).claim(now=T0) is not None
    assert LeaseManager(store, "supervisor").reap_expired(now=T0 + 5) == 1
    record = store.get(task_id)
    assert (record.status, record.lease_owner, _column(store, task_id, "not_before")) == (
        "queued",
        None,
        T0 + 5,
    )
    assert store.event_counts()[("compute", "lease_lost")] == 1


def test_in_flight_limits(store: Store) -> None:
    """Limit 0 is none, a negative limit skips the kind, a positive one caps its running tasks."""
    for kind in ("a", "a", "b", "c"):
        _task(store, kind)
    worker = LeaseManager(store, "w1")
    skip_a = {"a": -1, "b": -1, "c": 0}
    assert worker.has_work(now=T0, in_flight_limits=skip_a)
    first = worker.claim(now=T0, in_flight_limits=skip_a)
    assert first is not None and first.kind == "c"
    assert not worker.has_work(now=T0, in_flight_limits=skip_a)
    assert worker.claim(now=T0, in_flight_limits=skip_a) is None
    one_a = {"a": 1, "b": -1}
    second = worker.claim(now=T0, in_flight_limits=one_a)
    assert second is not None and second.kind == "a"
    assert worker.claim(now=T0, in_flight_limits=one_a) is None
    assert worker.claim(now=T0, in_flight_limits={"a": 2, "b": -1}) is not None
    third = worker.claim(now=T0, in_flight_limits={"a": 0})
    assert third is not None and third.kind == "b"


def test_extend_counts_only_the_owners_running_leases(store: Store) -> None:
    """extend() pushes the owner's leases out by lease_s and returns how many it moved."""
    mine, theirs = _task(store), _task(store)
    me = LeaseManager(store, "w1", lease_s=5.0)
    assert me.claim(now=T0) is not None
    assert LeaseManager(store, "w2", lease_s=5.0).claim(now=T0) is not None
    assert me.extend(now=T0 + 3) == 1
    assert _column(store, mine, "lease_expires_at") == T0 + 8
    assert _column(store, theirs, "lease_expires_at") == T0 + 5


def test_worker_rows_register_beat_mark_and_prune(store: Store) -> None:
    """A worker row is (re)registered, beats, is marked, listed while live, pruned when old."""
    register_worker(store, "w1", 2, 77)
    mark_worker(store, "w1", "dead")
    register_worker(store, "w1", 2, 78)
    ((slot, pid, state),) = store.read(
        "SELECT slot, pid, state FROM workers WHERE worker_id = 'w1'"
    )
    assert (slot, pid, state) == (2, 78, "running")
    assert store.submit(NewTask("compute", {})) is not None
    assert LeaseManager(store, "w1").claim(now=T0) is not None
    heartbeat(store, "w1", lease_s=9.0, now=T0 + 1)
    assert (
        store.read("SELECT lease_expires_at FROM tasks WHERE lease_owner = 'w1'")[0][0] == T0 + 10
    )
    rows = live_workers(store, max_age_s=5.0, now=T0 + 3)
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in rows] == [("w1", 2, 78, T0 + 1, 0)]
    assert live_workers(store, max_age_s=1.0, now=T0 + 3) == []
    mark_worker(store, "w1", "stopped")
    assert store.read("SELECT state FROM workers WHERE worker_id = 'w1'")[0][0] == "stopped"
    assert live_workers(store, max_age_s=5.0, now=T0 + 3) == []
    register_worker(store, "w2", 3, 79)
    heartbeat(store, "w2", lease_s=1.0, now=T0 + 5)
    assert prune_workers(store, older_than_s=10.0, now=T0 + 12) == 1
    assert [r[0] for r in store.read("SELECT worker_id FROM workers")] == ["w2"]


def test_the_connection_autocommits_outside_write(store: Store) -> None:
    """Statements outside write() commit at once: another connection sees them."""
    store.conn.execute("INSERT INTO settings(key, value) VALUES ('probe', '1')")
    other = Store(store.path)
    try:
        assert other.load_settings() == {"probe": 1}
    finally:
        other.close()


def test_a_store_may_be_used_from_another_thread(store: Store) -> None:
    """The connection is not bound to the thread that opened it."""
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(store.queue_depth()))
    worker.start()
    worker.join(timeout=10)
    assert seen == [0]


def test_initialise_waits_briefly_between_locked_attempts(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each retry of a locked WAL switch sleeps 50 ms, not longer."""
    sleeps: list[float] = []
    monkeypatch.setattr("guardian.store.time.sleep", sleeps.append)
    flaky = _LockedAtFirst(store.conn, failures=2)
    store.conn = flaky  # type: ignore[assignment]
    store._initialise(attempts=5)
    assert sleeps == [0.05, 0.05]


def test_extend_without_a_time_uses_the_real_clock(store: Store) -> None:
    """extend() with no time given pushes the lease to now + lease_s by the real clock."""
    task_id = _task(store)
    leases = LeaseManager(store, "w1", lease_s=5.0)
    assert leases.claim(now=T0) is not None
    before = time.time()
    assert leases.extend() == 1
    expires = _column(store, task_id, "lease_expires_at")
    assert isinstance(expires, float)
    assert before + 5.0 <= expires <= time.time() + 5.0
