"""C2: faults on a declared dependency itself: its process crashed and started again, a PostgreSQL table locked.

`dependency_kill` signals the dependency's whole process group (for PostgreSQL the postmaster and
every backend: a crash, no shutdown checkpoint), confirms the processes are gone, and when the
window ends starts the dependency again exactly as the instance first did (same argv, port and
data, through `ChaosInstance.relaunch`), waiting until it is ready: the service must reconnect on
its own. `pg_lock` opens a psql session to the real database (not through the proxy), takes a lock
on a table in an open transaction and holds it for the window; every query of the service on that
table waits behind it, so its pooled connections are all tied up; removing the fault rolls back.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from typing import Any

import psutil

from chaos.experiments import DependencyKillFault, PgLockFault
from chaos.faults import Injector
from chaos.instance import ChaosInstance, DependencyRun
from harness import postgres
from harness.errors import ConfigError, TargetError, ToolMissingError

#: How long a signalled dependency's processes may take to be gone.
GONE_WAIT_S = 10.0
#: How long psql may take to connect and report the lock held.
LOCK_WAIT_S = 10.0
#: The line psql prints once the lock is held.
LOCKED_MARK = "chaos-lock-held"


def dependency_run(inst: ChaosInstance, dependency: str) -> DependencyRun:
    """How the named dependency of this instance was started; a clear error when it has none of that name."""
    run = inst.dependency_runs.get(dependency)
    if run is None:
        known = ", ".join(sorted(inst.dependency_runs)) or "none"
        msg = f"no [service.dependencies.{dependency}] to fault (dependencies: {known})"
        raise ConfigError(msg)
    return run


def dependency_processes(pid: int) -> list[psutil.Process]:
    """The live processes of a dependency: its process group and every descendant.

    PostgreSQL's backends each start a session of their own, so the group alone misses them.
    """
    members: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            members[proc.pid] = proc
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pid:
                members[proc.pid] = proc
    live = []
    for proc in members.values():
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                live.append(proc)
    return live


def _alive(members: list[psutil.Process]) -> list[int]:
    """The pids of these processes that still run (zombies count as gone)."""
    left = []
    for member in members:
        with contextlib.suppress(psutil.Error):
            if member.is_running() and member.status() != psutil.STATUS_ZOMBIE:
                left.append(member.pid)
    return left


class DependencyKillInjector(Injector):
    """Signals a dependency's process group; on removal starts it again as it was first started."""

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Signal the group and wait until every process of it is gone (a dependency that survives is an error)."""
        assert isinstance(self.spec, DependencyKillFault)  # noqa: S101 - the registry pairs spec and injector
        dependency_run(inst, self.spec.dependency)
        proc = inst.procs.get(self.spec.dependency)
        if proc is None or proc.poll() is not None:
            msg = f"dependency {self.spec.dependency} is not running: nothing to kill"
            raise TargetError(msg)
        members = dependency_processes(proc.pid)
        sig = signal.Signals[self.spec.signal]
        os.killpg(proc.pid, sig)
        for member in members:  # the backends in sessions of their own
            with contextlib.suppress(psutil.Error):
                member.send_signal(sig)
        deadline = time.monotonic() + GONE_WAIT_S
        while time.monotonic() < deadline and (proc.poll() is None or _alive(members)):
            time.sleep(0.02)
        left = _alive(members)
        if proc.poll() is None or left:
            msg = (
                f"dependency {self.spec.dependency}: processes {left or [proc.pid]} still run "
                f"{GONE_WAIT_S:g} s after {sig.name}"
            )
            raise TargetError(msg)
        return {"pid": proc.pid, "signal": sig.name, "processes": len(members), "exit_code": proc.returncode}

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Start the dependency again (nothing to do when it still runs, e.g. after a failed inject)."""
        assert isinstance(self.spec, DependencyKillFault)  # noqa: S101 - the registry pairs spec and injector
        proc = inst.procs.get(self.spec.dependency)
        if proc is not None and proc.poll() is None:
            return {"action": "none (the dependency is running)", "pid": proc.pid}
        if inst.relaunch is None:
            msg = "the instance cannot start its dependencies again (no launcher)"
            raise TargetError(msg)
        ready_s = inst.relaunch(self.spec.dependency)
        return {"action": "started again", "pid": inst.procs[self.spec.dependency].pid, "ready_s": round(ready_s, 3)}


class PgLockInjector(Injector):
    """Holds a lock on a table of a PostgreSQL dependency in an open psql transaction for the window."""

    def __init__(self, spec: Any) -> None:
        """Bind to the fault table; the psql session lives between inject and remove."""
        super().__init__(spec)
        self._session: subprocess.Popen[str] | None = None

    def unavailable(self) -> str | None:
        """psql comes with Debian's postgresql package, beside initdb."""
        try:
            bindir = postgres.find_bindir()
        except ToolMissingError as exc:
            return exc.message
        return None if (bindir / "psql").is_file() else f"no psql in {bindir} ({postgres.INSTALL_HINT})"

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Connect to the real database, lock the table, and wait for psql to say the lock is held."""
        assert isinstance(self.spec, PgLockFault)  # noqa: S101 - the registry pairs spec and injector
        run = dependency_run(inst, self.spec.dependency)
        if run.kind != "postgresql":
            msg = f"pg_lock needs a dependency of kind postgresql; {self.spec.dependency} is {run.kind}"
            raise ConfigError(msg)
        psql = postgres.find_bindir() / "psql"
        argv = [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(run.port)]
        argv += ["-U", postgres.APP_ROLE, "-d", run.database]
        self._session = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/"
        )
        assert self._session.stdin is not None  # noqa: S101 - PIPE was asked for
        assert self._session.stdout is not None  # noqa: S101 - PIPE was asked for
        started = time.monotonic()
        self._session.stdin.write(
            f"BEGIN;\nLOCK TABLE {self.spec.table} IN {self.spec.mode} MODE;\nSELECT '{LOCKED_MARK}';\n"
        )
        self._session.stdin.flush()
        ready, _w, _x = select.select([self._session.stdout], [], [], LOCK_WAIT_S)
        line = self._session.stdout.readline().strip() if ready else ""
        if line != LOCKED_MARK:
            why = line or self._why_not(self._session)
            msg = f"psql did not take the {self.spec.mode} lock on {self.spec.table} within {LOCK_WAIT_S:g} s: {why}"
            raise TargetError(msg[:400])
        return {
            "table": self.spec.table,
            "mode": self.spec.mode,
            "psql_pid": self._session.pid,
            "locked_after_s": round(time.monotonic() - started, 3),
        }

    @staticmethod
    def _why_not(session: subprocess.Popen[str]) -> str:
        """psql's last error line once it has exited (ON_ERROR_STOP), or that it did not answer."""
        try:
            session.wait(timeout=LOCK_WAIT_S / 2)
        except subprocess.TimeoutExpired:
            return "no answer"
        assert session.stderr is not None  # noqa: S101 - PIPE was asked for
        lines = session.stderr.read().strip().splitlines()
        return lines[-1] if lines else f"psql exited {session.returncode}"

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Roll the transaction back (the lock goes with it) and end the session; safe when inject failed."""
        del inst
        session, self._session = self._session, None
        if session is None:
            return {"action": "none (no session was opened)"}
        exited = session.poll() is not None  # the lock was never taken (psql stopped at its error)
        with contextlib.suppress(OSError, ValueError):
            assert session.stdin is not None  # noqa: S101 - PIPE was asked for
            session.stdin.write("ROLLBACK;\n\\q\n")
            session.stdin.close()
        try:
            code = session.wait(timeout=LOCK_WAIT_S)
        except subprocess.TimeoutExpired:
            session.kill()
            code = session.wait(timeout=LOCK_WAIT_S)
        for stream in (session.stdout, session.stderr):
            if stream is not None:
                stream.close()
        return {"action": "none (psql had exited)" if exited else "rolled back", "psql_exit": code}
