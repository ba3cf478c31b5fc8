"""Once-a-second resource samples of every target process tree (and the load generator), the host, and GPU via NVML.

Runs as a thread in the harness process (no gevent here). Each row sums one role's process tree:
the service and its children, each dependency, and the Locust processes. A GPU is sampled through
NVML when the `pynvml` module and a driver are present; otherwise the record says why it is absent.

Host rows (host.csv, issue #23) are the evidence of contention a within-run statistic cannot see:
per sample, the whole host's busy CPU, what the sampled roles and the harness process (with its
other children) took of it, the rest ("other": processes outside the run, kernel threads
included), and the hypervisor's steal time. Every figure is in percent of one core (2 cores = 200),
the unit of the roles' `cpu_percent`.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

FIELDS = ("t_s", "role", "processes", "cpu_percent", "rss_bytes", "read_bytes", "write_bytes", "fds", "threads")
GPU_FIELDS = ("t_s", "gpu", "util_percent", "memory_used_bytes")
#: host.csv: the whole host per sample, each CPU figure in percent of one core over the interval since
#: the previous sample (so no row for the first sample); unix_s aligns rows with the drivers' clocks.
HOST_FIELDS = ("t_s", "unix_s", "cpus", "busy_pct", "roles_pct", "harness_pct", "other_pct", "steal_pct")
#: The host's busy CPU time: psutil.cpu_times fields (Linux's user and nice include guest time;
#: idle, iowait and steal are not busy; steal is recorded on its own).
BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq")

HostClock = Callable[[], tuple[float, float, float]]


def host_cpu_clock() -> tuple[float, float, float]:
    """(monotonic s, host busy CPU s, host steal s): CPU seconds since boot summed over every core."""
    times = psutil.cpu_times()
    busy_s = sum(float(getattr(times, name, 0.0)) for name in BUSY_FIELDS)
    return time.monotonic(), busy_s, float(getattr(times, "steal", 0.0))


def host_summary(rows: list[tuple[Any, ...]], window_unix: tuple[float, float] | None) -> dict[str, Any]:
    """Medians of the host rows whose interval ends inside the window (every row when it is None); pure.

    What a profile's result records (profile.json "host") and `certify compare` judges contention by.
    """
    picked = [dict(zip(HOST_FIELDS, row, strict=True)) for row in rows]
    if window_unix is not None:
        picked = [row for row in picked if window_unix[0] < float(row["unix_s"]) <= window_unix[1]]

    def median(name: str) -> float | None:
        return round(statistics.median(float(row[name]) for row in picked), 1) if picked else None

    return {
        "samples": len(picked),
        "window_unix": list(window_unix) if window_unix is not None else None,
        "cpus": int(picked[0]["cpus"]) if picked else None,
        "unit": "percent of one core",
        "busy_cpu_pct_median": median("busy_pct"),
        "roles_cpu_pct_median": median("roles_pct"),
        "harness_cpu_pct_median": median("harness_pct"),
        "other_cpu_pct_median": median("other_pct"),
        "other_cpu_pct_max": max((float(row["other_pct"]) for row in picked), default=None),
        "steal_pct_median": median("steal_pct"),
    }


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

    def __init__(
        self,
        roles: Callable[[], dict[str, subprocess.Popen[bytes]]],
        interval_s: float = 1.0,
        *,
        host_clock: HostClock = host_cpu_clock,
        harness_pid: int | None = None,
    ) -> None:
        """Bind to a function returning the current {role: root process}.

        host_clock reads the host's CPU seconds (tests pass a fake); harness_pid is the process whose
        tree, beyond the roles, counts as the harness's own CPU (default: this process).
        """
        self._roles = roles
        self._host_clock = host_clock
        self._harness_pid = os.getpid() if harness_pid is None else harness_pid
        self._host_prev: tuple[float, float, float] | None = None
        self.host_rows: list[tuple[Any, ...]] = []
        self.cpus = psutil.cpu_count() or 1
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
        """One row per role (and per GPU), and one host row."""
        t_s = round(time.monotonic() - self._start, 3)
        roles_cpu, role_pids = 0.0, set[int]()
        for role, root in sorted(self._roles().items()):
            totals = [0.0, 0, 0, 0, 0, 0]
            members = self._tree(root) if root.poll() is None else []
            self.pids_seen.setdefault(role, set()).update(proc.pid for proc in members)
            role_pids.update(proc.pid for proc in members)
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
            roles_cpu += totals[0]
        self._host_row(t_s, roles_cpu, self._harness_cpu(role_pids))
        for index, handle in enumerate(self._gpus):
            with contextlib.suppress(Exception):
                util = self.nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
                self.gpu_rows.append((t_s, index, util.gpu, memory.used))

    def _harness_cpu(self, role_pids: set[int]) -> float:
        """CPU (% of one core) of the harness process and its descendants that are not in a sampled role."""
        try:
            root = psutil.Process(self._harness_pid)
            fresh = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        total = 0.0
        for proc in fresh:
            if proc.pid in role_pids:
                continue
            with contextlib.suppress(psutil.Error):
                total += self._procs.setdefault(proc.pid, proc).cpu_percent()
        return total

    def _host_row(self, t_s: float, roles_pct: float, harness_pct: float) -> None:
        """The host row of the interval since the previous sample: busy, roles, harness, other, steal."""
        now, busy_s, steal_s = self._host_clock()
        previous, self._host_prev = self._host_prev, (now, busy_s, steal_s)
        if previous is None or now <= previous[0]:
            return
        wall_s = now - previous[0]
        busy_pct = max(0.0, 100 * (busy_s - previous[1]) / wall_s)
        steal_pct = max(0.0, 100 * (steal_s - previous[2]) / wall_s)
        # the roles' and the harness's per-process figures cover (almost) the same second; what the
        # host was busy with beyond them is contention from outside the run
        other_pct = max(0.0, busy_pct - roles_pct - harness_pct)
        self.host_rows.append(
            (
                t_s,
                round(time.time(), 3),
                self.cpus,
                round(busy_pct, 1),
                round(roles_pct, 1),
                round(harness_pct, 1),
                round(other_pct, 1),
                round(steal_pct, 1),
            )
        )

    def host_csv_text(self) -> str:
        """The host samples as CSV (HOST_FIELDS)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HOST_FIELDS)
        writer.writerows(self.host_rows)
        return out.getvalue()

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
