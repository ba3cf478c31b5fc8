"""C3: disk faults on the target's data dir: full, write access removed, a held SQLite lock."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

from chaos.experiments import DiskFullFault, FileLockFault, ReadOnlyFault
from chaos.faults import Injector
from chaos.instance import MOUNTS, ChaosInstance, InstanceOptions, run_quiet
from harness.errors import TargetError

FILLER = ".chaos-disk-filler"
CHUNK_BYTES = 1 << 20
#: Memory-mapped SQLite files are never made immutable: writing a mapped page of one raises SIGBUS.
MAPPED_SUFFIXES = ("-shm",)
LOCK_TIMEOUT_S = 10.0


class DiskFullInjector(Injector):
    """Fills the instance's tmpfs data dir to the last byte; the filler is deleted on removal."""

    def unavailable(self) -> str | None:
        """A size-limited filesystem needs root to mount a tmpfs."""
        if os.geteuid() != 0 or shutil.which("mount") is None:
            return "disk full needs a size-limited filesystem for the data dir (tmpfs mount, root); not root here"
        return None

    def options(self) -> InstanceOptions:
        """The data dir on a tmpfs of the configured size."""
        assert isinstance(self.spec, DiskFullFault)  # noqa: S101 - the registry pairs spec and injector
        return InstanceOptions(tmpfs_mb=self.spec.size_mb)

    def resources(self) -> frozenset[str]:
        """The machine's mount table: a private namespace made while the tmpfs is mounted would keep a copy of it."""
        return frozenset({MOUNTS})

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Write the filler until ENOSPC; the free space left is the proof."""
        written = 0
        block = b"\0" * CHUNK_BYTES
        limit = shutil.disk_usage(inst.data_dir).total + CHUNK_BYTES
        with (inst.data_dir / FILLER).open("wb", buffering=0) as handle:
            while written < limit:
                try:
                    written += handle.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        usage = shutil.disk_usage(inst.data_dir)
        return {"filler_bytes": written, "free_bytes": usage.free, "total_bytes": usage.total}

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Delete the filler."""
        with contextlib.suppress(FileNotFoundError):
            (inst.data_dir / FILLER).unlink()
        return {"free_bytes": shutil.disk_usage(inst.data_dir).free}


class ReadOnlyInjector(Injector):
    """Removes write access: chmod a-w, or (as root, who ignores modes) the immutable attribute."""

    def __init__(self, spec: ReadOnlyFault) -> None:
        """Remember the modes to restore."""
        super().__init__(spec)
        self._modes: dict[Path, int] = {}
        self._immutable: list[Path] = []

    def unavailable(self) -> str | None:
        """As root, mode bits deny nothing; the immutable attribute needs chattr."""
        if os.geteuid() == 0 and shutil.which("chattr") is None:
            return "the harness runs as root (mode bits deny root nothing) and chattr(1) is missing"
        return None

    def _paths(self, inst: ChaosInstance) -> list[Path]:
        assert isinstance(self.spec, ReadOnlyFault)  # noqa: S101 - the registry pairs spec and injector
        found = [inst.data_dir / rel if rel else inst.data_dir for rel in self.spec.paths]
        return [p for p in found if p.exists() and not p.name.endswith(MAPPED_SUFFIXES)]

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Make each path unwritable and check a write is really refused."""
        paths = self._paths(inst)
        if os.geteuid() == 0:
            for path in paths:
                done = run_quiet(["chattr", "+i", str(path)])
                if done.returncode != 0:
                    raise TargetError(f"chattr +i {path.name}: {done.stderr.strip()}")
                self._immutable.append(path)
            mechanism = "chattr +i (root ignores mode bits)"
        else:
            for path in paths:
                self._modes[path] = stat.S_IMODE(path.stat().st_mode)
                path.chmod(self._modes[path] & ~0o222)
            mechanism = "chmod a-w"
        return {"mechanism": mechanism, "paths": [_rel(inst, p) for p in paths], "write_refused": _refused(inst)}

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Restore write access."""
        for path in self._immutable:
            run_quiet(["chattr", "-i", str(path)])
        for path, mode in self._modes.items():
            with contextlib.suppress(OSError):
                path.chmod(mode)
        restored = [_rel(inst, p) for p in [*self._immutable, *self._modes]]
        self._immutable, self._modes = [], {}
        return {"restored": restored, "write_refused": _refused(inst)}


def _rel(inst: ChaosInstance, path: Path) -> str:
    """A path relative to the data dir ('.' for the dir)."""
    return str(path.relative_to(inst.data_dir)) if path != inst.data_dir else "."


def _refused(inst: ChaosInstance) -> bool:
    """Whether creating a file in the data dir is refused right now."""
    probe = inst.data_dir / ".chaos-write-probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return True
    probe.unlink()
    return False


class FileLockInjector(Injector):
    """Holds an exclusive SQLite lock (BEGIN EXCLUSIVE) on the target's database for the fault window."""

    def __init__(self, spec: FileLockFault) -> None:
        """No lock held yet."""
        super().__init__(spec)
        self._conn: sqlite3.Connection | None = None

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Open the database and take the exclusive lock (waiting up to 10 s for the target's writers)."""
        assert isinstance(self.spec, FileLockFault)  # noqa: S101 - the registry pairs spec and injector
        path = inst.data_dir / self.spec.database
        if not path.is_file():
            raise TargetError(f"the database {self.spec.database} does not exist under the data dir")
        self._conn = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        self._conn.execute("BEGIN EXCLUSIVE")
        return {"database": self.spec.database, "lock": "BEGIN EXCLUSIVE", "held": self._conn.in_transaction}

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Roll back and close: the lock is released."""
        del inst
        held = self._conn is not None
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None
        return {"released": held}
