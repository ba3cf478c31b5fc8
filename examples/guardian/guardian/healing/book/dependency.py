"""Playbooks for the upstream dependency: slow calls, dead endpoint, 429 storm, leaked pool."""

from __future__ import annotations

import math
import signal
import socket
import time
from typing import Any

import psutil

from guardian import procutil
from guardian import settings as settings_mod
from guardian.circuit import CircuitBreaker
from guardian.dependency import POOL_MAX_CONNECTIONS
from guardian.healing.book.processes import instance_processes
from guardian.healing.book.upstream import (
    OUTCOME_WINDOW_S,
    SETTINGS_APPLY_S,
    active_upstream,
    address_of,
    calls_flow,
    outcome_counts,
    pending_dependency_tasks,
    refuses_connections,
    restore_settings,
    save_settings,
    schedule_tasks,
    set_upstream_mode,
    upstream_healthy,
    workers_alive,
)
from guardian.healing.env import HealEnv
from guardian.healing.playbooks import (
    BasePlaybook,
    Detection,
    ParamSpec,
    PlaybookOutcome,
    PlaybookSpec,
    RiskTier,
    RunContext,
)


class DependencySlow(BasePlaybook):
    """Slow upstream calls hold every worker while other work waits: cap dependency tasks."""

    spec = PlaybookSpec(
        id="dependency-slow",
        actions=("config-write",),
        title="Bulkhead dependency tasks that starve other work",
        failure_mode="slow upstream calls tie up every worker while tasks of other kinds wait",
        tier=RiskTier.TIER_1,
        params=(
            ParamSpec("min_wait_s", int, 3, 1, 600, "wait of the oldest due task of other kinds"),
            ParamSpec("reserve_workers", int, 1, 1, 8, "workers kept free of dependency tasks"),
        ),
        verify_timeout_s=20.0,
        fault="upstream answers after 1.5 s; 40 dependency and 10 orchestrate tasks over 20 s",
    )

    def _state(self, env: HealEnv, params: dict[str, Any]) -> dict[str, Any]:
        """Workers, running dependency tasks, the bulkhead and the oldest starved wait."""
        store, now = env.store(), time.time()
        running = store.read(
            "SELECT COUNT(*), MIN(started_at) FROM tasks WHERE status = 'running' "
            "AND kind = 'dependency'"
        )[0]
        oldest = store.read(
            "SELECT MIN(not_before) FROM tasks WHERE status = 'queued' AND kind != 'dependency' "
            "AND not_before <= ?",
            (now,),
        )[0][0]
        workers = workers_alive(env)
        recent = outcome_counts(env, now - OUTCOME_WINDOW_S)
        return {
            "workers": workers,
            "calls_ok": recent.get("ok", 0),
            "calls_failed": sum(n for outcome, n in recent.items() if outcome != "ok"),
            "running_dependency": int(running[0]),
            "oldest_running_s": round(now - running[1], 1) if running[1] else None,
            "starved_wait_s": round(now - oldest, 1) if oldest else 0.0,
            "max_in_flight": settings_mod.load(store).dependency_max_in_flight,
            "target": workers - params["reserve_workers"],
        }

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Every worker is in a (succeeding) dependency call, other work waits, no bulkhead."""
        state = self._state(env, params)
        if state["target"] < 1 or 0 < state["max_in_flight"] <= state["target"]:
            return None
        # Slow, not failing: failing calls are the breaker's, the pacing's or the fail-over's.
        if not state["calls_ok"] or state["calls_failed"] * 10 > state["calls_ok"]:
            return None
        if state["running_dependency"] < state["workers"]:
            return None
        if state["starved_wait_s"] < params["min_wait_s"]:
            return None
        return Detection("dependency tasks starve other work", "dependency", state)

    def plan(self, ctx: RunContext) -> list[str]:
        """Set the bulkhead."""
        state = self._state(ctx.env, ctx.params)
        return [
            f"set dependency_max_in_flight {state['max_in_flight']} -> {state['target']} "
            f"(keeps {ctx.params['reserve_workers']} worker(s) for other kinds; dependency "
            "tasks wait in the queue)"
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Persist the bulkhead; workers apply it to their next claim."""
        state = self._state(ctx.env, ctx.params)
        save_settings(ctx, {"dependency_max_in_flight": state["target"]})
        ctx.undo["target"] = state["target"]
        return PlaybookOutcome(True, f"dependency_max_in_flight -> {state['target']}", state)

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Other kinds flow again and no more dependency tasks run than the bulkhead allows."""
        state = self._state(context.env, context.params)
        target = context.undo.get("target", 0)
        ok = (
            state["max_in_flight"] == target
            and state["running_dependency"] <= target
            and state["starved_wait_s"] < context.params["min_wait_s"]
        )
        return PlaybookOutcome(ok, f"bulkhead {state['max_in_flight']}, {state}", state)

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Restore the settings rows (the bulkhead goes)."""
        return PlaybookOutcome(True, f"restored {restore_settings(context)} settings row(s)")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Slow the upstream (below the call timeout: calls succeed) and send a stream of work."""
        timeout_ms = settings_mod.load(env.store()).dependency_timeout_ms
        delay_ms = min(int(options.get("delay_ms", 1500)), timeout_ms * 3 // 4)
        mode = set_upstream_mode(env, {"mode": "slow", "delay_ms": delay_ms})
        count, others = int(options.get("count", 40)), int(options.get("others", 10))
        spread_s, now = float(options.get("spread_s", 20.0)), time.time()
        ids = schedule_tasks(env, "dependency", {"echo": "slow"}, count, now, spread_s)
        other_ids = schedule_tasks(env, "orchestrate", {"steps": 1}, others, now + 1, spread_s)
        return {"upstream": mode, "dependency_tasks": ids, "other_tasks": other_ids}


# -- dependency-down -----------------------------------------------------------------------------


class DependencyDown(BasePlaybook):
    """The endpoint in use refuses connections: fail over to the configured, healthy one."""

    spec = PlaybookSpec(
        id="dependency-down",
        actions=("config-write",),
        title="Fail over from an upstream endpoint that refuses connections",
        failure_mode="the upstream endpoint in use refuses connections; dependency work stalls",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("min_errors", int, 3, 1, 100_000, "connect errors in the last 30 s"),),
        timeout_s=45.0,
        verify_timeout_s=25.0,
        fault="points the upstream_url override at a closed port; 6 dependency tasks follow",
    )

    def _dead_override(self, env: HealEnv) -> str | None:
        """Return the override endpoint if it is set, not --upstream-url, and refuses."""
        if env.upstream_url is None:
            return None
        override = settings_mod.load(env.store()).upstream_url
        if not override or override == env.upstream_url.rstrip("/"):
            return None
        return override if refuses_connections(override) else None

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Detect failing connects to an endpoint that refuses us too, the configured one fine."""
        errors = outcome_counts(env, time.time() - 30).get("connect_error", 0)
        if errors < params["min_errors"]:
            return None
        dead = self._dead_override(env)
        if dead is None or not upstream_healthy(str(env.upstream_url)):
            return None
        return Detection(
            "upstream endpoint refuses connections",
            dead,
            {
                "endpoint": dead,
                "fallback": env.upstream_url,
                "connect_errors_30s": errors,
                "circuit": CircuitBreaker(env.store()).snapshot().state,
                "pending_tasks": pending_dependency_tasks(env),
            },
        )

    def plan(self, ctx: RunContext) -> list[str]:
        """Clear the override."""
        return [
            f"fail over from {self._dead_override(ctx.env)} to {ctx.env.upstream_url} "
            "(clear the upstream_url override; workers switch within 2 s)"
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Clear the override, remembering it; deferred tasks retry on the next probe call."""
        dead = self._dead_override(ctx.env)
        save_settings(ctx, {"upstream_url": ""})
        ctx.undo["failed_over_at"] = time.time()
        return PlaybookOutcome(True, f"failed over from {dead} to {ctx.env.upstream_url}")

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Pass when the override is gone and calls to the configured endpoint are accepted."""
        if settings_mod.load(context.env.store()).upstream_url:
            return PlaybookOutcome(False, "the override is still set")
        ok, summary = calls_flow(context.env, context.undo.get("failed_over_at", time.time()))
        return PlaybookOutcome(ok, summary)

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Restore the settings rows (the override comes back)."""
        return PlaybookOutcome(True, f"restored {restore_settings(context)} settings row(s)")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Point workers at an endpoint nobody listens on, then give them dependency work."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        dead = f"http://127.0.0.1:{port}"
        settings_mod.save(env.store(), {"upstream_url": dead})
        count = int(options.get("count", 6))
        start = time.time() + SETTINGS_APPLY_S
        ids = schedule_tasks(env, "dependency", {"echo": "down"}, count, start, 2.0)
        return {"upstream_url": dead, "refused": refuses_connections(dead), "task_ids": ids}


# -- dependency-rate-limited ---------------------------------------------------------------------


class DependencyRateLimited(BasePlaybook):
    """A 429 storm: pace calls below the rate the upstream accepts."""

    spec = PlaybookSpec(
        id="dependency-rate-limited",
        actions=("config-write",),
        title="Pace upstream calls during a 429 storm",
        failure_mode="guardian calls the upstream faster than its quota and gets 429s back",
        tier=RiskTier.TIER_1,
        params=(
            ParamSpec("max_429_per_min", int, 30, 1, 1_000_000, "429 answers tolerated per minute"),
            ParamSpec("window_s", int, 10, 5, 300, "measurement window"),
            ParamSpec("headroom_pct", int, 80, 10, 100, "share of the accepted rate to call at"),
        ),
        timeout_s=45.0,
        verify_timeout_s=30.0,
        fault="upstream accepts 2 calls/s (quota mode); 60 dependency tasks over 25 s",
    )
    max_interval_ms = settings_mod.POLICY_BOUNDS["dependency_min_interval_ms"][1]

    def _storm(self, env: HealEnv, params: dict[str, Any]) -> dict[str, Any]:
        """429s per minute and accepted calls per second over the window; current pacing."""
        counts = outcome_counts(env, time.time() - params["window_s"])
        return {
            "http_429_per_min": round(counts.get("http_429", 0) * 60 / params["window_s"], 1),
            "ok_per_s": round(counts.get("ok", 0) / params["window_s"], 2),
            "pacing_ms": settings_mod.load(env.store()).dependency_min_interval_ms,
            "workers": workers_alive(env),
        }

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Too many 429s, and the pacing can still be slowed."""
        storm = self._storm(env, params)
        if storm["http_429_per_min"] < params["max_429_per_min"]:
            return None
        if storm["pacing_ms"] >= self.max_interval_ms:
            return None
        return Detection("upstream 429 storm", "upstream", storm)

    def _interval_ms(self, storm: dict[str, Any], headroom_pct: int) -> int:
        """Per-worker pacing so that all workers together call below the accepted rate."""
        workers, ok_per_s, current = max(1, storm["workers"]), storm["ok_per_s"], storm["pacing_ms"]
        wanted = math.ceil(1000 * workers / (ok_per_s * headroom_pct / 100)) if ok_per_s else 1000
        return int(min(self.max_interval_ms, max(wanted, 2 * current, 100)))

    def plan(self, ctx: RunContext) -> list[str]:
        """Set the pacing."""
        storm = self._storm(ctx.env, ctx.params)
        interval = self._interval_ms(storm, ctx.params["headroom_pct"])
        return [
            f"set dependency_min_interval_ms {storm['pacing_ms']} -> {interval} per worker "
            f"({storm['workers']} worker(s); the upstream accepted {storm['ok_per_s']}/s)"
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Persist the pacing; it is in force everywhere after SETTINGS_APPLY_S."""
        storm = self._storm(ctx.env, ctx.params)
        interval = self._interval_ms(storm, ctx.params["headroom_pct"])
        save_settings(ctx, {"dependency_min_interval_ms": interval})
        ctx.undo["interval_ms"] = interval
        ctx.undo["applied_at"] = time.time() + SETTINGS_APPLY_S
        return PlaybookOutcome(True, f"dependency_min_interval_ms -> {interval}", storm)

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """429s per minute below the limit over a whole window that began after the pacing."""
        window_s = context.params["window_s"]
        elapsed = time.time() - float(context.undo.get("applied_at", time.time()))
        if elapsed < window_s:
            return PlaybookOutcome(False, f"measuring since the pacing applied ({elapsed:.1f} s)")
        counts = outcome_counts(context.env, time.time() - window_s)
        per_min = counts.get("http_429", 0) * 60 / window_s
        return PlaybookOutcome(
            per_min < context.params["max_429_per_min"],
            f"{per_min:.1f} 429/min over the last {window_s} s, {counts.get('ok', 0)} accepted",
            {"counts": counts},
        )

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Restore the settings rows (the pacing goes)."""
        return PlaybookOutcome(True, f"restored {restore_settings(context)} settings row(s)")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Rate-limit the upstream and send more dependency work than it accepts."""
        quota = int(options.get("quota_per_s", 2))
        mode = set_upstream_mode(env, {"mode": "quota", "quota_per_s": quota})
        count, spread_s = int(options.get("count", 60)), float(options.get("spread_s", 25.0))
        ids = schedule_tasks(env, "dependency", {"echo": "quota"}, count, time.time(), spread_s)
        return {"upstream": mode, "task_ids": ids}


# -- connection-pool-exhaustion ------------------------------------------------------------------


class ConnectionPoolExhaustion(BasePlaybook):
    """Workers hold leaked upstream connections: recycle their pools in place (SIGUSR1)."""

    spec = PlaybookSpec(
        id="connection-pool-exhaustion",
        actions=("signal",),
        title="Recycle worker connection pools exhausted by leaked connections",
        failure_mode="calls wait for a pooled connection and time out while the upstream is fine",
        tier=RiskTier.TIER_1,
        params=(
            ParamSpec("max_connections", int, 8, 2, 1000, "upstream connections one worker holds"),
        ),
        timeout_s=45.0,
        verify_timeout_s=25.0,
        fault=f"every worker (fault hook) leaks its {POOL_MAX_CONNECTIONS} pooled connections",
    )

    def _held(self, env: HealEnv, max_connections: int) -> dict[str, dict[str, int]]:
        """Worker → {pid, connections} for workers holding too many upstream connections."""
        url = active_upstream(env)
        if url is None:
            return {}
        host, port = address_of(url)
        ips = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
        found = {}
        for name, pid in instance_processes(env).items():
            if not name.startswith("worker-"):
                continue
            try:
                conns = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.Error:
                continue
            held = sum(
                1
                for c in conns
                if c.status == psutil.CONN_ESTABLISHED
                and c.raddr
                and c.raddr.port == port
                and c.raddr.ip in ips
            )
            if held > max_connections:
                found[name] = {"pid": pid, "connections": held}
        return found

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Workers over the limit while the upstream itself answers."""
        held = self._held(env, params["max_connections"])
        url = active_upstream(env)
        if not held or url is None or not upstream_healthy(url):
            return None
        timeouts = outcome_counts(env, time.time() - 60).get("pool_timeout", 0)
        return Detection(
            "connection pool exhausted",
            ",".join(sorted(held)),
            {"workers": held, "pool_timeouts_60s": timeouts, "pool_size": POOL_MAX_CONNECTIONS},
        )

    def plan(self, ctx: RunContext) -> list[str]:
        """SIGUSR1 each: the worker closes its pool (leaked connections too) and opens a new one."""
        return [
            f"SIGUSR1 {name} (pid {info['pid']}): recycle its upstream pool between tasks"
            for name, info in self._held(ctx.env, ctx.params["max_connections"]).items()
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Ask each worker to recycle its pool; no process is restarted."""
        held = self._held(ctx.env, ctx.params["max_connections"])
        for info in held.values():
            procutil.kill_quietly(info["pid"], signal.SIGUSR1)
        ctx.undo["recycled"] = held
        ctx.undo["recycled_at"] = time.time()
        return PlaybookOutcome(True, f"asked {sorted(held)} to recycle", {"workers": held})

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Pass for the same processes, connections released and dependency calls accepted."""
        recycled = context.undo.get("recycled", {})
        pids = instance_processes(context.env)
        restarted = [n for n, info in recycled.items() if pids.get(n) != info["pid"]]
        if restarted:
            return PlaybookOutcome(False, f"restarted instead of recycled: {restarted}")
        still = self._held(context.env, context.params["max_connections"])
        if still:
            return PlaybookOutcome(False, f"still holding connections: {still}")
        stalled = context.env.store().read(
            "SELECT COUNT(*) FROM tasks WHERE kind = 'dependency' AND status IN "
            "('queued', 'running') AND error LIKE '%pool_timeout%'"
        )[0][0]
        ok, summary = calls_flow(context.env, context.undo.get("recycled_at", time.time()))
        return PlaybookOutcome(
            ok and not stalled,
            f"pools recycled in place; {stalled} task(s) still to retry; {summary}",
        )

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Do nothing: leaked connections cannot (and must not) be leaked again."""
        return PlaybookOutcome(True, "nothing to undo: a recycled pool only lost leaked sockets")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Ask every worker's fault hook to leak its whole pool, then send dependency work."""
        amount = int(options.get("connections", POOL_MAX_CONNECTIONS))
        slots = [int(name.split("-")[1]) for name in instance_processes(env) if "worker-" in name]
        with env.store().write() as conn:
            for slot in slots:
                conn.execute(
                    "INSERT INTO fault_requests(target, action, amount, created_at) "
                    "VALUES (?, 'leak_connections', ?, ?)",
                    (f"worker-{slot}", amount, time.time()),
                )
        count, start = int(options.get("count", 6)), time.time() + SETTINGS_APPLY_S
        ids = schedule_tasks(env, "dependency", {"echo": "pool"}, count, start, 6.0)
        return {"workers": [f"worker-{s}" for s in slots], "leak": amount, "task_ids": ids}


PLAYBOOKS: tuple[type[BasePlaybook], ...] = (
    DependencySlow,
    DependencyDown,
    DependencyRateLimited,
    ConnectionPoolExhaustion,
)
