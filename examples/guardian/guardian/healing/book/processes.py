"""Playbooks for the instance's processes: stopped (SIGSTOP) processes and memory growth."""

from __future__ import annotations

import signal
import time
from typing import Any

import psutil

from guardian import procutil
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
from guardian.leases import live_workers

MIB = 1024 * 1024


def instance_processes(env: HealEnv) -> dict[str, int]:
    """Role name → pid of this instance's live processes (from pid files, pid-reuse safe)."""
    root = str(env.data_dir.root)
    return {
        name: pid
        for name, pid in env.data_dir.read_pids().items()
        if procutil.is_guardian_process(pid, root)
    }


class ProcessStopped(BasePlaybook):
    """A guardian process was stopped (SIGSTOP, job control): continue it before it is killed.

    Storeless: a process stopped inside a write transaction keeps the database write lock, so
    every healer write (heartbeat, incident) would fail until it runs again. Detection (psutil)
    and SIGCONT write nothing; the incident is recorded once the continued process commits.
    """

    spec = PlaybookSpec(
        id="process-stopped",
        actions=("signal",),
        title="Continue a stopped guardian process",
        failure_mode="a worker, the API or the supervisor is stopped (state T) and does no work",
        tier=RiskTier.TIER_1,
        fault="SIGSTOP to one process (default worker-0)",
        needs_store=False,
    )

    def _stopped(self, env: HealEnv) -> dict[str, int]:
        """Role → pid of stopped processes."""
        found = {}
        for name, pid in instance_processes(env).items():
            try:
                if psutil.Process(pid).status() == psutil.STATUS_STOPPED:
                    found[name] = pid
            except psutil.Error:
                continue
        return found

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Any stopped process."""
        stopped = self._stopped(env)
        return (
            Detection("process stopped", ",".join(sorted(stopped)), {"stopped": stopped})
            if stopped
            else None
        )

    def plan(self, ctx: RunContext) -> list[str]:
        """SIGCONT each."""
        return [f"SIGCONT {name} (pid {pid})" for name, pid in self._stopped(ctx.env).items()]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Send SIGCONT; the process resumes with its leases and in-flight work intact."""
        stopped = self._stopped(ctx.env)
        for pid in stopped.values():
            procutil.kill_quietly(pid, signal.SIGCONT)
        ctx.undo["continued"] = stopped
        return PlaybookOutcome(True, f"continued {sorted(stopped)}", {"continued": stopped})

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Do nothing: stopping the process again would only re-create the fault."""
        return PlaybookOutcome(True, "nothing to undo: SIGCONT has no harmful side effect")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """SIGSTOP the named process."""
        role = str(options.get("role", "worker-0"))
        pid = instance_processes(env).get(role)
        if pid is None:
            return {"error": f"no live process {role}"}
        procutil.kill_quietly(pid, signal.SIGSTOP)
        return {"stopped": role, "pid": pid}


class WorkerMemoryGrowth(BasePlaybook):
    """A worker whose memory grew past the limit is recycled gracefully (SIGTERM, respawn)."""

    spec = PlaybookSpec(
        id="worker-memory-growth",
        actions=("signal", "restart"),
        title="Recycle a worker whose memory grew past its limit",
        failure_mode="a worker process's resident memory keeps growing",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("max_rss_mb", int, 200, 32, 65_536, "resident memory limit per worker"),),
        verify_timeout_s=20.0,
        fault="asks worker-0 (fault hook) to allocate and hold 300 MiB",
    )

    def _bloated(self, env: HealEnv, max_rss_mb: int) -> dict[str, int]:
        """Worker role → pid over the limit."""
        found = {}
        for name, pid in instance_processes(env).items():
            if not name.startswith("worker-"):
                continue
            try:
                if psutil.Process(pid).memory_info().rss > max_rss_mb * MIB:
                    found[name] = pid
            except psutil.Error:
                continue
        return found

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Any worker over the limit."""
        bloated = self._bloated(env, params["max_rss_mb"])
        return (
            Detection("worker memory growth", ",".join(sorted(bloated)), {"workers": bloated})
            if bloated
            else None
        )

    def plan(self, ctx: RunContext) -> list[str]:
        """SIGTERM each; the supervisor respawns them."""
        return [
            f"SIGTERM {n} (pid {p}); supervisor respawns it"
            for n, p in self._bloated(ctx.env, ctx.params["max_rss_mb"]).items()
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Ask the bloated workers to finish their task and exit."""
        bloated = self._bloated(ctx.env, ctx.params["max_rss_mb"])
        for pid in bloated.values():
            procutil.kill_quietly(pid, signal.SIGTERM)
        ctx.undo["recycled"] = bloated
        return PlaybookOutcome(True, f"recycled {sorted(bloated)}", {"recycled": bloated})

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Old pids gone, their slots back with fresh heart-beating workers under the limit."""
        recycled = context.undo.get("recycled", {})
        now_pids = instance_processes(context.env)
        live = {row[1]: row[2] for row in live_workers(context.env.store(), 5.0)}
        for name, pid in recycled.items():
            slot = int(name.split("-")[1])
            if (
                procutil.pid_alive(pid)
                or now_pids.get(name) in (None, pid)
                or live.get(slot) in (None, pid)
            ):
                return PlaybookOutcome(False, f"{name} not yet replaced")
        still = self._bloated(context.env, context.params["max_rss_mb"])
        return PlaybookOutcome(
            not still, f"replaced {sorted(recycled)}; over limit: {sorted(still)}"
        )

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Do nothing: a recycled process cannot be un-recycled."""
        return PlaybookOutcome(True, "nothing to undo: the worker was restarted cleanly")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Queue a leak request the worker's fault hook serves (fault-injection instances only)."""
        slot = int(options.get("slot", 0))
        mib = int(options.get("mib", 300))
        with env.store().write() as conn:
            conn.execute(
                "INSERT INTO fault_requests(target, action, amount, created_at) "
                "VALUES (?, 'leak_mb', ?, ?)",
                (f"worker-{slot}", mib, time.time()),
            )
        return {"worker": f"worker-{slot}", "leak_mib": mib}


PLAYBOOKS: tuple[type[BasePlaybook], ...] = (ProcessStopped, WorkerMemoryGrowth)
