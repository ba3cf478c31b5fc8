"""Playbooks for the data directory's files: pid files, permissions, logs and backups."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from guardian import procutil
from guardian.healing import backup
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


def dead_pid() -> int:
    """Return the pid of a process that has just exited (a pid nobody owns now)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    return child.pid


class StalePidFile(BasePlaybook):
    """Pid files naming processes that are gone (or are not this instance's) are quarantined."""

    spec = PlaybookSpec(
        id="stale-pid-file",
        actions=("file-write", "file-delete"),
        title="Quarantine stale pid files",
        failure_mode="a pid file names a dead or foreign process",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("min_stale_s", int, 2, 0, 600, "seconds a file must stay stale"),),
        fault="writes pids/worker-97.pid naming a pid that has exited",
    )

    def _stale(self, env: HealEnv) -> list[Path]:
        """Pid files whose process is not a live guardian process of this data dir."""
        found = []
        for path in sorted(env.data_dir.pids_dir.glob("*.pid")):
            try:
                pid = int(path.read_text(encoding="ascii").strip())
            except (OSError, ValueError):
                found.append(path)
                continue
            if not procutil.is_guardian_process(pid, str(env.data_dir.root)):
                found.append(path)
        return found

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Stale for at least ``min_stale_s`` (the supervisor removes its own within a tick)."""
        seen: dict[str, float] = env.memory.setdefault("stale_pid_seen", {})
        now = time.monotonic()
        stale = [str(p) for p in self._stale(env)]
        for key in list(seen):
            if key not in stale:
                del seen[key]
        old = [p for p in stale if now - seen.setdefault(p, now) >= params["min_stale_s"]]
        if not old:
            return None
        return Detection("stale pid file", ",".join(Path(p).name for p in old), {"files": old})

    def plan(self, ctx: RunContext) -> list[str]:
        """Move each stale file to pids/quarantine/."""
        assert ctx.detection is not None
        return [f"move {f} to pids/quarantine/" for f in ctx.detection.evidence["files"]]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Quarantine the stale files."""
        assert ctx.detection is not None
        quarantine = ctx.env.data_dir.pids_dir / "quarantine"
        quarantine.mkdir(exist_ok=True)
        moved = []
        for name in ctx.detection.evidence["files"]:
            source = Path(name)
            target = quarantine / f"{source.name}.{int(time.time() * 1000)}"
            if source.exists():
                source.replace(target)
                moved.append([str(target), str(source)])
        ctx.undo["moved"] = moved
        return PlaybookOutcome(True, f"quarantined {len(moved)} pid file(s)", {"moved": moved})

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """No stale pid file remains."""
        stale = self._stale(context.env)
        return PlaybookOutcome(
            not stale, f"{len(stale)} stale pid file(s)", {"stale": [str(p) for p in stale]}
        )

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Move the quarantined files back."""
        for target, source in context.undo.get("moved", []):
            if Path(target).exists():
                Path(target).replace(source)
        return PlaybookOutcome(True, f"restored {len(context.undo.get('moved', []))} file(s)")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Write a pid file for a process that no longer exists."""
        pid = dead_pid()
        path = env.data_dir.write_pid("worker", 97, pid)
        return {"pid_file": str(path), "pid": pid}


def _expected_paths(env: HealEnv) -> list[Path]:
    """Return the directories and files whose permissions guardian relies on."""
    root = env.data_dir.root
    paths = [root, root / "logs", root / "pids", root / "backups", root / "metrics"]
    paths += [env.data_dir.db_path, env.data_dir.log_path]
    return [p for p in paths if p.exists()]


def _wanted_mode(path: Path, mode: int) -> int:
    """Owner read/write (and search on directories); never group/other writable."""
    owner = stat.S_IRWXU if path.is_dir() else stat.S_IRUSR | stat.S_IWUSR
    return (mode | owner) & ~(stat.S_IWGRP | stat.S_IWOTH)


class PermissionDrift(BasePlaybook):
    """World/group-writable or owner-unwritable data paths are put back to safe modes."""

    spec = PlaybookSpec(
        id="permission-drift",
        actions=("file-mode",),
        title="Restore safe permissions on the data directory",
        failure_mode="data dir or database became group/world writable or not owner-writable",
        tier=RiskTier.TIER_1,
        fault="chmod 0777 on the data dir and 0666 on guardian.db",
    )

    def _drifted(self, env: HealEnv) -> dict[str, tuple[int, int]]:
        """Path → (current mode, wanted mode) for every drifted path."""
        found = {}
        for path in _expected_paths(env):
            mode = stat.S_IMODE(path.stat().st_mode)
            wanted = _wanted_mode(path, mode)
            if mode != wanted:
                found[str(path)] = (mode, wanted)
        return found

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Any drifted path."""
        drifted = self._drifted(env)
        if not drifted:
            return None
        evidence = {p: [oct(a), oct(b)] for p, (a, b) in drifted.items()}
        return Detection("permission drift", ",".join(Path(p).name for p in drifted), evidence)

    def plan(self, ctx: RunContext) -> list[str]:
        """One chmod per drifted path."""
        return [f"chmod {b} {p} (was {a})" for p, (a, b) in self._drifted(ctx.env).items()]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Chmod each drifted path, remembering the old mode."""
        changed = {}
        for path, (mode, wanted) in self._drifted(ctx.env).items():
            Path(path).chmod(wanted)
            changed[path] = mode
        ctx.undo["modes"] = changed
        return PlaybookOutcome(
            True,
            f"fixed {len(changed)} path(s)",
            {"old_modes": {k: oct(v) for k, v in changed.items()}},
        )

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Restore the recorded modes."""
        for path, mode in context.undo.get("modes", {}).items():
            Path(path).chmod(int(mode))
        return PlaybookOutcome(True, f"restored {len(context.undo.get('modes', {}))} mode(s)")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Make the data dir world-writable and the database world-writable."""
        env.data_dir.root.chmod(0o777)
        env.data_dir.db_path.chmod(0o666)
        return {"chmod": {str(env.data_dir.root): "0o777", str(env.data_dir.db_path): "0o666"}}


def _logs_bytes(env: HealEnv) -> int:
    """Total bytes under logs/."""
    return sum(p.stat().st_size for p in env.data_dir.log_path.parent.iterdir() if p.is_file())


def _rotated_plain(env: HealEnv) -> list[Path]:
    """Rotated log files that are not compressed yet."""
    return sorted(
        p for p in env.data_dir.log_path.parent.glob("guardian.log.*") if not p.name.endswith(".gz")
    )


class RotatedLogsOverBudget(BasePlaybook):
    """Disk pressure from logs: compress rotated logs until the log dir fits its budget."""

    spec = PlaybookSpec(
        id="log-disk-pressure",
        actions=("file-write", "file-delete"),
        title="Compress rotated logs over the disk budget",
        failure_mode="log directory exceeds its disk budget with uncompressed rotated logs",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("budget_bytes", int, 4 * MIB, 64 * 1024, 1 << 40, "logs/ budget"),),
        fault="writes a 6 MiB uncompressed logs/guardian.log.1",
    )

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Over budget while uncompressed rotated files exist."""
        total = _logs_bytes(env)
        plain = _rotated_plain(env)
        if total <= params["budget_bytes"] or not plain:
            return None
        return Detection(
            "log disk pressure",
            "logs/",
            {"bytes": total, "budget": params["budget_bytes"], "files": [str(p) for p in plain]},
        )

    def plan(self, ctx: RunContext) -> list[str]:
        """Gzip each rotated file."""
        return [f"gzip {p}" for p in _rotated_plain(ctx.env)]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Compress rotated logs (write .gz, fsync, then remove the original)."""
        done = []
        for path in _rotated_plain(ctx.env):
            target = path.with_name(path.name + ".gz")
            with path.open("rb") as src, gzip.open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            with target.open("rb") as handle:
                os.fsync(handle.fileno())
            path.unlink()
            done.append(str(target))
        ctx.undo["compressed"] = done
        return PlaybookOutcome(
            True, f"compressed {len(done)} file(s)", {"bytes_now": _logs_bytes(ctx.env)}
        )

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Log dir within budget."""
        total = _logs_bytes(context.env)
        return PlaybookOutcome(total <= context.params["budget_bytes"], f"logs/ is {total} bytes")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Decompress what execute compressed."""
        for name in context.undo.get("compressed", []):
            target = Path(name)
            if target.exists():
                with gzip.open(target, "rb") as src, target.with_suffix("").open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                target.unlink()
        return PlaybookOutcome(
            True, f"decompressed {len(context.undo.get('compressed', []))} file(s)"
        )

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Write a large rotated log made of the instance's own log lines."""
        sample = env.data_dir.log_path.read_bytes()[-64 * 1024 :] or b'{"msg": "x"}\n'
        target = env.data_dir.log_path.with_name("guardian.log.1")
        size = int(options.get("bytes", 6 * MIB))
        with target.open("wb") as handle:
            written = 0
            while written < size:
                handle.write(sample)
                written += len(sample)
        return {"file": str(target), "bytes": written}


class BackupStale(BasePlaybook):
    """No recent database backup: take one online."""

    spec = PlaybookSpec(
        id="backup-stale",
        actions=("file-write", "file-delete"),
        title="Take a database backup when none is recent",
        failure_mode="no backup, or the newest backup is older than the allowed age",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("max_age_s", int, 3600, 60, 30 * 86_400, "allowed backup age"),),
        fault="ages every backup's mtime past max_age_s (or leaves none)",
    )

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Missing or old newest backup."""
        backups = backup.list_backups(env.data_dir)
        if not backups:
            return Detection("no database backup", "backups/", {"backups": 0})
        age_s = time.time() - backups[-1].stat().st_mtime
        if age_s <= params["max_age_s"]:
            return None
        return Detection("stale database backup", backups[-1].name, {"age_s": round(age_s, 1)})

    def plan(self, ctx: RunContext) -> list[str]:
        """One online backup."""
        return ["copy guardian.db with the SQLite backup API into backups/"]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Take the backup."""
        path = backup.take_backup(ctx.env.data_dir)
        ctx.undo["created"] = str(path)
        return PlaybookOutcome(True, f"backup {path.name}", {"path": str(path)})

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Newest backup is fresh and passes quick_check."""
        fresh = self.detect(context.env, context.params) is None
        backups = backup.list_backups(context.env.data_dir)
        ok, verdict = backup.backup_ok(backups[-1]) if backups else (False, "none")
        return PlaybookOutcome(fresh and ok, f"fresh={fresh} quick_check={verdict}")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Delete the backup execute created."""
        created = context.undo.get("created")
        if created and Path(created).exists():
            Path(created).unlink()
        return PlaybookOutcome(True, f"removed {created}")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Age every backup by two days."""
        old = time.time() - 2 * 86_400
        aged = []
        for path in backup.list_backups(env.data_dir):
            os.utime(path, (old, old))
            aged.append(path.name)
        return {"aged": aged}


class CorruptBackup(BasePlaybook):
    """The newest backup fails its integrity check: quarantine it and take a good one."""

    spec = PlaybookSpec(
        id="backup-corrupt",
        actions=("file-write", "file-delete"),
        title="Replace a corrupt backup",
        failure_mode="the newest database backup fails quick_check",
        tier=RiskTier.TIER_1,
        fault="overwrites 4000 bytes of the newest backup's first page",
    )

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Newest backup unreadable or not ok."""
        backups = backup.list_backups(env.data_dir)
        if not backups:
            return None
        ok, verdict = backup.backup_ok(backups[-1])
        if ok:
            return None
        return Detection(
            "corrupt database backup",
            backups[-1].name,
            {"path": str(backups[-1]), "verdict": verdict},
        )

    def plan(self, ctx: RunContext) -> list[str]:
        """Quarantine and replace."""
        assert ctx.detection is not None
        return [
            f"move {ctx.detection.evidence['path']} to backups/quarantine/",
            "take a fresh backup",
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Quarantine the corrupt file and take a new backup."""
        assert ctx.detection is not None
        source = Path(ctx.detection.evidence["path"])
        quarantine = source.parent / "quarantine"
        quarantine.mkdir(exist_ok=True)
        target = quarantine / source.name
        source.replace(target)
        ctx.undo["moved"] = [str(target), str(source)]
        created = backup.take_backup(ctx.env.data_dir)
        ctx.undo["created"] = str(created)
        return PlaybookOutcome(True, f"quarantined {source.name}; new backup {created.name}")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Remove the new backup and put the quarantined file back."""
        created = context.undo.get("created")
        if created and Path(created).exists():
            Path(created).unlink()
        moved = context.undo.get("moved")
        if moved and Path(moved[0]).exists():
            Path(moved[0]).replace(moved[1])
        return PlaybookOutcome(True, "restored the quarantined backup")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Corrupt the newest backup (taking one first if there is none)."""
        backups = backup.list_backups(env.data_dir)
        path = backups[-1] if backups else backup.take_backup(env.data_dir)
        with path.open("r+b") as handle:
            handle.seek(100)
            handle.write(b"\xde\xad\xbe\xef" * 1000)
        return {"corrupted": str(path)}


PLAYBOOKS: tuple[type[BasePlaybook], ...] = (
    StalePidFile,
    PermissionDrift,
    RotatedLogsOverBudget,
    BackupStale,
    CorruptBackup,
)
