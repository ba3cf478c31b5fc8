"""Shared state of the API process: configuration, per-thread stores, the submit batcher."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from guardian.api.batcher import SubmitBatcher
from guardian.circuit import CircuitBreaker
from guardian.errors import StoreError
from guardian.leases import live_workers
from guardian.paths import DataDir
from guardian.store import Store


@dataclass(frozen=True)
class ApiConfig:
    """What the API process needs to know about its instance."""

    data_dir: DataDir
    upstream_url: str | None = None
    heartbeat_max_age_s: float = 10.0


class StoreProvider:
    """Hands each thread its own Store connection (sqlite3 connections are per-thread)."""

    def __init__(self, data_dir: DataDir) -> None:
        """Remember where the database lives."""
        self.data_dir = data_dir
        self._local = threading.local()
        self._all: list[Store] = []
        self._owners: dict[int, threading.Thread] = {}  # id(store) -> the thread it was opened for
        self._lock = threading.Lock()

    def get(self) -> Store:
        """Return this thread's store, opened on first use; close those of ended threads.

        The server's worker threads come and go: without the pruning every ended thread's connection
        stayed open, and a 1-hour soak saw the API's open SQLite files grow by a few an hour.
        """
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = Store(self.data_dir.db_path)
            self._local.store = store
            with self._lock:
                self._close_orphans()
                self._all.append(store)
                self._owners[id(store)] = threading.current_thread()
        return store

    def open_count(self) -> int:
        """How many connections this provider holds open."""
        with self._lock:
            return len(self._all)

    def _close_orphans(self) -> None:
        """Close the stores whose thread has ended (called with the lock held)."""
        for store in [s for s in self._all if not self._owners[id(s)].is_alive()]:
            self._all.remove(store)
            del self._owners[id(store)]
            store.close()

    def reopen(self) -> None:
        """Drop this thread's connection so the next `get` opens a fresh one.

        SQLite keeps a connection read-only once it opened the file while it was not writable
        (permission drift, an immutable file); after the cause is fixed only a new connection
        can write again.
        """
        store: Store | None = getattr(self._local, "store", None)
        if store is not None:
            self._local.store = None
            with self._lock:
                if store in self._all:
                    self._all.remove(store)
                    del self._owners[id(store)]
            store.close()

    def close_all(self) -> None:
        """Close every connection opened through this provider."""
        with self._lock:
            for store in self._all:
                store.close()
            self._all.clear()
            self._owners.clear()


class AppState:
    """Everything route handlers share."""

    def __init__(self, config: ApiConfig) -> None:
        """Create the store provider and the batcher (started by the app lifespan)."""
        self.config = config
        self.stores = StoreProvider(config.data_dir)
        self.batcher = SubmitBatcher(self.stores.get)


def readiness(state: AppState) -> tuple[int, dict[str, Any]]:
    """Evaluate readiness from real state; return (HTTP status, JSON body).

    Ready needs a writable store and at least one worker with a fresh heartbeat. An open or
    half-open dependency circuit keeps the service ready but reports ``degraded``.
    """
    checks: dict[str, Any] = {}
    store = state.stores.get()
    try:
        store.probe_write()
        checks["store"] = {"ok": True}
    except StoreError as exc:
        checks["store"] = {"ok": False, "error": str(exc)}
        if "readonly" in str(exc):
            state.stores.reopen()
            store = state.stores.get()
    try:
        alive = live_workers(store, state.config.heartbeat_max_age_s)
        checks["workers"] = {
            "ok": bool(alive),
            "alive": len(alive),
            "max_heartbeat_age_s": state.config.heartbeat_max_age_s,
        }
    except StoreError as exc:
        checks["workers"] = {"ok": False, "error": str(exc)}
    if state.config.upstream_url is None:
        checks["dependency"] = {"ok": True, "circuit": "not_configured"}
    else:
        try:
            circuit = CircuitBreaker(store).snapshot()
            checks["dependency"] = {
                "ok": circuit.state == "closed",
                "circuit": circuit.state,
                "consecutive_failures": circuit.consecutive_failures,
            }
        except StoreError as exc:
            checks["dependency"] = {"ok": False, "circuit": "unknown", "error": str(exc)}
    if not (checks["store"]["ok"] and checks["workers"]["ok"]):
        return 503, {"status": "not_ready", "checks": checks}
    if not checks["dependency"]["ok"]:
        return 200, {"status": "degraded", "checks": checks}
    return 200, {"status": "ready", "checks": checks}
