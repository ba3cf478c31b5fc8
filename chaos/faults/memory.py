"""C4: memory pressure on a target process (RLIMIT_AS), and GPU pressure where a GPU exists."""

from __future__ import annotations

import glob
import os
import shutil
from typing import Any

import psutil

from chaos.experiments import MemoryFault
from chaos.faults import Injector
from chaos.faults.process import alive, instance_pid
from chaos.instance import ChaosInstance
from chaos.schedule import EXCLUSIVE
from harness.errors import HarnessError

MIB = 1 << 20


class MemoryLimitInjector(Injector):
    """Caps a process's address space at its current size (+ headroom): its next growth fails."""

    def __init__(self, spec: MemoryFault) -> None:
        """Nothing limited yet."""
        super().__init__(spec)
        self._pid: int | None = None
        self._old: tuple[int, int] | None = None

    def unavailable(self) -> str | None:
        """prlimit on another process needs psutil's rlimit (Linux)."""
        if not hasattr(psutil.Process, "rlimit") or not hasattr(psutil, "RLIMIT_AS"):
            return "setting RLIMIT_AS on another process needs Linux prlimit (psutil.Process.rlimit)"
        return None

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Set RLIMIT_AS (soft and hard) on the process named by the pid file."""
        assert isinstance(self.spec, MemoryFault)  # noqa: S101 - the registry pairs spec and injector
        pid, pid_file = instance_pid(inst, self.spec.pid_file)
        process = psutil.Process(pid)
        vms = process.memory_info().vms
        limit = vms + self.spec.headroom_mb * MIB
        self._pid, self._old = pid, process.rlimit(psutil.RLIMIT_AS)
        process.rlimit(psutil.RLIMIT_AS, (limit, limit))
        return {"pid": pid, "pid_file": pid_file, "vms_bytes": vms, "limit_bytes": limit, "previous": list(self._old)}

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Restore the old limit if the process is still alive; say whether it survived."""
        del inst
        if self._pid is None or self._old is None:
            return {"action": "none (no limit was set)"}
        survived = alive(self._pid)
        if survived:
            try:
                psutil.Process(self._pid).rlimit(psutil.RLIMIT_AS, self._old)
            except psutil.Error:
                survived = False
        facts = {"pid": self._pid, "survived_fault": survived, "restored": list(self._old) if survived else None}
        self._pid = self._old = None
        return facts


def gpu_present() -> str | None:
    """A description of the GPU found (device node or nvidia-smi), or None."""
    nodes = sorted(glob.glob("/dev/nvidia[0-9]*")) + sorted(glob.glob("/dev/dri/renderD*"))
    if nodes:
        return f"device nodes {', '.join(nodes)}"
    if shutil.which("nvidia-smi") or os.path.isdir("/proc/driver/nvidia"):
        return "an NVIDIA driver"
    return None


class GpuPressureInjector(Injector):
    """GPU memory pressure: not applicable without a GPU; with one, no injector exists yet (NOT_RUN)."""

    def resources(self) -> frozenset[str]:
        """The GPU is the machine's, not the instance's: GPU pressure would run alone."""
        return frozenset({EXCLUSIVE})

    def not_applicable(self) -> str | None:
        """No GPU on this machine: there is no GPU memory to pressure."""
        if gpu_present() is None:
            return "no GPU on this machine (no /dev/nvidia*, /dev/dri/renderD*, nvidia-smi or NVIDIA driver)"
        return None

    def unavailable(self) -> str | None:
        """With a GPU present, the harness has no GPU pressure injector."""
        found = gpu_present()
        return None if found is None else f"a GPU is present ({found}) but the harness has no GPU pressure injector"

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Never reached: the experiment is NOT_APPLICABLE or NOT_RUN."""
        del inst
        raise HarnessError("the harness has no GPU pressure injector")

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Nothing was injected."""
        del inst
        return {"action": "none"}
