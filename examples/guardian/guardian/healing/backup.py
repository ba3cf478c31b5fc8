"""Online backups of the instance database (SQLite backup API) into ``<data-dir>/backups``."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from guardian.paths import DataDir

BACKUP_GLOB = "guardian-*.db"


def backups_dir(data_dir: DataDir) -> Path:
    """Directory holding backups."""
    return data_dir.root / "backups"


def list_backups(data_dir: DataDir) -> list[Path]:
    """Backups, oldest first (by modification time)."""
    directory = backups_dir(data_dir)
    if not directory.exists():
        return []
    return sorted(directory.glob(BACKUP_GLOB), key=lambda p: (p.stat().st_mtime, p.name))


def take_backup(data_dir: DataDir) -> Path:
    """Copy the live database consistently (readers and writers keep going) and fsync it."""
    directory = backups_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"guardian-{int(time.time() * 1000)}.db"
    partial = target.with_suffix(".partial")
    source = sqlite3.connect(data_dir.db_path, timeout=15)
    try:
        dest = sqlite3.connect(partial)
        try:
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()
    partial.replace(target)
    return target


def backup_ok(path: Path) -> tuple[bool, str]:
    """Run ``quick_check`` on a backup file; return (ok, verdict)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = str(conn.execute("PRAGMA quick_check").fetchone()[0])
            conn.execute("SELECT COUNT(*) FROM tasks").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return False, str(exc)
    return verdict == "ok", verdict
