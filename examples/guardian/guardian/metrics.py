"""Prometheus metrics: per-process instruments plus values read from the database at scrape time.

Two sources, both real:

* Instruments updated where events happen — HTTP request latency (API process) and dependency
  call latency/errors/retries (worker processes). With ``PROMETHEUS_MULTIPROC_DIR`` set (``serve``
  points it at ``<data-dir>/metrics`` and wipes it at start) each process writes its own shard and
  the API sums all shards, including those of processes that were killed.
* Task counters, the task latency histogram, queue depth, worker restarts, live workers and the
  circuit state are read from SQLite at scrape time. They are updated in the same transaction as
  the state change they count, so they equal what happened exactly, across crashes and restarts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from guardian.circuit import CircuitBreaker
from guardian.healing import canary
from guardian.leases import live_workers
from guardian.store import TASK_LATENCY_BUCKETS_S, TASK_STATUSES, Store

KINDS = ("orchestrate", "compute", "dependency")
LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
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
)

HTTP_REQUEST_DURATION = Histogram(
    "guardian_http_request_duration_seconds",
    "HTTP request latency by route template, method and status code.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS_S,
)
DEPENDENCY_CALL_DURATION = Histogram(
    "guardian_dependency_call_duration_seconds",
    "Latency of each HTTP call to a dependency, by outcome (ok, http_5xx, timeout, ...).",
    ["dependency", "outcome"],
    buckets=LATENCY_BUCKETS_S,
)
DEPENDENCY_ERRORS = Counter(
    "guardian_dependency_errors",
    "Failed dependency calls by reason (each attempt, including ones later retried).",
    ["dependency", "reason"],
)
DEPENDENCY_RETRIES = Counter(
    "guardian_dependency_retries",
    "Dependency call attempts that were retries of a failed attempt.",
    ["dependency"],
)


DEPENDENCY_ERROR_REASONS = (
    "timeout",
    "pool_timeout",
    "connect_error",
    "transport_error",
    "http_429",
    "http_5xx",
    "http_4xx",
    "bad_body",
)


def init_dependency_series(dependency: str = "upstream") -> None:
    """Create the dependency error/retry series at zero so they are exported before any error."""
    for reason in DEPENDENCY_ERROR_REASONS:
        DEPENDENCY_ERRORS.labels(dependency, reason)
    DEPENDENCY_RETRIES.labels(dependency)


class StoreCollector(Collector):
    """Collect task, queue, worker and circuit metrics from the database at scrape time."""

    def __init__(
        self, store_factory: Callable[[], Store], heartbeat_max_age_s: float = 10.0
    ) -> None:
        """Use ``store_factory`` to get a (thread-local) store on each scrape."""
        self.store_factory = store_factory
        self.heartbeat_max_age_s = heartbeat_max_age_s

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        """Yield every database-backed metric family."""
        store = self.store_factory()
        events = store.event_counts()
        kinds = sorted(set(KINDS) | {kind for kind, _ in events})
        for event, help_text in (
            ("submitted", "Tasks durably accepted (committed before the 201 response)."),
            ("completed", "Tasks completed; recorded exactly once per task."),
            ("failed", "Tasks that failed permanently."),
            ("cancelled", "Tasks cancelled through the API or UI."),
            ("retried", "Task attempts re-queued after a retryable failure."),
            ("lease_lost", "Tasks re-queued because their worker died or its lease expired."),
        ):
            family = CounterMetricFamily(f"guardian_tasks_{event}", help_text, labels=["kind"])
            for kind in kinds:
                family.add_metric([kind], events.get((kind, event), 0))
            yield family
        yield from self._latency(store)
        yield from self._queue(store)
        yield from self._supervision(store)
        circuit = CircuitBreaker(store).snapshot()
        gauge = GaugeMetricFamily(
            "guardian_dependency_circuit_state",
            "Circuit breaker state of a dependency: 0 closed, 1 half-open, 2 open.",
            labels=["dependency"],
        )
        gauge.add_metric([circuit.name], circuit.value)
        yield gauge
        yield from canary.metric_families(store)

    def _latency(self, store: Store) -> Iterator[HistogramMetricFamily]:
        """Yield the end-to-end task latency histogram (submission to completion)."""
        family = HistogramMetricFamily(
            "guardian_task_latency_seconds",
            "End-to-end task latency from durable submission to recorded completion.",
            labels=["kind"],
        )
        histograms = store.latency_histograms()
        for kind in sorted(set(KINDS) | set(histograms)):
            counts, total_s = histograms.get(kind, ([0] * (len(TASK_LATENCY_BUCKETS_S) + 1), 0.0))
            cumulative, buckets = 0, []
            for bound, count in zip((*TASK_LATENCY_BUCKETS_S, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric([kind], buckets, total_s)
        yield family

    def _queue(self, store: Store) -> Iterator[GaugeMetricFamily]:
        """Yield queue depth and tasks per status."""
        counts = store.status_counts()
        depth = GaugeMetricFamily(
            "guardian_queue_depth", "Tasks queued and not yet claimed by a worker."
        )
        depth.add_metric([], counts["queued"])
        yield depth
        by_status = GaugeMetricFamily(
            "guardian_tasks", "Tasks currently in each status.", labels=["status"]
        )
        for status in TASK_STATUSES:
            by_status.add_metric([status], counts[status])
        yield by_status

    def _supervision(self, store: Store) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Yield worker restarts, crash-looping slots and live workers."""
        restarts = CounterMetricFamily(
            "guardian_worker_restarts",
            "Child processes restarted by the supervisor, by role (worker, api) and reason.",
            labels=["role", "reason"],
        )
        counted = {
            (role, reason): 0
            for role in ("worker", "api", "supervisor")
            for reason in ("crash", "hang")
        }
        for role, event, count in store.read(
            "SELECT role, event, COUNT(*) FROM supervisor_events "
            "WHERE event IN ('restart_crash', 'restart_hang') GROUP BY role, event"
        ):
            counted[(role, event.removeprefix("restart_"))] = count
        for (role, reason), count in sorted(counted.items()):
            restarts.add_metric([role, reason], count)
        yield restarts
        crash_loop = GaugeMetricFamily(
            "guardian_worker_crash_loop",
            "Supervised slots currently held back because they crash-looped.",
            labels=["role"],
        )
        loops = dict(
            store.read("SELECT role, COUNT(*) FROM slots WHERE state = 'crash_loop' GROUP BY role")
        )
        for role in sorted({"worker", "api"} | set(loops)):
            crash_loop.add_metric([role], loops.get(role, 0))
        yield crash_loop
        alive = GaugeMetricFamily(
            "guardian_workers_alive", "Workers with a heartbeat younger than the hang timeout."
        )
        alive.add_metric([], len(live_workers(store, self.heartbeat_max_age_s)))
        yield alive
        scrape = GaugeMetricFamily(
            "guardian_metrics_scrape_timestamp_seconds", "Unix time this scrape was computed."
        )
        scrape.add_metric([], time.time())
        yield scrape


def build_registry(
    store_factory: Callable[[], Store], heartbeat_max_age_s: float
) -> CollectorRegistry:
    """Create the registry /metrics serves: process shards (or this process) + the store."""
    registry = CollectorRegistry()
    init_dependency_series()
    shard_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shard_dir:
        multiprocess.MultiProcessCollector(registry, path=shard_dir)  # type: ignore[no-untyped-call]
    else:
        for instrument in (
            HTTP_REQUEST_DURATION,
            DEPENDENCY_CALL_DURATION,
            DEPENDENCY_ERRORS,
            DEPENDENCY_RETRIES,
        ):
            registry.register(instrument)
    registry.register(StoreCollector(store_factory, heartbeat_max_age_s))
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """Return the exposition body and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Tell the multiprocess collector a child died (drops its live-gauge shards only)."""
    shard_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shard_dir:
        multiprocess.mark_process_dead(pid, shard_dir)  # type: ignore[no-untyped-call]
