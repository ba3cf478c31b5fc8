"""Playbooks for the SQLite store: WAL growth, missing indexes, a foreign write-lock holder."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
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
from guardian.store import SCHEMA

MIB = 1024 * 1024
INDEX_RE = re.compile(r"CREATE INDEX IF NOT EXISTS (\w+) ON [^;]+;")


def wal_bytes(env: HealEnv) -> int:
    """Size of the WAL file (0 when absent)."""
    wal = env.data_dir.db_path.with_name(env.data_dir.db_path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


class WalGrowth(BasePlaybook):
    """A WAL file grown far past its normal size is checkpointed and truncated."""

    spec = PlaybookSpec(
        id="wal-growth",
        actions=("sqlite-write",),
        title="Checkpoint and truncate an oversized WAL",
        failure_mode="guardian.db-wal grew beyond its limit",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("max_wal_bytes", int, 8 * MIB, MIB, 1 << 40, "WAL size limit"),),
        fault="writes and deletes 12 MiB of ballast with auto-checkpoint off",
    )

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """WAL larger than the limit."""
        size = wal_bytes(env)
        if size <= params["max_wal_bytes"]:
            return None
        return Detection("wal growth", "guardian.db-wal", {"wal_bytes": size})

    def plan(self, ctx: RunContext) -> list[str]:
        """One TRUNCATE checkpoint."""
        return ["PRAGMA wal_checkpoint(TRUNCATE) (retried while readers are busy)"]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Checkpoint with TRUNCATE until SQLite reports it was not blocked."""
        store = ctx.env.store()
        for attempt in range(50):
            busy, log_pages, done = store.read("PRAGMA wal_checkpoint(TRUNCATE)")[0]
            if not busy or ctx.cancel.is_set():
                return PlaybookOutcome(
                    not busy,
                    f"checkpoint after {attempt + 1} attempt(s)",
                    {"log_pages": log_pages, "checkpointed": done, "wal_bytes": wal_bytes(ctx.env)},
                )
            time.sleep(0.1)
        return PlaybookOutcome(False, "checkpoint stayed busy")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Do nothing: a checkpoint only moves committed pages into the database."""
        return PlaybookOutcome(True, "nothing to undo: a checkpoint loses no data")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Grow the WAL: write then delete ballast on a connection that never checkpoints."""
        conn = sqlite3.connect(env.data_dir.db_path, timeout=15, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute("CREATE TABLE IF NOT EXISTS fault_ballast (b BLOB)")
            conn.execute("BEGIN IMMEDIATE")
            for _ in range(int(options.get("mib", 12))):
                conn.execute("INSERT INTO fault_ballast(b) VALUES (randomblob(?))", (MIB,))
            conn.execute("COMMIT")
            conn.execute("DELETE FROM fault_ballast")
        finally:
            conn.close()
        return {"wal_bytes": wal_bytes(env)}


def expected_indexes() -> dict[str, str]:
    """Index name → its CREATE statement, from the store schema."""
    return {m.group(1): m.group(0) for m in INDEX_RE.finditer(SCHEMA)}


class MissingIndex(BasePlaybook):
    """Schema drift: an index the queue relies on was dropped; recreate it."""

    spec = PlaybookSpec(
        id="missing-index",
        actions=("sqlite-write",),
        title="Recreate dropped indexes",
        failure_mode="an index from guardian's schema is missing",
        tier=RiskTier.TIER_1,
        fault="DROP INDEX tasks_kind_created",
    )

    def _missing(self, env: HealEnv) -> list[str]:
        """Names of schema indexes absent from the database."""
        present = {
            n for (n,) in env.store().read("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        return sorted(set(expected_indexes()) - present)

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Any missing index."""
        missing = self._missing(env)
        return (
            Detection("missing index", ",".join(missing), {"missing": missing}) if missing else None
        )

    def plan(self, ctx: RunContext) -> list[str]:
        """Return the CREATE INDEX statements."""
        wanted = expected_indexes()
        return [wanted[n] for n in self._missing(ctx.env)]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Create the missing indexes."""
        wanted = expected_indexes()
        missing = self._missing(ctx.env)
        with ctx.env.store().write() as conn:
            for name in missing:
                conn.execute(wanted[name])
        ctx.undo["created"] = missing
        return PlaybookOutcome(True, f"created {', '.join(missing)}")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Drop the indexes execute created."""
        created = [n for n in context.undo.get("created", []) if n in expected_indexes()]
        with context.env.store().write() as conn:
            for name in created:
                conn.execute(f"DROP INDEX IF EXISTS {name}")
        return PlaybookOutcome(True, f"dropped {', '.join(created) or 'nothing'}")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Drop one index."""
        with env.store().write() as conn:
            conn.execute("DROP INDEX IF EXISTS tasks_kind_created")
        return {"dropped": "tasks_kind_created"}


def write_probe(env: HealEnv, timeout_ms: int) -> bool:
    """Try to take the write lock within ``timeout_ms``; never writes anything."""
    conn = sqlite3.connect(env.data_dir.db_path, timeout=timeout_ms / 1000, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()
    return True


def foreign_holders(env: HealEnv) -> list[int]:
    """Pids of this user's processes that have guardian.db open and are not the instance's."""
    own = set(env.data_dir.read_pids().values()) | {os.getpid()}
    db = str(env.data_dir.db_path)
    root = str(env.data_dir.root)
    found = []
    for process in psutil.process_iter(["pid", "uids"]):
        try:
            if process.pid in own or process.info["uids"].real != os.getuid():
                continue
            if any(f.path == db for f in process.open_files()) and not procutil.is_guardian_process(
                process.pid, root
            ):
                found.append(process.pid)
        except (psutil.Error, AttributeError):
            continue
    return found


class LockHolder(BasePlaybook):
    """A foreign process holds the database write lock: stop it so the instance can write.

    Tier 1 on purpose: while the lock is held nothing can be written, not even the approval
    request a higher tier would need; the diagnosis only ever targets processes that are not
    part of the instance and that hold guardian.db open.
    """

    spec = PlaybookSpec(
        id="db-lock-holder",
        actions=("signal",),
        title="Stop a foreign process holding the database write lock",
        failure_mode="writes time out because another process holds the SQLite write lock",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("probe_timeout_ms", int, 500, 50, 10_000, "write-probe wait"),),
        timeout_s=30.0,
        fault="a detached process opens guardian.db and holds BEGIN IMMEDIATE for 120 s",
        needs_store=False,
    )

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Write probe fails twice in a row, and a foreign holder is found."""
        if write_probe(env, params["probe_timeout_ms"]):
            env.memory.pop("lock_probe_failed", None)
            return None
        if not env.memory.get("lock_probe_failed"):
            env.memory["lock_probe_failed"] = True
            return None
        holders = foreign_holders(env)
        if not holders:
            return None
        return Detection(
            "database write lock held by foreign process",
            ",".join(map(str, holders)),
            {"pids": holders},
        )

    def plan(self, ctx: RunContext) -> list[str]:
        """SIGTERM then SIGKILL the holders."""
        assert ctx.detection is not None
        return [f"SIGTERM pid {p} (SIGKILL after 3 s)" for p in ctx.detection.evidence["pids"]]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Terminate the holders."""
        assert ctx.detection is not None
        pids = list(ctx.detection.evidence["pids"])
        for pid in pids:
            procutil.kill_quietly(pid, signal.SIGTERM)
        for pid in procutil.wait_gone(pids, 3.0):
            procutil.kill_quietly(pid, signal.SIGKILL)
        env = ctx.env
        env.memory.pop("lock_probe_failed", None)
        return PlaybookOutcome(True, f"stopped {pids}", {"pids": pids})

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Pass when the write lock can be taken again."""
        ok = write_probe(context.env, context.params["probe_timeout_ms"])
        return PlaybookOutcome(ok, "write lock available" if ok else "write lock still held")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Do nothing: guardian cannot restart a foreign process."""
        return PlaybookOutcome(True, "nothing to undo: the foreign process is not guardian's")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Start a detached process that takes and holds the write lock."""
        hold_s = float(options.get("hold_s", 120))
        code = (
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=15)\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n"
        )
        holder = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, "-c", code, str(env.data_dir.db_path), str(hold_s)],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert holder.stdout is not None
        holder.stdout.readline()
        return {"holder_pid": holder.pid, "hold_s": hold_s}


PLAYBOOKS: tuple[type[BasePlaybook], ...] = (WalGrowth, MissingIndex, LockHolder)
