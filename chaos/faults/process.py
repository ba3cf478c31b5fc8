"""C1: kill a process of the target, found through a pid file under its data dir."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any, ClassVar

import psutil

from chaos.experiments import KillFault
from chaos.faults import Injector
from chaos.instance import ChaosInstance
from harness.errors import TargetError

#: How long to wait for the pid file to name a live process of the instance.
PID_WAIT_S = 15.0


def instance_pid(
    inst: ChaosInstance, pattern: str, wait_s: float = PID_WAIT_S, rng: random.Random | None = None
) -> tuple[int, str]:
    """The pid named by a pid file matching `pattern` that is a live process of this instance.

    Without `rng` the first such file (in name order); with it a seeded random one of them (#25: a
    rerun with the same seed kills the same slot). Only the instance's own processes (the service and
    its descendants) may be signalled: a stale pid file naming some other process is never trusted.
    """
    deadline = time.monotonic() + wait_s
    last = f"no file matches {pattern!r} under the data dir"
    while True:
        family = _family(inst)
        live: list[tuple[int, str]] = []
        for path in sorted(inst.data_dir.glob(pattern)):
            try:
                pid = int(path.read_text(encoding="ascii").strip())
            except (OSError, ValueError):
                continue
            if pid in family:
                live.append((pid, str(path.relative_to(inst.data_dir))))
            else:
                last = f"{path.name} names pid {pid}, which is not a live process of this instance"
        if live:
            return rng.choice(live) if rng is not None else live[0]
        if time.monotonic() >= deadline:
            raise TargetError(f"cannot find the process to fault: {last}")
        time.sleep(0.1)


def _family(inst: ChaosInstance) -> set[int]:
    """Pids of the service process and all its live descendants."""
    try:
        root = psutil.Process(inst.service.pid)
        members = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    return {member.pid for member in members if member.is_running() and member.status() != psutil.STATUS_ZOMBIE}


def alive(pid: int) -> bool:
    """Whether a pid is a running (non-zombie) process."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


class KillInjector(Injector):
    """Sends the configured signal to the process named by the pid file (SIGKILL: no clean-up possible)."""

    instantaneous: ClassVar[bool] = True

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Signal the process and confirm it is gone (SIGKILL) within a second."""
        assert isinstance(self.spec, KillFault)  # noqa: S101 - the registry pairs spec and injector
        pid, pid_file = instance_pid(inst, self.spec.pid_file, rng=self.rng)
        sig = signal.Signals[self.spec.signal]
        name = _name(pid)
        psutil.Process(pid).send_signal(sig)
        deadline = time.monotonic() + 1.0
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"pid": pid, "pid_file": pid_file, "process": name, "signal": sig.name, "gone": not alive(pid)}

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Nothing to undo: recovering is the target's job."""
        del inst
        return {"action": "none (a kill cannot be undone; the target must restart the process)"}


def _name(pid: int) -> str:
    """A short description of a process (its command line)."""
    try:
        return " ".join(Path(part).name if i == 0 else part for i, part in enumerate(psutil.Process(pid).cmdline()))[
            :160
        ]
    except psutil.Error:
        return "?"
