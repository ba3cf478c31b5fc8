"""Playbooks for the task queue: stale leases, poison tasks, stalled schedules, backlog."""

from __future__ import annotations

import json
import time
from typing import Any

from guardian import procutil
from guardian import settings as settings_mod
from guardian.healing.book.files import dead_pid
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
from guardian.leases import LeaseManager, live_workers
from guardian.store import NewTask, bump_count, new_task_id

HEARTBEAT_MAX_AGE_S = 10.0


def insert_task_rows(
    env: HealEnv, rows: list[tuple[str, str, str, int, float, str | None, float | None]]
) -> list[str]:
    """Insert raw task rows: (kind, payload json, status, attempts, not_before, owner, expires)."""
    now = time.time()
    ids = []
    with env.store().write() as conn:
        for kind, payload, status, attempts, not_before, owner, expires in rows:
            task_id = new_task_id()
            conn.execute(
                "INSERT INTO tasks(id, kind, payload, status, attempts, max_attempts, lease_owner, "
                "lease_token, lease_expires_at, not_before, created_at, started_at) "
                "VALUES (?, ?, ?, ?, ?, 5, ?, ?, ?, ?, ?, ?)",
                (
                    task_id,
                    kind,
                    payload,
                    status,
                    attempts,
                    owner,
                    "fault" if owner else None,
                    expires,
                    not_before,
                    now,
                    now if owner else None,
                ),
            )
            bump_count(conn, kind, "submitted")
            ids.append(task_id)
    return ids


class StaleLease(BasePlaybook):
    """Running tasks leased to a worker that no longer exists, with a lease far from expiry."""

    spec = PlaybookSpec(
        id="stale-lease",
        actions=("sqlite-write",),
        title="Release leases held by dead workers",
        failure_mode="tasks stay running under a lease owned by a worker that is gone",
        tier=RiskTier.TIER_1,
        fault="inserts 3 running tasks leased for an hour to worker-9 with an exited pid",
    )

    def _owners(self, env: HealEnv) -> list[str]:
        """Lease owners of running tasks that are neither live workers nor live processes."""
        store = env.store()
        live = {row[0] for row in live_workers(store, HEARTBEAT_MAX_AGE_S)}
        owners = []
        for (owner,) in store.read(
            "SELECT DISTINCT lease_owner FROM tasks WHERE status = 'running' "
            "AND lease_owner IS NOT NULL"
        ):
            if owner in live:
                continue
            pid = owner.rsplit("-", 1)[-1]
            if pid.isdigit() and procutil.pid_alive(int(pid)):
                continue
            owners.append(owner)
        return owners

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Dead owners holding running tasks."""
        owners = self._owners(env)
        return Detection("stale lease", ",".join(owners), {"owners": owners}) if owners else None

    def plan(self, ctx: RunContext) -> list[str]:
        """Re-queue each dead owner's tasks."""
        return [f"re-queue tasks leased to {o}" for o in self._owners(ctx.env)]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Release every dead owner's leases (re-queued, or failed when out of attempts)."""
        leases = LeaseManager(ctx.env.store(), "healer")
        released = {o: leases.release_owner(o) for o in self._owners(ctx.env)}
        return PlaybookOutcome(
            True, f"released {sum(released.values())} task(s)", {"released": released}
        )

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Do nothing: a lease cannot be handed back to a dead worker."""
        return PlaybookOutcome(True, "nothing to undo: re-queued tasks run exactly once")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Three running tasks leased for an hour to a worker whose process has exited."""
        owner = f"worker-9-{dead_pid()}"
        now = time.time()
        ids = insert_task_rows(
            env, [("orchestrate", '{"steps": 1}', "running", 1, now, owner, now + 3600)] * 3
        )
        return {"owner": owner, "task_ids": ids}


class PoisonTask(BasePlaybook):
    """A task that kills every worker that runs it is quarantined (failed with a reason)."""

    spec = PlaybookSpec(
        id="poison-task",
        actions=("sqlite-write",),
        title="Quarantine a task that crashes its workers",
        failure_mode="one task crashes each worker that claims it",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("min_crashes", int, 2, 1, 10, "worker deaths before quarantine"),),
        fault="inserts an orchestrate task whose steps value makes the worker raise",
    )

    def _poison(self, env: HealEnv, min_crashes: int) -> list[str]:
        """Unfinished tasks with ≥ min_crashes attempts that ended by worker death."""
        store = env.store()
        found = []
        for task_id, _attempts, started_at in store.read(
            "SELECT id, attempts, started_at FROM tasks WHERE status IN ('queued', 'running') "
            "AND attempts >= ? AND error IS NULL AND started_at IS NOT NULL",
            (min_crashes,),
        ):
            crashes = store.read(
                "SELECT COUNT(*) FROM supervisor_events WHERE role = 'worker' "
                "AND event = 'restart_crash' AND ts >= ?",
                (started_at,),
            )[0][0]
            if crashes >= min_crashes:
                found.append(task_id)
        return found

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Any poison task."""
        ids = self._poison(env, params["min_crashes"])
        return Detection("poison task", ",".join(ids), {"task_ids": ids}) if ids else None

    def plan(self, ctx: RunContext) -> list[str]:
        """Fail each with a quarantine reason."""
        return [f"quarantine task {t}" for t in self._poison(ctx.env, ctx.params["min_crashes"])]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Mark the tasks failed with a quarantine reason."""
        ids = self._poison(ctx.env, ctx.params["min_crashes"])
        now = time.time()
        with ctx.env.store().write() as conn:
            for task_id in ids:
                row = conn.execute(
                    "UPDATE tasks SET status = 'failed', finished_at = ?, lease_owner = NULL, "
                    "lease_token = NULL, lease_expires_at = NULL, error = ? WHERE id = ? "
                    "AND status IN ('queued', 'running') RETURNING kind",
                    (now, "quarantined by the healer: crashed its workers", task_id),
                ).fetchone()
                if row:
                    bump_count(conn, row[0], "failed")
        ctx.undo["task_ids"] = ids
        return PlaybookOutcome(True, f"quarantined {len(ids)} task(s)", {"task_ids": ids})

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Put quarantined tasks back in the queue."""
        ids = context.undo.get("task_ids", [])
        with context.env.store().write() as conn:
            for task_id in ids:
                conn.execute(
                    "UPDATE tasks SET status = 'queued', finished_at = NULL, error = NULL, "
                    "not_before = ? WHERE id = ? AND error LIKE 'quarantined by the healer%'",
                    (time.time(), task_id),
                )
        return PlaybookOutcome(True, f"re-queued {len(ids)} task(s)")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Insert a task whose payload passed an older schema but crashes today's worker."""
        ids = insert_task_rows(
            env, [("orchestrate", '{"steps": "poison"}', "queued", 0, time.time(), None, None)]
        )
        return {"task_ids": ids}


class ScheduleStall(BasePlaybook):
    """Queued tasks scheduled impossibly far ahead (clock skew) are made due again."""

    spec = PlaybookSpec(
        id="schedule-stall",
        actions=("sqlite-write",),
        title="Reschedule tasks stuck behind a skewed not_before",
        failure_mode="queued tasks are never claimed because their not_before is far in the future",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("max_delay_s", int, 120, 31, 86_400, "largest legitimate delay"),),
        fault="inserts 3 queued tasks with not_before one day ahead",
    )

    def _stalled(self, env: HealEnv, max_delay_s: int) -> dict[str, float]:
        """Task id → not_before of stalled tasks."""
        rows = env.store().read(
            "SELECT id, not_before FROM tasks WHERE status = 'queued' AND not_before > ?",
            (time.time() + max_delay_s,),
        )
        return dict(rows)

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Any task delayed beyond the longest back-off guardian ever schedules."""
        stalled = self._stalled(env, params["max_delay_s"])
        if not stalled:
            return None
        return Detection("schedule stall", f"{len(stalled)} task(s)", {"task_ids": sorted(stalled)})

    def plan(self, ctx: RunContext) -> list[str]:
        """Set not_before to now."""
        return [f"make {len(self._stalled(ctx.env, ctx.params['max_delay_s']))} task(s) due now"]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Reset not_before, remembering the old values."""
        stalled = self._stalled(ctx.env, ctx.params["max_delay_s"])
        now = time.time()
        with ctx.env.store().write() as conn:
            for task_id in stalled:
                conn.execute(
                    "UPDATE tasks SET not_before = ? WHERE id = ? AND status = 'queued'",
                    (now, task_id),
                )
        ctx.undo["not_before"] = stalled
        return PlaybookOutcome(True, f"rescheduled {len(stalled)} task(s)")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Restore the old not_before of tasks still queued."""
        saved = context.undo.get("not_before", {})
        with context.env.store().write() as conn:
            for task_id, value in saved.items():
                conn.execute(
                    "UPDATE tasks SET not_before = ? WHERE id = ? AND status = 'queued'",
                    (value, task_id),
                )
        return PlaybookOutcome(True, f"restored {len(saved)} schedule(s)")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Three tasks scheduled a day ahead."""
        ahead = time.time() + 86_400
        ids = insert_task_rows(
            env, [("orchestrate", '{"steps": 1}', "queued", 0, ahead, None, None)] * 3
        )
        return {"task_ids": ids}


class QueueBacklog(BasePlaybook):
    """A growing backlog is drained by adding workers, within bounds (needs approval)."""

    spec = PlaybookSpec(
        id="queue-backlog",
        actions=("config-write",),
        title="Scale workers up for a queue backlog",
        failure_mode="queued work piles up faster than the workers drain it",
        tier=RiskTier.TIER_2,
        params=(
            ParamSpec("max_queued", int, 40, 1, 1_000_000, "queued tasks that count as backlog"),
            ParamSpec("min_age_s", int, 5, 0, 3600, "age of the oldest queued task"),
            ParamSpec("scale_step", int, 2, 1, 3, "workers to add (bounded ±3)"),
            ParamSpec("max_workers", int, 8, 1, 16, "never scale above this"),
        ),
        verify_timeout_s=120.0,
        fault="submits 150 compute tasks of 250 ms each",
    )

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Deep and old queue while below the worker ceiling."""
        store = env.store()
        depth, oldest = store.read(
            "SELECT COUNT(*), MIN(not_before) FROM tasks "
            "WHERE status = 'queued' AND not_before <= ?",
            (time.time(),),
        )[0]
        workers = settings_mod.load(store).worker_count
        if depth < params["max_queued"] or oldest is None or workers >= params["max_workers"]:
            return None
        age_s = time.time() - oldest
        if age_s < params["min_age_s"]:
            return None
        return Detection(
            "queue backlog",
            "workers",
            {"queued": depth, "oldest_age_s": round(age_s, 1), "workers": workers},
        )

    def _target(self, ctx: RunContext) -> tuple[int, int]:
        """Return the (current, new) worker count."""
        current = settings_mod.load(ctx.env.store()).worker_count
        return current, min(ctx.params["max_workers"], current + ctx.params["scale_step"])

    def plan(self, ctx: RunContext) -> list[str]:
        """Change worker_count."""
        current, new = self._target(ctx)
        return [f"set worker_count {current} -> {new}"]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Persist the higher worker count (the supervisor scales within a second)."""
        current, new = self._target(ctx)
        store = ctx.env.store()
        # The rows as they were (saving writes every setting): rollback restores them exactly.
        rows = store.read("SELECT key, value FROM settings")
        ctx.undo["settings_rows"] = [list(row) for row in rows]
        settings_mod.save(store, {"worker_count": new})
        ctx.undo["worker_count"] = current
        ctx.undo["target"] = new
        return PlaybookOutcome(True, f"worker_count {current} -> {new}")

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Pass when the added workers are alive and the backlog has drained below max_queued."""
        store = context.env.store()
        alive = len(live_workers(store, 5.0))
        target = int(context.undo.get("target", 0))
        depth = store.read(
            "SELECT COUNT(*) FROM tasks WHERE status = 'queued' AND not_before <= ?", (time.time(),)
        )[0][0]
        limit = context.params["max_queued"]
        return PlaybookOutcome(
            alive >= target and depth < limit,
            f"{alive} live worker(s), want {target}; {depth} queued, want < {limit}",
        )

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Restore the previous worker count."""
        previous = context.undo.get("worker_count")
        rows = context.undo.get("settings_rows")
        if rows is not None:
            with context.env.store().write() as conn:
                conn.execute("DELETE FROM settings")
                conn.executemany("INSERT INTO settings(key, value) VALUES (?, ?)", rows)
        elif previous is not None:
            settings_mod.save(context.env.store(), {"worker_count": int(previous)})
        return PlaybookOutcome(True, f"worker_count back to {previous}")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Submit a burst of compute tasks through the durable submit path."""
        count = int(options.get("count", 150))
        cost_ms = int(options.get("cost_ms", 250))
        records = env.store().submit_many(
            [NewTask("compute", {"cost_ms": cost_ms}, max_attempts=5) for _ in range(count)]
        )
        return {
            "submitted": len(records),
            "cost_ms": cost_ms,
            "payload": json.dumps({"cost_ms": cost_ms}),
        }


PLAYBOOKS: tuple[type[BasePlaybook], ...] = (StaleLease, PoisonTask, ScheduleStall, QueueBacklog)
