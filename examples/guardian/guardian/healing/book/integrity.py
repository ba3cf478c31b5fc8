"""Playbooks for the database file itself: damaged index pages, a file of mostly free pages."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from guardian.errors import StoreError
from guardian.healing import backup
from guardian.healing.book.storage import wal_bytes
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

MIB = 1024 * 1024
PAGE_RE = re.compile(r"[Pp]age (\d+)")


@contextmanager
def raw_connection(env: HealEnv, timeout_s: float = 15.0) -> Iterator[sqlite3.Connection]:
    """Open a dedicated autocommit connection for maintenance statements (closed afterwards)."""
    conn = sqlite3.connect(env.data_dir.db_path, timeout=timeout_s, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def checkpoint_truncate(conn: sqlite3.Connection, attempts: int = 5) -> bool:
    """Checkpoint and truncate the WAL, retrying while readers hold it; True when done."""
    for _ in range(attempts):
        if not conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            return True
        time.sleep(0.05)
    return False


def row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per table, counted by a table scan (never through a possibly damaged index)."""
    tables = [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {
        name: int(conn.execute(f'SELECT COUNT(*) FROM "{name}" NOT INDEXED').fetchone()[0])  # noqa: S608 - names from sqlite_master
        for name in tables
    }


class DamagedIndex(BasePlaybook):
    """Index pages damaged on disk (quick_check fails): detach the index, rebuild it, VACUUM.

    Tier 2: the repair edits ``sqlite_master`` directly (``writable_schema``), the one action in
    this family that could itself damage the database if it were wrong. It only ever touches
    indexes, which are derived data: a damaged table is reported, not repaired.
    """

    spec = PlaybookSpec(
        id="db-index-corrupt",
        actions=("sqlite-write",),
        title="Rebuild database indexes with damaged pages",
        failure_mode="PRAGMA quick_check fails on the live database: pages of an index are damaged",
        tier=RiskTier.TIER_2,
        params=(ParamSpec("check_interval_s", int, 2, 1, 3600, "seconds between quick_checks"),),
        timeout_s=120.0,
        verify_timeout_s=20.0,
        fault="zeroes one page of the tasks_kind_created index in guardian.db (WAL checkpointed)",
    )

    def _damage(self, env: HealEnv, interval_s: float) -> dict[str, Any] | None:
        """Run quick_check (at most every ``interval_s``) and name the b-trees it blames."""
        cached = env.memory.get("quick_check")
        if cached is not None and time.monotonic() - cached[0] < interval_s:
            return dict(cached[1]) if cached[1] else None
        found = self._diagnose(env)
        env.memory["quick_check"] = (time.monotonic(), found)
        return found

    def _diagnose(self, env: HealEnv) -> dict[str, Any] | None:
        """quick_check now; map the pages it names to indexes (repairable) and other b-trees."""
        store = env.store()
        try:
            verdict = "\n".join(str(row[0]) for row in store.read("PRAGMA quick_check"))
        except StoreError as exc:
            verdict = str(exc)
        if verdict == "ok":
            return None
        pages = sorted({int(n) for n in PAGE_RE.findall(verdict)})
        marks = ",".join("?" * len(pages)) or "NULL"
        try:
            owners = {
                name
                for (name,) in store.read(
                    "SELECT DISTINCT name FROM dbstat "  # noqa: S608 - placeholders only
                    f"WHERE pagetype = 'corrupted' OR pageno IN ({marks})",
                    pages,
                )
            }
        except StoreError:
            owners = {"<unreadable>"}
        explicit = {
            name: sql
            for name, sql in store.read(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        }
        return {
            "verdict": verdict[:600],
            "pages": pages[:50],
            "indexes": {name: explicit[name] for name in sorted(owners & set(explicit))},
            "other": sorted(owners - set(explicit)),
        }

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """quick_check not ok."""
        found = self._damage(env, params["check_interval_s"])
        if found is None:
            return None
        subject = ",".join([*found["indexes"], *found["other"]]) or "guardian.db"
        return Detection("database pages damaged", subject, found)

    def plan(self, ctx: RunContext) -> list[str]:
        """Detach and rebuild each damaged index, VACUUM, compare with the newest backup."""
        assert ctx.detection is not None
        found = ctx.detection.evidence
        steps = [
            f"detach damaged index {n} (writable_schema); {sql}"
            for n, sql in found["indexes"].items()
        ]
        steps += [
            "VACUUM (the detached pages are not copied), then checkpoint the WAL",
            "count rows per table before and after; compare task ids with the newest backup",
        ]
        if found["other"]:
            steps.append(f"cannot rebuild {', '.join(found['other'])} in place: restore a backup")
        return steps

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Rebuild the damaged indexes from their tables; refuse when a table itself is damaged."""
        ctx.env.memory.pop("quick_check", None)  # the next detect must look again
        found = self._diagnose(ctx.env)
        if found is None:
            return PlaybookOutcome(True, "quick_check already ok")
        if found["other"]:
            return PlaybookOutcome(
                False, f"not an index: {', '.join(found['other'])}; restore from backup", found
            )
        with raw_connection(ctx.env) as conn:
            before = row_counts(conn)
            for name in found["indexes"]:
                self._detach(conn, name)
        # A fresh connection: the detaching one still has the old schema parsed.
        with raw_connection(ctx.env) as conn:
            for sql in found["indexes"].values():
                conn.execute(sql)
            conn.execute("VACUUM")
            checkpoint_truncate(conn, attempts=5)
            after = row_counts(conn)
            compared = compare_with_backup(ctx.env, conn)
        lost = {t: before[t] - after.get(t, 0) for t in before if before[t] > after.get(t, 0)}
        evidence = {
            "rebuilt": sorted(found["indexes"]),
            "rows_before": before,
            "rows_after": after,
            "rows_lost": lost,
            "backup": compared,
        }
        return PlaybookOutcome(not lost, f"rebuilt {', '.join(sorted(found['indexes']))}", evidence)

    @staticmethod
    def _detach(conn: sqlite3.Connection, name: str) -> None:
        """Remove the index from the schema without reading its pages; bump the schema cookie.

        ``DROP INDEX`` and ``REINDEX`` both walk the old b-tree to free it and stop at the damaged
        page. Deleting the schema row leaves the pages unreferenced (VACUUM drops them); the new
        schema version makes every other connection reload the schema before its next statement.
        """
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
            conn.execute("PRAGMA writable_schema = ON")
            conn.execute("DELETE FROM sqlite_master WHERE type = 'index' AND name = ?", (name,))
            conn.execute(f"PRAGMA schema_version = {version + 1}")
            conn.execute("PRAGMA writable_schema = OFF")
            conn.execute("COMMIT")
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            raise

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """quick_check ok, and each rebuilt index holds exactly its table's rows."""
        if self._diagnose(context.env) is not None:
            return PlaybookOutcome(False, "quick_check still fails")
        store = context.env.store()
        tables = {
            t
            for (t,) in store.read(
                "SELECT DISTINCT tbl_name FROM sqlite_master WHERE type = 'index'"
            )
        }
        for table in sorted(tables):
            verdict = str(store.read(f'PRAGMA integrity_check("{table}")')[0][0])
            if verdict != "ok":
                return PlaybookOutcome(False, f"integrity_check({table}): {verdict[:200]}")
        return PlaybookOutcome(True, "quick_check ok; indexes match their tables")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Do nothing: damaging a repaired index again is not a rollback."""
        return PlaybookOutcome(True, "nothing to undo: rebuilt indexes hold the same rows")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Zero one page of an index in the database file, as a lost or torn write would.

        The WAL is checkpointed and truncated first and the write lock is held while the page is
        overwritten, so no committed frame of that page is waiting in the WAL to cover it up.
        """
        index = str(options.get("index", "tasks_kind_created"))
        # Bounded: a reader that never ends blocks TRUNCATE. Under a loaded machine readers and
        # writers are slow, and a writer queued behind the checkpoint often takes the write lock
        # before this connection does; 15 s of attempts is enough for a busy 2-core host (4 s once
        # failed there), and the harness waits 20 s for an inject to answer.
        deadline = time.monotonic() + 15.0
        attempts = 0
        with raw_connection(env, timeout_s=1.0) as conn:
            while not self._empty_wal_locked(env, conn):
                attempts += 1
                if time.monotonic() > deadline:
                    return {
                        "error": f"the WAL could not be emptied in 15 s ({attempts} attempts): "
                        "readers or writers kept it busy"
                    }
                time.sleep(0.02 + 0.03 * (attempts % 3))
            try:
                pages = conn.execute(
                    "SELECT pageno, pagetype FROM dbstat WHERE name = ? ORDER BY pageno", (index,)
                ).fetchall()
                leaves = [p for p, kind in pages if kind == "leaf"]
                page = leaves[0] if leaves else pages[0][0]
                size = int(conn.execute("PRAGMA page_size").fetchone()[0])
                with env.data_dir.db_path.open("r+b") as handle:
                    handle.seek((page - 1) * size)
                    handle.write(b"\0" * size)
                    handle.flush()
                    os.fsync(handle.fileno())
            finally:
                conn.execute("ROLLBACK")
        return {
            "index": index,
            "page": page,
            "page_size": size,
            "index_pages": len(pages),
            "wal_attempts": attempts + 1,
        }

    @staticmethod
    def _empty_wal_locked(env: HealEnv, conn: sqlite3.Connection) -> bool:
        """Checkpoint and truncate the WAL, then hold the write lock if it is still empty."""
        try:
            checkpoint_truncate(conn, attempts=1)
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        if wal_bytes(env) == 0:
            return True
        conn.execute("ROLLBACK")
        return False


def compare_with_backup(env: HealEnv, conn: sqlite3.Connection) -> dict[str, Any]:
    """Task ids in the newest good backup that the live database no longer has."""
    for path in reversed(backup.list_backups(env.data_dir)):
        ok, _ = backup.backup_ok(path)
        if not ok:
            continue
        old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            in_backup = {row[0] for row in old.execute("SELECT id FROM tasks")}
        finally:
            old.close()
        live = {row[0] for row in conn.execute("SELECT id FROM tasks NOT INDEXED")}
        return {
            "backup": path.name,
            "tasks_in_backup": len(in_backup),
            "missing_from_live": len(in_backup - live),
        }
    return {"backup": None}


class Fragmentation(BasePlaybook):
    """Most of the database file is free pages after a mass delete: VACUUM it, within a bound."""

    spec = PlaybookSpec(
        id="db-fragmentation",
        actions=("sqlite-write",),
        title="VACUUM a database file that is mostly free pages",
        failure_mode="free pages take most of guardian.db after mass deletes",
        tier=RiskTier.TIER_1,
        params=(
            ParamSpec("max_free_mib", int, 16, 1, 1_000_000, "free space that is tolerated"),
            ParamSpec("max_free_pct", int, 25, 1, 99, "free share of the file that is tolerated"),
            ParamSpec("max_vacuum_s", int, 60, 1, 600, "VACUUM is aborted after this long"),
        ),
        timeout_s=120.0,
        fault="fills a table with 24 MiB in 1 MiB transactions, then drops it",
    )

    def _usage(self, env: HealEnv) -> dict[str, int]:
        """Pages in the file, free pages and the page size."""
        store = env.store()
        return {
            "page_count": int(store.read("PRAGMA page_count")[0][0]),
            "freelist_count": int(store.read("PRAGMA freelist_count")[0][0]),
            "page_size": int(store.read("PRAGMA page_size")[0][0]),
        }

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Free space above both the absolute and the relative threshold."""
        usage = self._usage(env)
        free_bytes = usage["freelist_count"] * usage["page_size"]
        free_pct = 100 * usage["freelist_count"] / max(1, usage["page_count"])
        if free_bytes <= params["max_free_mib"] * MIB or free_pct < params["max_free_pct"]:
            return None
        evidence = {**usage, "free_bytes": free_bytes, "free_pct": round(free_pct, 1)}
        return Detection("database fragmented", "guardian.db", evidence)

    def plan(self, ctx: RunContext) -> list[str]:
        """One bounded VACUUM and a WAL truncation."""
        usage = self._usage(ctx.env)
        live = usage["page_count"] - usage["freelist_count"]
        return [
            f"VACUUM: rewrite {live} live pages, release {usage['freelist_count']} free pages "
            f"(aborted after {ctx.params['max_vacuum_s']} s)",
            "PRAGMA wal_checkpoint(TRUNCATE)",
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """VACUUM with a progress handler that aborts it at the deadline or on cancel."""
        before = self._usage(ctx.env)
        deadline = time.monotonic() + ctx.params["max_vacuum_s"]
        with raw_connection(ctx.env) as conn:
            conn.set_progress_handler(
                lambda: int(time.monotonic() > deadline or ctx.cancel.is_set()), 10_000
            )
            started = time.monotonic()
            try:
                conn.execute("VACUUM")
            except sqlite3.OperationalError as exc:
                return PlaybookOutcome(False, f"VACUUM aborted: {exc}", before)
            vacuum_s = time.monotonic() - started
            conn.set_progress_handler(None, 0)
            truncated = checkpoint_truncate(conn, attempts=5)
        after = self._usage(ctx.env)
        evidence = {"before": before, "after": after, "vacuum_s": round(vacuum_s, 3)}
        evidence["wal_truncated"] = truncated
        return PlaybookOutcome(True, f"VACUUM in {vacuum_s:.2f} s", evidence)

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Do nothing: VACUUM moves no row; fragmenting the file again is not a rollback."""
        return PlaybookOutcome(True, "nothing to undo: VACUUM keeps every row")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Fill and drop a ballast table; small transactions keep the WAL small on the way."""
        mib = int(options.get("mib", 24))
        with raw_connection(env, timeout_s=1.0) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS fault_fragment (b BLOB)")
            for _ in range(mib):
                conn.execute("INSERT INTO fault_fragment(b) VALUES (randomblob(?))", (MIB,))
                checkpoint_truncate(conn, attempts=3)
            conn.execute("DROP TABLE fault_fragment")
            checkpoint_truncate(conn, attempts=5)
        return {"mib": mib, **self._usage(env)}


PLAYBOOKS: tuple[type[BasePlaybook], ...] = (DamagedIndex, Fragmentation)
