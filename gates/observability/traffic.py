"""G6's own traffic and faults: a short open-model Locust run (load/ machinery) and scheduled fault actions.

Each phase plans its arrivals with load.schedule, runs load/locustfile.py in its own Locust process
(never imported here) and keeps the driver's raw per-request CSV, so the cross-check compares the
target's counters with what the generator really sent and saw. Fault actions are HTTP requests (e.g.
switch a dependency to answering 500), signals to processes named by pid files under the
instance's data dir (only processes descended from the instance's own service process), and a
declared dependency frozen for the window (SIGSTOP of every process of it, SIGCONT at the end).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from chaos.faults.database import dependency_processes
from harness.errors import ToolFailedError
from harness.lifecycle import Instance, fill, target_env
from harness.procs import spawn, stop_many, tail
from load.profiles import ArrivalShape, RequestSpec
from load.runner import LOCUSTFILE
from load.schedule import plan_arrivals

POLL_S = 0.25
STARTUP_MARGIN_S = 60.0
HTTP_ACTION_TIMEOUT_S = 10.0
#: How long a paused dependency's processes may take to show as stopped.
PAUSE_CONFIRM_S = 2.0


@dataclass(frozen=True)
class Phase:
    """One traffic window: constant-rate open-model arrivals of a request mix."""

    name: str
    mix: dict[str, float]
    rate_per_min: float
    duration_s: float
    drain_s: float


def run_phase(
    phase: Phase,
    instance: Instance,
    requests: dict[str, RequestSpec],
    out_dir: Path,
    *,
    cancel: Any,
    during: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Run one open-model traffic phase; `during(elapsed_s)` is called while it runs; returns its record."""
    name, mix, duration_s, drain_s = phase.name, phase.mix, phase.duration_s, phase.drain_s
    out_dir.mkdir(parents=True, exist_ok=True)
    arrivals = plan_arrivals(ArrivalShape(kind="constant", rate_per_min=phase.rate_per_min), duration_s, mix)
    plan = {
        "profile": f"G6-{name}",
        "base_url": instance.base_url,
        "workers": 1,
        "max_in_flight": 200,
        "http_timeout_s": 10.0,
        "drain_s": drain_s,
        "duration_s": duration_s,
        "out_dir": str(out_dir),
        "requests": {key: spec.model_dump(mode="json") for key, spec in requests.items() if key in mix},
        "arrivals": arrivals,
    }
    plan_path = out_dir / "plan.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    limit_s = duration_s + drain_s + 15
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "1", "-r", "1"]
    argv += ["--run-time", f"{int(limit_s) + 1}s", "--stop-timeout", "10", "--exit-code-on-error", "0"]
    argv += ["--only-summary", "--loglevel", "WARNING"]
    env = target_env({"CERTIFY_LOAD_PLAN": str(plan_path), "HOME": str(out_dir)})
    started = time.monotonic()
    proc = spawn(
        argv, cwd=out_dir, env=env, stdout_path=out_dir / "locust.stdout.txt", stderr_path=out_dir / "locust.stderr.txt"
    )
    interrupted = ""
    try:
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed > limit_s + STARTUP_MARGIN_S:
                interrupted = "timed out"
                break
            if cancel.is_set():
                interrupted = "cancelled"
                break
            if during is not None:
                during(elapsed)
            time.sleep(POLL_S)
    finally:
        stop_many([proc], 10.0)
    driver_path = out_dir / "driver-w0.json"
    if interrupted or proc.returncode != 0 or not driver_path.is_file():
        why = interrupted or f"exited {proc.returncode}"
        msg = (
            f"G6 {name} traffic: Locust {why}; stderr: {tail(out_dir / 'locust.stderr.txt', 800).strip() or '(empty)'}"
        )
        raise ToolFailedError(msg)
    return {
        "phase": name,
        "planned_arrivals": len(arrivals),
        "rate_per_min": phase.rate_per_min,
        "duration_s": duration_s,
        "mix": mix,
        "driver": json.loads(driver_path.read_text(encoding="utf-8")),
        "locust_duration_s": round(time.monotonic() - started, 3),
    }


def http_action(action: Any, values: dict[str, str]) -> dict[str, Any]:
    """Perform one HTTP fault action (method, url template, JSON body); record what answered."""
    url = fill(action.url, values)
    data = None if action.json_body is None else json.dumps(action.json_body).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - the URL is a loopback instance or dependency
        url, data=data, method=action.method, headers={"Content-Type": "application/json"}
    )
    record: dict[str, Any] = {"at_unix": round(time.time(), 3), "action": "http", "method": action.method, "url": url}
    try:
        with urllib.request.urlopen(request, timeout=HTTP_ACTION_TIMEOUT_S) as resp:  # noqa: S310 - loopback
            record["status"] = resp.status
    except urllib.error.HTTPError as exc:
        record["status"] = exc.code
    except (urllib.error.URLError, OSError) as exc:
        record["status"] = None
        record["error"] = str(exc)[:200]
    return record


class Killer:
    """Sends a signal to processes named by pid files, `times` times, `interval_s` apart, round-robin."""

    def __init__(self, action: Any, instance: Instance) -> None:
        """Bind to a kill action and the instance whose data dir holds the pid files."""
        self.action = action
        self.instance = instance
        self.done = 0
        self.next_at_s = 0.0
        self.records: list[dict[str, Any]] = []

    def tick(self, elapsed_s: float) -> None:
        """Send the next signal if it is due."""
        if self.done >= self.action.times or elapsed_s < self.next_at_s:
            return
        self.next_at_s = elapsed_s + self.action.interval_s
        pid_files = sorted(self.instance.data_dir.glob(self.action.pid_file))
        record: dict[str, Any] = {"at_unix": round(time.time(), 3), "action": "signal", "signal": self.action.signal}
        self.done += 1
        if not pid_files:
            self.records.append({**record, "ok": False, "why": f"no file matches {self.action.pid_file}"})
            return
        path = pid_files[(self.done - 1) % len(pid_files)]
        record["pid_file"] = str(path.relative_to(self.instance.data_dir))
        self.records.append({**record, **self._send(path)})

    def _send(self, path: Path) -> dict[str, Any]:
        """Signal the pid in one file if it belongs to this instance."""
        try:
            pid = int(path.read_text(encoding="utf-8").split()[0])
        except (OSError, ValueError, IndexError):
            return {"ok": False, "why": "unreadable pid file"}
        owned = {child.pid for child in _descendants(self.instance.service.pid)}
        if pid not in owned:
            return {"pid": pid, "ok": False, "why": "pid is not a live process of this instance"}
        try:
            psutil.Process(pid).send_signal(getattr(signal, self.action.signal))
        except psutil.NoSuchProcess:
            return {"pid": pid, "ok": False, "why": "process already gone"}
        return {"pid": pid, "ok": True}


class Pauser:
    """Freezes every process of one of the instance's dependencies (SIGSTOP) and thaws them (SIGCONT)."""

    def __init__(self, action: Any, instance: Instance) -> None:
        """Bind to a pause action and the instance whose dependency it freezes."""
        self.action = action
        self.instance = instance
        self.frozen: list[psutil.Process] = []

    def _record(self, sig: str, pids: list[int], why: str = "") -> dict[str, Any]:
        """One fault-action record (the shape of a kill's), naming the dependency."""
        record: dict[str, Any] = {"at_unix": round(time.time(), 3), "action": "signal", "signal": sig}
        record["pid_file"] = f"dependency {self.action.dependency} ({len(pids)} processes)"
        return {**record, "pid": pids[0], "pids": pids, "ok": True} if pids else {**record, "ok": False, "why": why}

    def start(self) -> dict[str, Any]:
        """SIGSTOP the dependency's process group and every descendant (PostgreSQL backends have own sessions)."""
        proc = self.instance.procs.get(self.action.dependency)
        if proc is None or proc.poll() is not None:
            return self._record("SIGSTOP", [], f"dependency {self.action.dependency} is not running")
        self.frozen = dependency_processes(proc.pid)
        for member in self.frozen:
            with contextlib.suppress(psutil.Error):
                member.suspend()
        deadline = time.monotonic() + PAUSE_CONFIRM_S  # the signal is delivered asynchronously
        while time.monotonic() < deadline and any(_running(member) for member in self.frozen):
            time.sleep(0.01)
        record = self._record("SIGSTOP", [member.pid for member in self.frozen])
        record["still_running"] = [member.pid for member in self.frozen if _running(member)]
        return record

    def stop(self) -> dict[str, Any]:
        """SIGCONT every process frozen at the start (nothing when none was)."""
        frozen, self.frozen = self.frozen, []
        for member in frozen:
            with contextlib.suppress(psutil.Error):
                member.resume()
        return self._record("SIGCONT", [member.pid for member in frozen], "nothing was frozen")


def _running(member: psutil.Process) -> bool:
    """Whether a process exists and is not stopped (or a zombie)."""
    try:
        return member.status() not in {psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE}
    except psutil.Error:
        return False


def _descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of a process."""
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []
