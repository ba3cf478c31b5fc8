"""Playbooks for the data dir's disk: abandoned temporary files, a log file deleted while open."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from guardian import logsetup, procutil
from guardian.healing import backup
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

MIB = 1024 * 1024
UNLIMITED = resource.RLIM_INFINITY


TEMP_PATTERNS = ("backups/*.partial", "backups/*.partial-journal", "pids/*.tmp[0-9]*")


def open_by_anyone(paths: list[Path]) -> set[str]:
    """Which of ``paths`` a process of this user has open."""
    wanted = {str(p) for p in paths}
    found: set[str] = set()
    for process in psutil.process_iter(["uids"]):
        try:
            if process.info["uids"].real != os.getuid():
                continue
            found |= wanted & {f.path for f in process.open_files()}
        except (psutil.Error, AttributeError):
            continue
    return found


class StaleTempFiles(BasePlaybook):
    """Temporary files guardian abandoned (a backup or pid write killed half-way) are removed."""

    spec = PlaybookSpec(
        id="stale-temp-files",
        actions=("file-delete",),
        title="Remove temporary files abandoned by interrupted writers",
        failure_mode="partial backups and pid temp files of killed writers pile up in the data dir",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("min_age_s", int, 600, 60, 30 * 86_400, "untouched for at least"),),
        fault="kills a real online backup half-way, leaving its .partial files, aged one hour",
    )

    def _stale(self, env: HealEnv, min_age_s: int) -> list[Path]:
        """Guardian temp files older than ``min_age_s`` that no process has open."""
        cutoff = time.time() - min_age_s
        aged = [
            path
            for pattern in TEMP_PATTERNS
            for path in sorted(env.data_dir.root.glob(pattern))
            if path.is_file() and path.stat().st_mtime < cutoff
        ]
        if not aged:
            return []
        busy = open_by_anyone(aged)
        return [p for p in aged if str(p) not in busy]

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Any abandoned temp file."""
        stale = self._stale(env, params["min_age_s"])
        if not stale:
            return None
        root = env.data_dir.root
        names = [str(p.relative_to(root)) for p in stale]
        evidence = {"files": names, "bytes": sum(p.stat().st_size for p in stale)}
        return Detection("abandoned temporary files", ",".join(names), evidence)

    def plan(self, ctx: RunContext) -> list[str]:
        """Delete each one (re-checked just before)."""
        return [f"delete {p}" for p in self._stale(ctx.env, ctx.params["min_age_s"])]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Delete the files that are still stale and unopened at this moment."""
        removed, freed = [], 0
        for path in self._stale(ctx.env, ctx.params["min_age_s"]):
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append(str(path.relative_to(ctx.env.data_dir.root)))
            freed += size
        evidence = {"removed": removed, "bytes_freed": freed}
        return PlaybookOutcome(True, f"removed {len(removed)} file(s), {freed} bytes", evidence)

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Do nothing: a half-written copy has no use and cannot be restored."""
        return PlaybookOutcome(True, "nothing to undo: the files were garbage")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Run the online backup in a child that SIGKILLs itself after a few pages."""
        target = backup.backups_dir(env.data_dir) / f"guardian-{int(time.time() * 1000)}.partial"
        target.parent.mkdir(parents=True, exist_ok=True)
        code = (
            "import os, signal, sqlite3, sys\n"
            "src = sqlite3.connect(sys.argv[1], timeout=15)\n"
            "dst = sqlite3.connect(sys.argv[2])\n"
            "left = [int(sys.argv[3])]\n"
            "def progress(status, remaining, total):\n"
            "    left[0] -= 1\n"
            "    if left[0] <= 0:\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "src.backup(dst, pages=1, progress=progress)\n"
        )
        pages = int(options.get("pages", 8))
        subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "-c", code, str(env.data_dir.db_path), str(target), str(pages)],
            check=False,
            timeout=30,
        )
        aged = time.time() - int(options.get("age_s", 3600))
        left = sorted(target.parent.glob(target.name + "*"))
        for path in left:
            os.utime(path, (aged, aged))
        return {"files": [p.name for p in left], "bytes": sum(p.stat().st_size for p in left)}


def stale_log_descriptors(env: HealEnv) -> dict[int, list[int]]:
    """Pid → fds open for writing on a log file that is no longer ``logs/guardian.log``."""
    log_path = env.data_dir.log_path
    try:
        current = log_path.stat()
        live = (current.st_dev, current.st_ino)
    except FileNotFoundError:
        live = None
    found: dict[int, list[int]] = {}
    for pid in sorted(set(instance_processes(env).values())):
        try:
            entries = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                if not str(entry.readlink()).startswith(str(log_path)):
                    continue
                opened = entry.stat()
                writable = _writable(Path(f"/proc/{pid}/fdinfo/{entry.name}"))
            except OSError:
                continue
            if writable and live != (opened.st_dev, opened.st_ino):
                found.setdefault(pid, []).append(int(entry.name))
    return found


def _writable(fdinfo: Path) -> bool:
    """Whether the descriptor described by ``/proc/<pid>/fdinfo/<fd>`` was opened for writing."""
    for line in fdinfo.read_text().splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & os.O_ACCMODE != os.O_RDONLY
    return False


class DeletedLog(BasePlaybook):
    """The log file was deleted (or moved away) while every process still appends to it.

    The lines go to an inode nothing can see, and its disk space is never freed. The healer
    asks each process to reopen ``logs/guardian.log`` (SIGUSR2; its own handlers directly), then
    copies what was written to the deleted file into ``logs/guardian.log.recovered-<ms>``.
    """

    spec = PlaybookSpec(
        id="log-file-deleted",
        actions=("signal", "file-write"),
        title="Reopen a deleted log file and recover its lines",
        failure_mode="logs/guardian.log was deleted; processes keep writing to the unlinked inode",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("max_recover_mib", int, 256, 1, 65_536, "largest copy recovered"),),
        fault="deletes logs/guardian.log under the running instance",
    )

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Any instance process writing to a log file that is not the current one."""
        stale = stale_log_descriptors(env)
        if not stale:
            return None
        exists = env.data_dir.log_path.exists()
        evidence = {"pids": {str(p): fds for p, fds in stale.items()}, "log_exists": exists}
        return Detection("log file deleted while open", "logs/guardian.log", evidence)

    def plan(self, ctx: RunContext) -> list[str]:
        """SIGUSR2 each process, then copy the deleted file's lines."""
        stale = stale_log_descriptors(ctx.env)
        steps = [f"SIGUSR2 pid {pid}: reopen logs/guardian.log" for pid in stale]
        return [*steps, "copy the deleted file's content to logs/guardian.log.recovered-<ms>"]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Hold the old inode open (read-only), make every process reopen, then copy it."""
        stale = stale_log_descriptors(ctx.env)
        if not stale:
            return PlaybookOutcome(True, "every process already writes to the current log")
        pid, fds = next(iter(stale.items()))
        with Path(f"/proc/{pid}/fd/{fds[0]}").open("rb") as old:
            for each in stale:
                if each == os.getpid():
                    logsetup.reopen_log_files()
                else:
                    procutil.kill_quietly(each, signal.SIGUSR2)
            deadline = time.monotonic() + 5.0
            while stale_log_descriptors(ctx.env) and time.monotonic() < deadline:
                time.sleep(0.05)
            left = stale_log_descriptors(ctx.env)
            recovered = self._recover(ctx, old)
        evidence = {
            "signalled": sorted(stale),
            "not_reopened": sorted(left),
            "recovered": recovered,
        }
        return PlaybookOutcome(
            not left, f"reopened in {len(stale) - len(left)} process(es)", evidence
        )

    def _recover(self, ctx: RunContext, old: Any) -> dict[str, Any]:
        """Copy the (bounded) tail of the old inode next to the new log, if it was deleted."""
        limit = ctx.params["max_recover_mib"] * MIB
        facts = os.fstat(old.fileno())
        if facts.st_nlink > 0:
            return {
                "file": None,
                "bytes": 0,
                "why": "the old log still exists (moved, not deleted)",
            }
        size = facts.st_size
        old.seek(max(0, size - limit))
        target = ctx.env.data_dir.log_path.with_name(
            f"guardian.log.recovered-{int(time.time() * 1000)}"
        )
        with target.open("wb") as out:
            copied = out.write(old.read(limit))
            out.flush()
            os.fsync(out.fileno())
        return {"file": target.name, "bytes": copied, "truncated_bytes": max(0, size - limit)}

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """No process writes to a stale file and the log exists again."""
        stale = stale_log_descriptors(context.env)
        exists = context.env.data_dir.log_path.exists()
        return PlaybookOutcome(not stale and exists, f"stale={sorted(stale)} exists={exists}")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Do nothing: deleting the log again would only lose lines."""
        return PlaybookOutcome(True, "nothing to undo: the recovered copy stays")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Delete the log file."""
        size = env.data_dir.log_path.stat().st_size
        env.data_dir.log_path.unlink()
        return {"deleted": str(env.data_dir.log_path), "bytes": size}


PLAYBOOKS: tuple[type[BasePlaybook], ...] = (StaleTempFiles, DeletedLog)
