"""Tests of task leases: claim, exactly-once completion, release, expiry, heartbeats."""

from __future__ import annotations

import threading
import time

from guardian.leases import (
    LeaseManager,
    heartbeat,
    live_workers,
    mark_worker,
    prune_workers,
    register_worker,
)
from guardian.store import NewTask, Store

# Tasks are stamped with the real clock; simulated times are offsets from a little later.
T0 = time.time() + 3600.0


def _submit(store: Store, n: int = 1, kind: str = "compute", max_attempts: int = 5) -> list[str]:
    """Submit ``n`` tasks and return their ids."""
    return [
        r.id
        for r in store.submit_many([NewTask(kind, {}, max_attempts=max_attempts) for _ in range(n)])
    ]


def test_claim_takes_oldest_and_marks_running(store: Store) -> None:
    """Claims are FIFO and move the task to running with one attempt."""
    first, second = _submit(store, 2)
    leases = LeaseManager(store, "w1")
    assert leases.has_work()
    lease = leases.claim()
    assert lease is not None
    assert lease.task_id == first
    assert lease.attempts == 1
    assert store.get(first).status == "running"
    assert store.get(first).lease_owner == "w1"
    assert leases.claim().task_id == second  # type: ignore[union-attr]
    assert leases.claim() is None
    assert not leases.has_work()


def test_complete_records_exactly_once(store: Store) -> None:
    """A second completion with the same lease is refused and counted nowhere."""
    (task_id,) = _submit(store)
    leases = LeaseManager(store, "w1")
    lease = leases.claim()
    assert lease is not None
    assert leases.complete(lease, {"ok": True})
    assert not leases.complete(lease, {"ok": True})
    assert store.get(task_id).status == "completed"
    assert store.event_counts()[("compute", "completed")] == 1
    histograms = store.latency_histograms()
    assert sum(histograms["compute"][0]) == 1


def test_dead_worker_cannot_complete_after_release(store: Store) -> None:
    """After the supervisor releases a dead worker's lease, its late completion is refused."""
    (task_id,) = _submit(store)
    dead = LeaseManager(store, "worker-0-111")
    stale_lease = dead.claim()
    assert stale_lease is not None
    assert LeaseManager(store, "supervisor").release_owner("worker-0-111") == 1
    assert store.get(task_id).status == "queued"
    fresh = LeaseManager(store, "worker-1-222")
    new_lease = fresh.claim()
    assert new_lease is not None
    assert new_lease.attempts == 2
    assert not dead.complete(stale_lease, {"from": "dead"})
    assert fresh.complete(new_lease, {"from": "fresh"})
    assert store.get(task_id).result == {"from": "fresh"}
    assert store.event_counts()[("compute", "completed")] == 1
    assert store.event_counts()[("compute", "lease_lost")] == 1


def test_reap_expired_requeues_and_exhausts(store: Store) -> None:
    """Expired leases are re-queued, or failed once attempts are used up."""
    (retry_id,) = _submit(store, max_attempts=5)
    (last_id,) = _submit(store, max_attempts=1)
    leases = LeaseManager(store, "w1", lease_s=1.0)
    assert leases.claim(now=T0 + 100.0) is not None
    assert leases.claim(now=T0 + 100.0) is not None
    assert leases.reap_expired(now=T0 + 100.5) == 0
    assert leases.reap_expired(now=T0 + 102.0) == 2
    assert store.get(retry_id).status == "queued"
    failed = store.get(last_id)
    assert failed.status == "failed"
    assert "attempts exhausted" in (failed.error or "")
    assert store.event_counts()[("compute", "failed")] == 1


def test_extend_and_heartbeat_push_expiry(store: Store) -> None:
    """Extending (directly or via heartbeat) keeps a lease from being reaped."""
    _submit(store)
    register_worker(store, "w1", 0, 123)
    leases = LeaseManager(store, "w1", lease_s=1.0)
    assert leases.claim(now=T0 + 100.0) is not None
    assert leases.extend(now=T0 + 100.9) == 1
    heartbeat(store, "w1", lease_s=1.0, now=T0 + 101.8)
    assert leases.reap_expired(now=T0 + 102.5) == 0
    assert leases.reap_expired(now=T0 + 103.0) == 1


def test_release_refunds_attempt_and_delays(store: Store) -> None:
    """A release with delay hides the task until not_before and refunds the attempt."""
    (task_id,) = _submit(store)
    leases = LeaseManager(store, "w1")
    lease = leases.claim(now=T0 + 100.0)
    assert lease is not None
    assert leases.release(lease, delay_s=5.0, now=T0 + 100.0)
    assert not leases.release(lease, now=T0 + 100.0)
    assert store.get(task_id).attempts == 0
    assert not leases.has_work(now=T0 + 104.0)
    assert leases.claim(now=T0 + 104.0) is None
    assert leases.claim(now=T0 + 105.5) is not None


def test_retry_or_fail(store: Store) -> None:
    """retry_or_fail re-queues while attempts remain and fails on the last attempt."""
    (task_id,) = _submit(store, max_attempts=2)
    leases = LeaseManager(store, "w1")
    first = leases.claim(now=T0 + 1.0)
    assert first is not None
    assert leases.retry_or_fail(first, "boom", 0.0, now=T0 + 1.0) == "retried"
    second = leases.claim(now=T0 + 2.0)
    assert second is not None
    assert leases.retry_or_fail(second, "boom again", 0.0, now=T0 + 2.0) == "failed"
    assert store.get(task_id).status == "failed"
    assert leases.retry_or_fail(second, "late", 0.0) == "lost"
    assert leases.retry_or_fail(first, "late", 0.0) == "lost"


def test_fail_and_cancelled_running_task(store: Store) -> None:
    """fail() records once; a cancelled running task can no longer be completed."""
    fail_id, cancel_id = _submit(store, 2)
    leases = LeaseManager(store, "w1")
    to_fail = leases.claim()
    to_cancel = leases.claim()
    assert to_fail is not None
    assert to_cancel is not None
    assert leases.fail(to_fail, "bad")
    assert not leases.fail(to_fail, "bad")
    store.cancel(cancel_id)
    assert not leases.complete(to_cancel, {})
    assert store.get(cancel_id).status == "cancelled"
    assert store.get(fail_id).error == "bad"


def test_concurrent_claims_never_share_a_task(store: Store) -> None:
    """Threads with separate connections claiming at once each get distinct tasks."""
    total = 60
    _submit(store, total)
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all(owner: str) -> None:
        local = Store(store.path)
        leases = LeaseManager(local, owner)
        while (lease := leases.claim()) is not None:
            assert leases.complete(lease, {"by": owner})
            with lock:
                claimed.append(lease.task_id)
        local.close()

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(claimed) == total
    assert len(set(claimed)) == total
    assert store.event_counts()[("compute", "completed")] == total


def test_worker_rows_liveness_and_pruning(store: Store) -> None:
    """Live workers are those running with fresh heartbeats; old rows are pruned."""
    register_worker(store, "w-fresh", 0, 1)
    register_worker(store, "w-old", 1, 2)
    heartbeat(store, "w-old", lease_s=1.0, now=10.0)
    names = [row[0] for row in live_workers(store, max_age_s=5.0)]
    assert names == ["w-fresh"]
    mark_worker(store, "w-fresh", "stopped")
    assert live_workers(store, max_age_s=5.0) == []
    assert prune_workers(store, older_than_s=60.0) == 1
    assert [r[0] for r in store.read("SELECT worker_id FROM workers")] == ["w-fresh"]


def test_fail_without_a_time_stamps_the_real_clock(store: Store) -> None:
    """fail() with no `now` records the current time as finished_at (a G1.strength survivor)."""
    (task_id,) = _submit(store)
    leases = LeaseManager(store, "w1")
    lease = leases.claim()
    assert lease is not None
    before = time.time()
    assert leases.fail(lease, "boom")
    task = store.get(task_id)
    assert task.status == "failed"
    assert task.finished_at is not None
    assert before <= task.finished_at <= time.time()
