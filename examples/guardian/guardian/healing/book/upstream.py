"""Helpers of the dependency playbooks: settings save/restore, upstream probes, task outcomes."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from guardian import settings as settings_mod
from guardian.circuit import CircuitBreaker
from guardian.healing.env import HealEnv
from guardian.healing.playbooks import (
    RunContext,
)
from guardian.kinds import MAX_ATTEMPTS
from guardian.leases import live_workers
from guardian.store import bump_count, new_task_id

HEARTBEAT_MAX_AGE_S = 10.0
OUTCOME_WINDOW_S = 10.0
# Workers re-read settings every 2 s: a changed setting is in force everywhere after this.
SETTINGS_APPLY_S = 2.5


def save_settings(ctx: RunContext, values: dict[str, Any]) -> settings_mod.Settings:
    """Persist ``values``, keeping the settings rows as they were so rollback restores them."""
    store = ctx.env.store()
    if "settings_rows" not in ctx.undo:
        ctx.undo["settings_rows"] = [list(r) for r in store.read("SELECT key, value FROM settings")]
    return settings_mod.save(store, values)


def restore_settings(ctx: RunContext) -> int:
    """Put back the settings rows saved by :func:`save_settings`; return how many."""
    rows = ctx.undo.get("settings_rows")
    if rows is None:
        return 0
    with ctx.env.store().write() as conn:
        conn.execute("DELETE FROM settings")
        conn.executemany("INSERT INTO settings(key, value) VALUES (?, ?)", rows)
    return len(rows)


def active_upstream(env: HealEnv) -> str | None:
    """Return the endpoint workers call: the ``upstream_url`` override, else ``--upstream-url``."""
    if env.upstream_url is None:
        return None
    return settings_mod.load(env.store()).upstream_url or env.upstream_url.rstrip("/")


def upstream_healthy(url: str, timeout_s: float = 2.0) -> bool:
    """``GET {url}/healthz`` answers 200."""
    try:
        return httpx.get(f"{url}/healthz", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def address_of(url: str) -> tuple[str, int]:
    """Host and port of an http(s) URL."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def refuses_connections(url: str, timeout_s: float = 1.0) -> bool:
    """Tell whether a TCP connection to the URL's host and port fails (refused or timed out)."""
    try:
        with socket.create_connection(address_of(url), timeout=timeout_s):
            return False
    except OSError:
        return True


def outcome_counts(env: HealEnv, since_ts: float) -> dict[str, int]:
    """Dependency call attempts by outcome since ``since_ts``, as the workers recorded them."""
    rows = env.store().read(
        "SELECT outcome, SUM(n) FROM dependency_outcomes WHERE ts >= ? GROUP BY outcome",
        (int(since_ts),),
    )
    return {outcome: int(n) for outcome, n in rows}


def pending_dependency_tasks(env: HealEnv) -> int:
    """Dependency tasks not finished yet (queued, deferred or running)."""
    return int(
        env.store().read(
            "SELECT COUNT(*) FROM tasks WHERE kind = 'dependency' AND status IN "
            "('queued', 'running')"
        )[0][0]
    )


def calls_flow(env: HealEnv, since_ts: float) -> tuple[bool, str]:
    """Dependency work gets through: an accepted call since ``since_ts``, or none pending."""
    pending = pending_dependency_tasks(env)
    ok = outcome_counts(env, since_ts).get("ok", 0)
    circuit = CircuitBreaker(env.store()).snapshot().state
    return (ok > 0 or pending == 0), f"{ok} call(s) accepted, {pending} pending, circuit {circuit}"


def schedule_tasks(
    env: HealEnv, kind: str, payload: dict[str, Any], count: int, start: float, spread_s: float
) -> list[str]:
    """Insert ``count`` queued tasks due evenly from ``start`` over ``spread_s`` seconds."""
    now, ids = time.time(), []
    with env.store().write() as conn:
        for i in range(count):
            task_id = new_task_id()
            conn.execute(
                "INSERT INTO tasks(id, kind, payload, status, attempts, max_attempts, not_before, "
                "created_at) VALUES (?, ?, ?, 'queued', 0, ?, ?, ?)",
                (
                    task_id,
                    kind,
                    json.dumps(payload),
                    MAX_ATTEMPTS[kind],
                    start + spread_s * i / max(1, count),
                    now,
                ),
            )
            bump_count(conn, kind, "submitted")
            ids.append(task_id)
    return ids


def set_upstream_mode(env: HealEnv, body: dict[str, Any]) -> dict[str, Any]:
    """Change the stand-in upstream's mode (``POST {upstream}/control``)."""
    if env.upstream_url is None:
        raise ValueError("this instance has no upstream configured")
    answer = httpx.post(f"{env.upstream_url}/control", json=body, timeout=5.0)
    answer.raise_for_status()
    return dict(answer.json())


def workers_alive(env: HealEnv) -> int:
    """Workers with a fresh heartbeat."""
    return len(live_workers(env.store(), HEARTBEAT_MAX_AGE_S))


# -- dependency-slow -----------------------------------------------------------------------------
