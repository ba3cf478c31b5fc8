"""Layout of a guardian data directory: database, logs, pid files and metric shards."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataDir:
    """The files one guardian instance owns under its ``--data-dir``."""

    root: Path

    @property
    def db_path(self) -> Path:
        """SQLite database (WAL mode) holding tasks, settings, worker heartbeats."""
        return self.root / "guardian.db"

    @property
    def log_path(self) -> Path:
        """The JSON-lines log every guardian process appends to."""
        return self.root / "logs" / "guardian.log"

    @property
    def pids_dir(self) -> Path:
        """Directory of ``<role>-<n>.pid`` files, one per live process."""
        return self.root / "pids"

    @property
    def metrics_dir(self) -> Path:
        """``PROMETHEUS_MULTIPROC_DIR``: per-process metric shards, wiped when ``serve`` starts."""
        return self.root / "metrics"

    def ensure(self) -> None:
        """Create the directory skeleton if missing."""
        for directory in (self.root, self.log_path.parent, self.pids_dir, self.metrics_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def wipe_metrics(self) -> None:
        """Remove metric shards of a previous run so counters restart cleanly."""
        if self.metrics_dir.exists():
            shutil.rmtree(self.metrics_dir)
        self.metrics_dir.mkdir(parents=True, exist_ok=True)

    def pid_file(self, role: str, index: int) -> Path:
        """Path of the pid file for one process, e.g. ``pids/worker-1.pid``."""
        return self.pids_dir / f"{role}-{index}.pid"

    def write_pid(self, role: str, index: int, pid: int | None = None) -> Path:
        """Atomically write this (or the given) process id into its pid file."""
        self.pids_dir.mkdir(parents=True, exist_ok=True)
        target = self.pid_file(role, index)
        value = os.getpid() if pid is None else pid
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(f"{value}\n", encoding="ascii")
        tmp.replace(target)
        return target

    def remove_pid(self, role: str, index: int, pid: int | None = None) -> None:
        """Delete a pid file, but only if it still names this (or the given) process."""
        target = self.pid_file(role, index)
        expected = os.getpid() if pid is None else pid
        try:
            if int(target.read_text(encoding="ascii").strip()) == expected:
                target.unlink()
        except (FileNotFoundError, ValueError):
            return

    def read_pids(self) -> dict[str, int]:
        """Return ``{"worker-0": 1234, ...}`` for every readable pid file."""
        found: dict[str, int] = {}
        if not self.pids_dir.exists():
            return found
        for path in sorted(self.pids_dir.glob("*.pid")):
            try:
                found[path.stem] = int(path.read_text(encoding="ascii").strip())
            except (OSError, ValueError):
                continue
        return found
