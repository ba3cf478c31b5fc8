"""Once-a-second resource samples of every target process tree (and the load generator), plus GPU via NVML.

Runs as a thread in the harness process (no gevent here). Each row sums one role's process tree:
the service and its children, each dependency, and the Locust processes. A GPU is sampled through
NVML when the `pynvml` module and a driver are present; otherwise the record says why it is absent.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

FIELDS = ("t_s", "role", "processes", "cpu_percent", "rss_bytes", "read_bytes", "write_bytes", "fds", "threads")
GPU_FIELDS = ("t_s", "gpu", "util_percent", "memory_used_bytes")


def gpu_probe() -> tuple[Any, list[Any], str]:
    """(nvml module or None, device handles, why absent or the device names)."""
    try:
        nvml: Any = importlib.import_module("pynvml")
    except ImportError:
        return None, [], "absent: the pynvml module is not installed (pip install nvidia-ml-py)"
    try:
        nvml.nvmlInit()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception as exc:
        return None, [], f"absent: NVML unavailable ({type(exc).__name__}: {exc})"
    if not handles:
        return None, [], "absent: NVML reports no GPU"
    names = ", ".join(str(nvml.nvmlDeviceGetName(handle)) for handle in handles)
    return nvml, handles, f"present: {names}"


class ResourceSampler:
    """Samples the process trees of named roles every second until stopped; also watches for deaths."""

    def __init__(self, roles: Callable[[], dict[str, subprocess.Popen[bytes]]], interval_s: float = 1.0) -> None:
        """Bind to a function returning the current {role: root process}."""
        self._roles = roles
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-resources", daemon=True)
        self._procs: dict[int, psutil.Process] = {}
        self._start = 0.0
        self.rows: list[tuple[Any, ...]] = []
        self.gpu_rows: list[tuple[Any, ...]] = []
        self.pids_seen: dict[str, set[int]] = {}
        self.nvml, self._gpus, self.gpu_note = gpu_probe()

    def start(self) -> None:
        """Begin sampling."""
        self._start = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self.nvml is not None:
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()

    def _loop(self) -> None:
        """Sample until stopped."""
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval_s)

    def _tree(self, root: subprocess.Popen[bytes]) -> list[psutil.Process]:
        """The root and its descendants, reusing Process objects so cpu_percent has a baseline."""
        try:
            fresh = [psutil.Process(root.pid), *psutil.Process(root.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        return [self._procs.setdefault(proc.pid, proc) for proc in fresh]

    def sample(self) -> None:
        """One row per role (and per GPU)."""
        t_s = round(time.monotonic() - self._start, 3)
        for role, root in sorted(self._roles().items()):
            totals = [0.0, 0, 0, 0, 0, 0]
            members = self._tree(root) if root.poll() is None else []
            self.pids_seen.setdefault(role, set()).update(proc.pid for proc in members)
            for proc in members:
                with contextlib.suppress(psutil.Error), proc.oneshot():
                    totals[0] += proc.cpu_percent()
                    totals[1] += proc.memory_info().rss
                    io_counters = proc.io_counters() if hasattr(proc, "io_counters") else None
                    totals[2] += io_counters.read_bytes if io_counters else 0
                    totals[3] += io_counters.write_bytes if io_counters else 0
                    totals[4] += proc.num_fds()
                    totals[5] += proc.num_threads()
            self.rows.append((t_s, role, len(members), round(totals[0], 1), *totals[1:]))
        for index, handle in enumerate(self._gpus):
            with contextlib.suppress(Exception):
                util = self.nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
                self.gpu_rows.append((t_s, index, util.gpu, memory.used))

    def csv_text(self) -> str:
        """The process samples as CSV."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIELDS)
        writer.writerows(self.rows)
        return out.getvalue()

    def gpu_csv_text(self) -> str:
        """The GPU samples as CSV (a header only when there is no GPU)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(GPU_FIELDS)
        writer.writerows(self.gpu_rows)
        return out.getvalue()
