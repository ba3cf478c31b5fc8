"""The run's work dir: scratch space for every gate and the TMPDIR of every child, removed at the end.

While a run lasts, TMPDIR (and Python's `tempfile`) point at `<work dir>/tmp`, so target instances,
tools, Locust, Prometheus and Chromium, which all get TMPDIR through `target_env`, write their
temporary files there; removing the work dir removes them, however the run ended. Other variables
the children inherit the same way (pip's cache directory, inside the harness's cache) are set for
the run's duration too, and restored with TMPDIR. Children also get XDG_CONFIG_HOME and
XDG_CACHE_HOME inside the work dir (not the harness itself, whose caches stay where they are), so
what Chromium (crash reports, dconf) or bandit's stevedore would write under ~/.config and ~/.cache
goes with the run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from harness.lifecycle import RUN_CHILD_ENV

UMOUNT_TIMEOUT_S = 10.0
OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class WorkDir:
    """A fresh `certify-work-*` directory that is the TMPDIR of the run until `close`."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        """Create the directory (in the harness's own TMPDIR); point TMPDIR into it and set `env`."""
        self.path = Path(tempfile.mkdtemp(prefix="certify-work-")).resolve()
        self.tmp = self.path / "tmp"
        self.tmp.mkdir(mode=0o700)
        run_env = {**(env or {}), "TMPDIR": str(self.tmp)}
        self._saved = {name: os.environ.get(name) for name in run_env}
        os.environ.update(run_env)
        tempfile.tempdir = None  # recomputed from TMPDIR on next use
        RUN_CHILD_ENV.update(XDG_CONFIG_HOME=str(self.path / "xdg-config"), XDG_CACHE_HOME=str(self.path / "xdg-cache"))

    def close(self, *, keep: bool = False) -> None:
        """Restore the harness's environment and, unless `keep`, remove the work dir and what is mounted in it."""
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        tempfile.tempdir = None
        RUN_CHILD_ENV.clear()
        if not keep:
            remove_tree(self.path)


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below `root` (deepest first), from /proc/self/mountinfo."""
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = Path(OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), fields[4]))  # \040: space
        if point == root or root in point.parents:
            found.append(point)
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def _quiet(argv: list[str]) -> None:
    """Run a short cleanup command, bounded; a missing tool or a failure only means less is undone."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(argv, check=False, capture_output=True, timeout=UMOUNT_TIMEOUT_S)


def remove_tree(root: Path) -> None:
    """Remove a directory tree even if a killed gate left a tmpfs mounted or a file immutable in it."""
    for point in mounts_under(root):
        _quiet(["umount", "-l", str(point)])
    shutil.rmtree(root, ignore_errors=True)
    if root.exists() and shutil.which("chattr") is not None:
        _quiet(["chattr", "-R", "-i", str(root)])
        shutil.rmtree(root, ignore_errors=True)
