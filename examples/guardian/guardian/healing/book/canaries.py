"""Playbooks a failing canary triggers: the L7 canary sees the symptom, the diagnosis the cause.

Each detection starts from ``canary.failing(store, "L7")`` (two failed rounds in a row, fresh),
then looks for one specific cause; each verification waits for a canary round after the repair
to pass. Three causes share the symptom "the canary task cannot be submitted or is too slow": a
file-size limit on a process, a column missing from the schema, a task-cost setting that broke
the latency the canary had just proven.
"""

from __future__ import annotations

import resource
import sqlite3
import time
from typing import Any

import psutil

from guardian import procutil
from guardian import settings as settings_mod
from guardian.healing import canary
from guardian.healing.book.processes import instance_processes
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
from guardian.store import SCHEMA
from guardian.worker import WorkerConfig

UNLIMITED = resource.RLIM_INFINITY
# Workers re-read the settings this often: a change is in effect everywhere after it.
SETTINGS_REFRESH_S = WorkerConfig().settings_refresh_s


def fsize_limits(env: HealEnv) -> tuple[int, dict[str, tuple[int, int, int]]]:
    """Return the baseline RLIMIT_FSIZE (the keeper's) and role → (pid, soft, hard)."""
    found: dict[str, tuple[int, int, int]] = {}
    for role, pid in instance_processes(env).items():
        try:
            soft, hard = psutil.Process(pid).rlimit(psutil.RLIMIT_FSIZE)
        except psutil.Error:
            continue
        found[role] = (pid, soft, hard)
    baseline = found.get("keeper-0", (0, UNLIMITED, UNLIMITED))[1]
    return baseline, found


def _below(soft: int, baseline: int) -> bool:
    """Whether a soft limit is tighter than the baseline (RLIM_INFINITY is the loosest)."""
    return soft != UNLIMITED and (baseline == UNLIMITED or soft < baseline)


class FileSizeLimit(BasePlaybook):
    """The L7 canary cannot submit: a process's RLIMIT_FSIZE was lowered, every write fails.

    Writing past the limit fails with EFBIG, which SQLite reports as "disk I/O error": the API
    still answers /healthz (so the supervisor sees nothing wrong) but cannot commit a task. The
    healer raises the soft limit back to the instance's baseline (the keeper's) with prlimit(2),
    which needs no privilege while the hard limit allows it; no process is restarted.
    """

    spec = PlaybookSpec(
        id="fsize-limit",
        actions=("process-limit",),
        title="Restore a file-size limit that makes a process's writes fail",
        failure_mode="the L7 canary fails: a guardian process cannot write (RLIMIT_FSIZE lowered)",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("min_failures", int, 2, 1, 20, "consecutive L7 canary failures"),),
        verify_timeout_s=20.0,
        fault="prlimit: RLIMIT_FSIZE soft limit of the API process set to 0 bytes",
    )

    def _drifted(self, env: HealEnv) -> dict[str, Any]:
        """Roles whose soft limit is below the baseline, with what to restore."""
        baseline, limits = fsize_limits(env)
        return {
            role: {"pid": pid, "soft": soft, "hard": hard, "restore": baseline}
            for role, (pid, soft, hard) in limits.items()
            if _below(soft, baseline)
        }

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """L7 canary failing, and some process's file-size limit below the baseline."""
        failing = canary.failing(env.store(), "L7", params["min_failures"])
        if failing is None:
            return None
        drifted = self._drifted(env)
        if not drifted:
            return None
        evidence = {"processes": drifted, "canary_error": failing["error"]}
        return Detection("file-size limit blocks writes", ",".join(sorted(drifted)), evidence)

    def plan(self, ctx: RunContext) -> list[str]:
        """One prlimit per process."""
        return [
            f"prlimit --fsize={_show(d['restore'])} --pid {d['pid']} "
            f"({role}, now {_show(d['soft'])})"
            for role, d in self._drifted(ctx.env).items()
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Raise each soft limit to the baseline (capped by its hard limit)."""
        restored, undo = {}, {}
        for role, item in self._drifted(ctx.env).items():
            hard = item["hard"]
            soft = item["restore"] if hard == UNLIMITED else min(item["restore"], hard)
            psutil.Process(item["pid"]).rlimit(psutil.RLIMIT_FSIZE, (soft, hard))
            undo[str(item["pid"])] = [item["soft"], hard]
            restored[role] = _show(soft)
        ctx.undo["limits"] = undo
        ctx.undo["executed_at"] = time.time()
        return PlaybookOutcome(True, f"restored {sorted(restored)}", {"restored": restored})

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """No limit below baseline, and an L7 canary round after the repair passed."""
        drifted = self._drifted(context.env)
        if drifted:
            return PlaybookOutcome(False, f"still limited: {sorted(drifted)}")
        return canary_passed_since(context.env, float(context.undo.get("executed_at", 0.0)))

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Put the recorded limits back on the processes that still run."""
        done = []
        for pid, (soft, hard) in context.undo.get("limits", {}).items():
            if procutil.is_guardian_process(int(pid), str(context.env.data_dir.root)):
                psutil.Process(int(pid)).rlimit(psutil.RLIMIT_FSIZE, (int(soft), int(hard)))
                done.append(int(pid))
        return PlaybookOutcome(True, f"limits restored on {done}")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Lower one process's soft file-size limit (default: the API's, to 0 bytes)."""
        role = str(options.get("role", "api-0"))
        pid = instance_processes(env).get(role)
        if pid is None:
            return {"error": f"no live process {role}"}
        process = psutil.Process(pid)
        _, hard = process.rlimit(psutil.RLIMIT_FSIZE)
        limit = int(options.get("limit_bytes", 0))
        process.rlimit(psutil.RLIMIT_FSIZE, (limit, hard))
        return {"role": role, "pid": pid, "fsize_soft": limit}


def _show(limit: int) -> str:
    """Format a limit as prlimit prints it."""
    return "unlimited" if limit == UNLIMITED else str(limit)


def canary_passed_since(env: HealEnv, since: float) -> PlaybookOutcome:
    """Pass when the L7 canary passed in a round recorded after ``since`` (or is not running)."""
    l7 = canary.load(env.store()).get("L7")
    if l7 is None or l7["stale"]:
        return PlaybookOutcome(True, "repaired; no running L7 canary to confirm it")
    if l7["ok"] and float(l7["checked_at"]) > since:
        return PlaybookOutcome(True, f"L7 canary passed at {l7['checked_at']:.3f}")
    return PlaybookOutcome(False, f"L7 canary not yet passing: {l7['error']}")


def expected_columns() -> dict[str, list[tuple[str, str, int, Any]]]:
    """Table → (column, type, notnull, default) of guardian's schema, built in memory."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {
            table: [(c[1], c[2], c[3], c[4]) for c in conn.execute(f'PRAGMA table_info("{table}")')]
            for table in tables
        }
    finally:
        conn.close()


def missing_columns(env: HealEnv) -> dict[str, list[tuple[str, str, int, Any]]]:
    """Columns of guardian's schema absent from existing tables of the live database."""
    store = env.store()
    found = {}
    for table, columns in expected_columns().items():
        live = {row[1] for row in store.read(f'PRAGMA table_info("{table}")')}
        gone = [c for c in columns if c[0] not in live]
        if live and gone:
            found[table] = gone
    return found


def column_ddl(table: str, column: tuple[str, str, int, Any]) -> str | None:
    """Return the ALTER TABLE restoring a column (None: NOT NULL without default cannot be)."""
    name, kind, notnull, default = column
    if notnull and default is None:
        return None
    tail = (" NOT NULL" if notnull else "") + (f" DEFAULT {default}" if default is not None else "")
    return f'ALTER TABLE "{table}" ADD COLUMN "{name}" {kind}{tail}'


class SchemaDrift(BasePlaybook):
    """The L7 canary cannot submit: a column of guardian's schema is missing from its table.

    A botched migration or a hand-run ``ALTER TABLE ... DROP COLUMN`` leaves the table without
    a column the code writes: every INSERT naming it fails, the API answers 503. Only the
    canary's failure triggers the diagnosis; the repair adds the column back (its old values
    are gone with it: the evidence says how many rows lost them).
    """

    spec = PlaybookSpec(
        id="db-schema-drift",
        actions=("sqlite-write",),
        title="Restore columns missing from guardian's tables",
        failure_mode="the L7 canary fails: a table lacks a column of guardian's schema",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("min_failures", int, 2, 1, 20, "consecutive L7 canary failures"),),
        verify_timeout_s=20.0,
        fault="ALTER TABLE tasks DROP COLUMN request_id",
    )

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """L7 canary failing, and a schema column missing from a live table."""
        failing = canary.failing(env.store(), "L7", params["min_failures"])
        if failing is None:
            return None
        missing = missing_columns(env)
        if not missing:
            return None
        names = [f"{t}.{c[0]}" for t, cols in missing.items() for c in cols]
        evidence = {"missing": names, "canary_error": failing["error"]}
        return Detection("schema column missing", ",".join(names), evidence)

    def plan(self, ctx: RunContext) -> list[str]:
        """One ALTER TABLE per missing column."""
        return [
            column_ddl(t, c) or f"cannot add {t}.{c[0]} (NOT NULL without default)"
            for t, cols in missing_columns(ctx.env).items()
            for c in cols
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Add the columns back (NULL or their default in existing rows)."""
        added, refused = [], []
        with ctx.env.store().write() as conn:
            for table, columns in missing_columns(ctx.env).items():
                rows = int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])  # noqa: S608 - schema names
                for column in columns:
                    ddl = column_ddl(table, column)
                    if ddl is None:
                        refused.append(f"{table}.{column[0]}")
                        continue
                    conn.execute(ddl)
                    added.append({"table": table, "column": column[0], "rows_without_value": rows})
        ctx.undo["added"] = [[a["table"], a["column"]] for a in added]
        ctx.undo["executed_at"] = time.time()
        return PlaybookOutcome(
            not refused, f"added {len(added)} column(s)", {"added": added, "refused": refused}
        )

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """No column missing, and an L7 canary round after the repair passed."""
        if missing_columns(context.env):
            return PlaybookOutcome(False, "columns still missing")
        return canary_passed_since(context.env, float(context.undo.get("executed_at", 0.0)))

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Drop the columns execute added."""
        added = context.undo.get("added", [])
        with context.env.store().write() as conn:
            for table, column in added:
                conn.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        return PlaybookOutcome(True, f"dropped {len(added)} column(s)")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Drop tasks.request_id (a nullable, unindexed column every submission writes)."""
        with env.store().write() as conn:
            kept = conn.execute("SELECT COUNT(request_id) FROM tasks").fetchone()[0]
            conn.execute("ALTER TABLE tasks DROP COLUMN request_id")
        return {"dropped": "tasks.request_id", "values_lost": kept}


class ConfigRegression(BasePlaybook):
    """A task-cost setting change broke the L7 canary's latency: return to the proven value.

    Each passing L7 round records the ``orchestrate_cost_ms`` its task really ran with (the
    worker reports it in the task result), so "known good" is what a worker actually executed,
    not what the settings table said at some moment. When the canary then keeps failing its
    latency SLO with a different value in effect, the setting is put back: the bad-deploy
    rollback of requirement C6, for the configuration the canary exercises.
    """

    spec = PlaybookSpec(
        id="config-regression",
        actions=("config-write",),
        title="Roll back a setting that broke the L7 canary's latency",
        failure_mode="the L7 canary misses its latency SLO since orchestrate_cost_ms changed",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("min_failures", int, 2, 1, 20, "consecutive L7 canary failures"),),
        verify_timeout_s=30.0,
        fault="sets orchestrate_cost_ms to 1000 (tasks that do not set their cost take 1 s)",
    )

    def _regression(self, env: HealEnv, min_failures: int) -> dict[str, Any] | None:
        """Return current and known-good value if the failing canary ran with the current one."""
        store = env.store()
        failing = canary.failing(store, "L7", min_failures)
        good = canary.known_good(store)
        if failing is None or good is None:
            return None
        ran_with = (failing["detail"].get("result") or {}).get("cost_ms")
        current = settings_mod.load(store).orchestrate_cost_ms
        if ran_with != current or current == good["orchestrate_cost_ms"]:
            return None
        return {
            "orchestrate_cost_ms": current,
            "known_good": good["orchestrate_cost_ms"],
            "known_good_at": good["at"],
            "canary_error": failing["error"],
        }

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """L7 canary over its SLO with a cost setting other than the proven one."""
        found = self._regression(env, params["min_failures"])
        if found is None:
            return None
        return Detection("canary latency regression after a setting change", "settings", found)

    def plan(self, ctx: RunContext) -> list[str]:
        """Set the value back."""
        assert ctx.detection is not None
        found = ctx.detection.evidence
        return [f"set orchestrate_cost_ms {found['orchestrate_cost_ms']} -> {found['known_good']}"]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Persist the known-good value; workers apply it within two seconds."""
        found = self._regression(ctx.env, ctx.params["min_failures"])
        if found is None:
            return PlaybookOutcome(True, "no regression left to roll back")
        store = ctx.env.store()
        ctx.undo["settings_rows"] = [list(r) for r in store.read("SELECT key, value FROM settings")]
        settings_mod.save(store, {"orchestrate_cost_ms": found["known_good"]})
        ctx.undo["executed_at"] = time.time()
        summary = f"orchestrate_cost_ms {found['orchestrate_cost_ms']} -> {found['known_good']}"
        return PlaybookOutcome(True, summary, found)

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Pass when an L7 canary round met its SLO after every worker re-read the settings."""
        applied_at = float(context.undo.get("executed_at", 0.0)) + SETTINGS_REFRESH_S
        return canary_passed_since(context.env, applied_at)

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Restore the settings rows as they were."""
        rows = context.undo.get("settings_rows")
        if rows is None:
            return PlaybookOutcome(True, "nothing to restore")
        with context.env.store().write() as conn:
            conn.execute("DELETE FROM settings")
            conn.executemany("INSERT INTO settings(key, value) VALUES (?, ?)", rows)
        return PlaybookOutcome(True, f"restored {len(rows)} setting row(s)")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Change the default orchestrate cost (a valid value: settings-drift does not see it)."""
        cost_ms = int(options.get("cost_ms", 1000))
        settings_mod.save(env.store(), {"orchestrate_cost_ms": cost_ms})
        return {"orchestrate_cost_ms": cost_ms}


PLAYBOOKS: tuple[type[BasePlaybook], ...] = (FileSizeLimit, SchemaDrift, ConfigRegression)
