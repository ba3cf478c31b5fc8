"""Process helpers: die with the parent, watch the parent, and inspect pids."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

import psutil

log = logging.getLogger("guardian.proc")
PARENT_PID_ENV = "GUARDIAN_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0


def expected_parent_pid() -> int | None:
    """Return the parent pid the spawning process announced in the environment, if any."""
    raw = os.environ.get(PARENT_PID_ENV)
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def bind_to_parent() -> None:
    """Make this process exit when its supervising parent dies (no orphans).

    Uses PR_SET_PDEATHSIG (SIGTERM, so shutdown stays graceful) plus a polling thread as a
    fallback for platforms without it, and closes the race where the parent died before the
    prctl call by comparing the current parent pid with the announced one.
    """
    parent = expected_parent_pid()
    if parent is None:
        return
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:
        log.warning("parent died before we started; exiting", extra={"parent_pid": parent})
        os.kill(os.getpid(), signal.SIGTERM)
        return
    thread = threading.Thread(
        target=_watch_parent, args=(parent,), daemon=True, name="parent-watch"
    )
    thread.start()


def _watch_parent(parent: int) -> None:
    """Send SIGTERM to ourselves once the parent is gone (fallback to PDEATHSIG)."""
    # getppid() changes on POSIX when the parent dies; on Windows it does not, so also ask
    # whether the parent pid is still alive.
    while os.getppid() == parent and pid_alive(parent):
        time.sleep(1.0)
    log.warning("parent process exited; shutting down", extra={"parent_pid": parent})
    os.kill(os.getpid(), signal.SIGTERM)


def pid_alive(pid: int) -> bool:
    """Tell whether ``pid`` names a running (non-zombie) process."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_guardian_process(pid: int, data_dir: str) -> bool:
    """Tell whether ``pid`` is a guardian process serving ``data_dir`` (guards pid reuse)."""
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return "guardian" in " ".join(cmdline) and data_dir in cmdline


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Wait up to ``timeout_s`` for ``pids`` to exit; return those still alive."""
    deadline = time.monotonic() + timeout_s
    alive = [pid for pid in pids if pid_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if pid_alive(pid)]
    return alive


def kill_quietly(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``, ignoring a process that has already gone.

    A pid of 0 or below is refused: os.kill would signal the caller's whole process group (or
    every process it may signal), never the one child meant.
    """
    if pid <= 0:
        log.error("refusing to signal pid %s", pid, extra={"pid": pid, "signal": sig})
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
