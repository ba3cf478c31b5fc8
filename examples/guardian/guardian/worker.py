"""A worker process: claims tasks under a lease, runs them, records the outcome exactly once."""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from types import FrameType

import httpx

from guardian import kinds, logsetup
from guardian import settings as settings_mod
from guardian.circuit import CircuitBreaker
from guardian.dependency import UpstreamClient
from guardian.errors import (
    CircuitOpenError,
    DependencyError,
    PermanentTaskError,
    StoreError,
    TaskInterruptedError,
)
from guardian.leases import Lease, LeaseManager, heartbeat, mark_worker, register_worker
from guardian.paths import DataDir
from guardian.store import Store

log = logging.getLogger("guardian.worker")
# A dependency task that still cannot reach the upstream after this long is failed.
DEPENDENCY_DEADLINE_S = 600.0
# Dependency call outcomes are flushed to the database this often, and kept this long.
OUTCOME_FLUSH_S = 1.0
OUTCOME_RETENTION_S = 3600
# Exit code of a worker that refuses to start because of its configuration (EX_CONFIG).
EXIT_CONFIG = 78
MIB = 1024 * 1024


@dataclass(frozen=True)
class WorkerConfig:
    """Tunables of one worker process."""

    slot: int = 0
    upstream_url: str | None = None
    poll_interval_s: float = 0.02
    lease_s: float = 15.0
    heartbeat_s: float = 1.0
    reap_interval_s: float = 2.0
    settings_refresh_s: float = 2.0
    circuit_failure_threshold: int = 3
    circuit_open_s: float = 5.0


def worker_id_for(slot: int, pid: int) -> str:
    """Return the lease-owner name of the worker in ``slot`` with ``pid``."""
    return f"worker-{slot}-{pid}"


class Worker:
    """The claim → execute → record loop of one worker process."""

    def __init__(self, data_dir: DataDir, config: WorkerConfig) -> None:
        """Open the store and register this worker's heartbeat row."""
        self.data_dir = data_dir
        self.config = config
        self.worker_id = worker_id_for(config.slot, os.getpid())
        self.store = Store(data_dir.db_path)
        self.leases = LeaseManager(self.store, self.worker_id, config.lease_s)
        self.settings = settings_mod.load(self.store)
        self.stopping = False
        self.tasks_done = 0
        self._next_heartbeat = 0.0
        self._next_reap = 0.0
        self._next_settings = 0.0
        self._next_flush = 0.0
        self.recycle_requested = False
        self._fault_hooks = os.environ.get("GUARDIAN_FAULT_INJECTION") == "1"
        self._held_by_fault: list[object] = []
        breaker = CircuitBreaker(
            self.store,
            failure_threshold=config.circuit_failure_threshold,
            open_s=config.circuit_open_s,
        )
        self.upstream = self._make_upstream(breaker)
        register_worker(self.store, self.worker_id, config.slot, os.getpid())

    def _make_upstream(self, breaker: CircuitBreaker) -> UpstreamClient | None:
        """Build the upstream client from the current settings (None without an URL)."""
        if not self.config.upstream_url:
            return None
        return UpstreamClient(
            self.settings.upstream_url or self.config.upstream_url,
            breaker,
            timeout_s=self.settings.dependency_timeout_ms / 1000,
            retries=self.settings.dependency_retries,
            checkpoint=self.checkpoint,
            min_interval_s=self.settings.dependency_min_interval_ms / 1000,
        )

    def in_flight_limits(self) -> dict[str, int]:
        """Per-kind bulkheads from the settings (``dependency_max_in_flight``; 0 = none).

        While pacing holds this worker's next upstream call back, dependency tasks are not
        claimed at all (-1): the worker takes other work instead of sleeping on a task.
        """
        if self.upstream is not None and self.upstream.pacing_wait_s() > 0:
            return {"dependency": -1}
        return {"dependency": self.settings.dependency_max_in_flight}

    def request_pool_recycle(
        self, signum: int = signal.SIGUSR1, frame: FrameType | None = None
    ) -> None:
        """Signal handler (SIGUSR1): recycle the upstream connection pool between tasks."""
        del frame
        log.warning("pool recycle requested", extra={"signal": signum, "worker_id": self.worker_id})
        self.recycle_requested = True

    def request_stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        """Signal handler: finish or release the current task, then exit."""
        del frame
        log.info("stop requested", extra={"signal": signum, "worker_id": self.worker_id})
        self.stopping = True

    def checkpoint(self) -> None:
        """Heartbeat when due and abort when stopping; running tasks call this often."""
        if self.stopping:
            raise TaskInterruptedError("worker is shutting down")
        now = time.time()
        if now >= self._next_heartbeat:
            heartbeat(self.store, self.worker_id, self.config.lease_s, now)
            self._next_heartbeat = now + self.config.heartbeat_s

    def run(self, max_tasks: int | None = None, max_idle_s: float | None = None) -> int:
        """Process tasks until stopped (or the optional limits are hit); return tasks handled."""
        idle_since = time.monotonic()
        handled = 0
        while not self.stopping:
            if max_tasks is not None and handled >= max_tasks:
                break
            try:
                self._housekeeping()
                limits = self.in_flight_limits()
                ready = self.leases.has_work(in_flight_limits=limits)
                lease = self.leases.claim(in_flight_limits=limits) if ready else None
            except StoreError:
                log.exception("store unavailable; backing off", extra={"worker_id": self.worker_id})
                time.sleep(1.0)
                continue
            if lease is None:
                if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                    break
                time.sleep(self.config.poll_interval_s)
                continue
            self._handle(lease)
            handled += 1
            idle_since = time.monotonic()
        self.shutdown()
        return handled

    def _housekeeping(self) -> None:
        """Heartbeat, reap expired leases and refresh settings when each is due."""
        now = time.time()
        if now >= self._next_heartbeat:
            heartbeat(self.store, self.worker_id, self.config.lease_s, now)
            self._next_heartbeat = now + self.config.heartbeat_s
        if now >= self._next_reap:
            reaped = self.leases.reap_expired(now)
            if reaped:
                log.warning("re-queued tasks with expired leases", extra={"count": reaped})
            self._next_reap = now + self.config.reap_interval_s
        if now >= self._next_settings:
            fresh = settings_mod.load(self.store)
            if fresh != self.settings:
                self.settings = fresh
                logsetup.set_level(fresh.log_level)
                if self.upstream is not None:
                    self._apply_upstream_settings(self.upstream, fresh)
            self._next_settings = now + self.config.settings_refresh_s
            if self._fault_hooks:
                self._serve_fault_requests()
        if self.upstream is not None:
            if self.recycle_requested:
                self.recycle_requested = False
                self.upstream.recycle()
            if now >= self._next_flush:
                self._flush_outcomes(now)
                self._next_flush = now + OUTCOME_FLUSH_S

    def _apply_upstream_settings(
        self, upstream: UpstreamClient, fresh: settings_mod.Settings
    ) -> None:
        """Apply timeout, retries, pacing and the endpoint override to the live client."""
        upstream.timeout_s = fresh.dependency_timeout_ms / 1000
        upstream.client.timeout = httpx.Timeout(fresh.dependency_timeout_ms / 1000)
        upstream.retries = fresh.dependency_retries
        upstream.min_interval_s = fresh.dependency_min_interval_ms / 1000
        base_url = (fresh.upstream_url or self.config.upstream_url or "").rstrip("/")
        if base_url != upstream.base_url:
            log.warning("upstream endpoint changed", extra={"upstream_url": base_url})
            upstream.base_url = base_url

    def _flush_outcomes(self, now: float) -> None:
        """Add this worker's per-second call outcomes to ``dependency_outcomes``; prune old rows."""
        assert self.upstream is not None
        counts = self.upstream.take_outcomes()
        if not counts:
            return
        with self.store.write() as conn:
            conn.executemany(
                "INSERT INTO dependency_outcomes(ts, outcome, n) VALUES (?, ?, ?) "
                "ON CONFLICT(ts, outcome) DO UPDATE SET n = n + excluded.n",
                [(ts, outcome, n) for (ts, outcome), n in sorted(counts.items())],
            )
            conn.execute(
                "DELETE FROM dependency_outcomes WHERE ts < ?", (int(now) - OUTCOME_RETENTION_S,)
            )

    def _serve_fault_requests(self) -> None:
        """Fault hooks (fault-injection instances only): leak memory or pooled connections."""
        with self.store.write() as conn:
            rows = conn.execute(
                "DELETE FROM fault_requests WHERE target = ? "
                "AND action IN ('leak_mb', 'leak_connections') RETURNING action, amount",
                (f"worker-{self.config.slot}",),
            ).fetchall()
        for action, amount in rows:
            if action == "leak_mb":
                self._held_by_fault.append(b"\x01" * (int(amount) * MIB))
                log.warning("fault hook: holding memory", extra={"mib": amount})
            elif self.upstream is not None:
                self._leak_connections(self.upstream, int(amount))

    def _leak_connections(self, upstream: UpstreamClient, count: int) -> None:
        """Check ``count`` connections out of the pool and never return them (a leak)."""
        for _ in range(count):
            request = upstream.client.build_request("GET", f"{upstream.base_url}/healthz")
            try:
                self._held_by_fault.append(upstream.client.send(request, stream=True))
            except httpx.HTTPError as exc:
                log.warning("fault hook: pool exhausted", extra={"error": str(exc)})
                break
        log.warning("fault hook: holding pooled connections", extra={"count": count})

    def _handle(self, lease: Lease) -> None:
        """Execute one leased task and record its outcome."""
        ctx = kinds.TaskContext(self.settings, self.checkpoint, self.upstream)
        extra = {
            "task_id": lease.task_id,
            "kind": lease.kind,
            "attempt": lease.attempts,
            "worker_id": self.worker_id,
        }
        try:
            result = kinds.execute(lease.task_id, lease.kind, lease.payload, ctx)
        except TaskInterruptedError:
            self.leases.release(lease)
            log.info("task released on shutdown", extra=extra)
            return
        except CircuitOpenError as exc:
            self._defer(lease, exc, extra)
            return
        except DependencyError as exc:
            delay_s = min(30.0, 0.5 * 2 ** (lease.attempts - 1))
            outcome = self.leases.retry_or_fail(lease, str(exc), delay_s)
            log.warning("dependency task %s", outcome, extra={**extra, "error": str(exc)})
            return
        except PermanentTaskError as exc:
            self.leases.fail(lease, str(exc))
            log.warning("task failed permanently", extra={**extra, "error": str(exc)})
            return
        if self.leases.complete(lease, result):
            self.tasks_done += 1
            log.debug("task completed", extra=extra)
        else:
            log.warning("lease lost before completion was recorded; not recorded", extra=extra)

    def _defer(self, lease: Lease, exc: CircuitOpenError, extra: dict[str, object]) -> None:
        """Put a dependency task back while the circuit is open (no attempt is consumed)."""
        if time.time() - lease.created_at > DEPENDENCY_DEADLINE_S:
            self.leases.fail(lease, f"dependency unavailable for {DEPENDENCY_DEADLINE_S:.0f} s")
            log.warning("dependency task failed: deadline passed", extra=extra)
            return
        self.leases.release(lease, delay_s=max(0.2, exc.retry_after_s), refund_attempt=True)
        log.debug("dependency task deferred: circuit open", extra=extra)

    def shutdown(self) -> None:
        """Mark the worker stopped and close resources."""
        try:
            mark_worker(self.store, self.worker_id, "stopped")
        except StoreError:
            log.exception("could not mark worker stopped", extra={"worker_id": self.worker_id})
        if self.upstream is not None:
            self.upstream.close()
        self.store.close()
        log.info(
            "worker stopped", extra={"worker_id": self.worker_id, "tasks_done": self.tasks_done}
        )


def memory_limit_refusal(limit_mb: int, in_use_bytes: int) -> str | None:
    """Say why a worker using ``in_use_bytes`` of address space cannot run under ``limit_mb``."""
    needed = int(in_use_bytes * 1.25)  # room for the sqlite cache, HTTP buffers and task data
    if limit_mb <= 0 or limit_mb * MIB >= needed:
        return None
    return (
        f"worker_memory_limit_mb={limit_mb} is below the {needed // MIB} MiB of address space "
        "a worker needs"
    )


def apply_memory_limit(worker: Worker) -> str | None:
    """Cap the address space at ``worker_memory_limit_mb``; return the refusal if it cannot run.

    A limit the worker could never run under is refused at start (exit code 78) instead of
    failing later on a random allocation; the supervisor then sees a start-time crash loop.
    """
    import resource  # noqa: PLC0415 - POSIX only, like the process model

    import psutil  # noqa: PLC0415

    limit_mb = worker.settings.worker_memory_limit_mb
    refusal = memory_limit_refusal(limit_mb, psutil.Process().memory_info().vms)
    if refusal is not None or limit_mb <= 0:
        return refusal
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = limit_mb * MIB if hard == resource.RLIM_INFINITY else min(limit_mb * MIB, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return None


def record_start_failure(worker: Worker, reason: str) -> None:
    """Record why this worker refused to start, for operators and the healer."""
    with worker.store.write() as conn:
        conn.execute(
            "INSERT INTO supervisor_events(ts, role, slot, event, detail) "
            "VALUES (?, 'worker', ?, 'start_failed', ?)",
            (time.time(), worker.config.slot, reason),
        )


def main(data_dir: DataDir, config: WorkerConfig) -> int:
    """Entry point of ``guardian worker``: run until SIGTERM; return the exit code."""
    from guardian import procutil  # noqa: PLC0415 - keeps psutil out of in-process tests

    data_dir.ensure()
    procutil.bind_to_parent()
    data_dir.write_pid("worker", config.slot)
    worker = Worker(data_dir, config)
    refusal = apply_memory_limit(worker)
    if refusal is not None:
        log.error("worker refused to start", extra={"slot": config.slot, "reason": refusal})
        record_start_failure(worker, refusal)
        worker.shutdown()
        data_dir.remove_pid("worker", config.slot)
        return EXIT_CONFIG
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    signal.signal(signal.SIGUSR1, worker.request_pool_recycle)
    logsetup.set_level(worker.settings.log_level)
    log.info("worker started", extra={"worker_id": worker.worker_id, "slot": config.slot})
    try:
        worker.run()
    finally:
        data_dir.remove_pid("worker", config.slot)
    return 0
