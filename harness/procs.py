"""Child processes: each in its own process group, tracked, bounded in time, and killed by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.errors import ToolMissingError

POLL_S = 0.05


class ProcessRegistry:
    """Every child the harness started and has not yet reaped; the runner kills them all on exit."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        """Track a started child."""
        with self._lock:
            self._procs[proc.pid] = proc

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        """Forget a child that has been reaped."""
        with self._lock:
            self._procs.pop(proc.pid, None)

    def pids(self) -> list[int]:
        """Pids of the tracked children."""
        with self._lock:
            return list(self._procs)

    def kill_all(self, grace_s: float = 5.0) -> None:
        """SIGTERM every tracked group, then SIGKILL what is left after `grace_s`."""
        with self._lock:
            procs = list(self._procs.values())
        stop_many(procs, grace_s)
        for proc in procs:
            self.discard(proc)


REGISTRY = ProcessRegistry()


def _tree(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The child and every descendant still alive (some escape the group with setsid)."""
    try:
        root = psutil.Process(proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal_tree(proc: subprocess.Popen[bytes], members: list[psutil.Process], sig: int) -> None:
    """Send a signal to the child's process group and to every known descendant."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    for member in members:
        try:
            member.send_signal(sig)
        except psutil.NoSuchProcess:
            continue


def stop_many(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    """Stop children and their descendants: SIGTERM, wait up to grace_s, then SIGKILL."""
    trees = {proc.pid: _tree(proc) for proc in procs}
    for proc in procs:
        _signal_tree(proc, trees[proc.pid], signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if all(_gone(proc, trees[proc.pid]) for proc in procs):
            break
        time.sleep(POLL_S)
    for proc in procs:
        if not _gone(proc, trees[proc.pid]):
            _signal_tree(proc, trees[proc.pid], signal.SIGKILL)
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue
        _reap(trees[proc.pid])


def _gone(proc: subprocess.Popen[bytes], members: list[psutil.Process]) -> bool:
    """Whether the child has exited and no descendant is still running."""
    if proc.poll() is None:
        return False
    return not any(_alive(member) for member in members[1:])


def _alive(member: psutil.Process) -> bool:
    """Whether a process is still running (zombies count as gone)."""
    try:
        return bool(member.is_running() and member.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _reap(members: list[psutil.Process]) -> None:
    """Wait briefly for descendants that were re-parented, so none is left running."""
    for member in members[1:]:
        try:
            member.wait(timeout=1)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
            continue


def spawn(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdout_path: Path,
    stderr_path: Path,
    registry: ProcessRegistry = REGISTRY,
    as_user: tuple[int, int] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in a new session (its own process group) with output going to files.

    `as_user` (uid, gid): a root harness starts the child as that user, with no supplementary groups.
    """
    stdout_path.parent.mkdir(parents=True, exist_ok=True)
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=None if as_user is None else as_user[0],
                group=None if as_user is None else as_user[1],
                extra_groups=None if as_user is None else [],
            )
        except FileNotFoundError:
            msg = f"{argv[0]}: command not found"
            raise ToolMissingError(msg) from None
        except PermissionError:
            msg = f"{argv[0]}: not executable"
            raise ToolMissingError(msg) from None
    registry.add(proc)
    return proc


@dataclass(frozen=True)
class ToolRun:
    """How one bounded tool invocation ended; its output lives in the two files."""

    argv: tuple[str, ...]
    returncode: int | None
    duration_s: float
    timed_out: bool
    cancelled: bool
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        """The captured standard output as text."""
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        """The captured standard error as text."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


def run_tool(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout_s: float,
    stdout_path: Path,
    stderr_path: Path,
    cancel: threading.Event | None = None,
    registry: ProcessRegistry = REGISTRY,
    grace_s: float = 3.0,
) -> ToolRun:
    """Run a tool to completion, its timeout, or cancellation; whatever happens, none of it survives."""
    start = time.monotonic()
    proc = spawn(argv, cwd=cwd, env=env, stdout_path=stdout_path, stderr_path=stderr_path, registry=registry)
    timed_out = cancelled = False
    try:
        while proc.poll() is None:
            if time.monotonic() - start > timeout_s:
                timed_out = True
                break
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            time.sleep(POLL_S)
    finally:
        stop_many([proc], grace_s)
        registry.discard(proc)
    return ToolRun(
        argv=tuple(argv),
        returncode=None if (timed_out or cancelled) else proc.returncode,
        duration_s=time.monotonic() - start,
        timed_out=timed_out,
        cancelled=cancelled,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
    )


def tail(path: Path, max_bytes: int = 4000) -> str:
    """The last bytes of a captured output file, for error messages."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-max_bytes:].decode("utf-8", errors="replace")
