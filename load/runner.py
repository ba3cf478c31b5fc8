"""One load run per `certify run`, shared by gates G2 and G3: each profile against a fresh instance.

Design (why a cache): G2 and G3 judge the same load, and a release run's soak lasts 8 hours, so the
profiles must run once even when both gates are selected. `evaluate` may read only its own gate's
evidence, so the gates cannot read each other's files. Instead, both gates' `collect` call
`shared_load_run`, which runs the profiles the first time (under a module lock) into a run-scoped
directory keyed by the run's work dir, and hands every later caller the same directory (or re-raises
the same failure). Each gate then copies those files into its own evidence.

Locust runs in its own process (`python -m locust -f load/locustfile.py`), never imported here.
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import importlib.util
import io
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.context import GateContext
from harness.errors import HarnessError, TargetError, ToolFailedError, ToolMissingError
from harness.lifecycle import Instance, free_port, target_env
from harness.procs import spawn, stop_many, tail
from load.profiles import EffectiveProfile, ProfilesTable, RequestSpec, effective
from load.resources import ResourceSampler, host_summary
from load.schedule import plan_arrivals
from load.stats import RAW_FIELDS

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
KIND_ORDER = {"arrival": 0, "drop": 0, "follow": 1, "poll": 2, "task": 3, "unfinished": 4}
STARTUP_MARGIN_S = 60.0
POLL_S = 0.2

_LOCK = threading.Lock()
_RUNS: dict[str, Path | HarnessError] = {}


def locust_version() -> str:
    """The installed Locust version, without importing Locust; NOT_RUN when it is missing."""
    if importlib.util.find_spec("locust") is None:
        msg = "Locust is not installed in the harness environment"
        raise ToolMissingError(msg, hint="pip install 'locust>=2.43'")
    return importlib.metadata.version("locust")


def shared_load_run(ctx: GateContext, settings: Any) -> tuple[Path, HarnessError | None]:
    """This run's load results directory and how the load run ended; the first call of a run runs it."""
    key = str(ctx.scratch.parent.parent)
    out = ctx.scratch.parent.parent / "load-run"
    with _LOCK:
        previous = _RUNS.get(key)
        if previous is None:
            try:
                LoadRun(ctx, settings, out).run()
            except HarnessError as exc:
                _RUNS[key] = exc
                return out, exc
            _RUNS[key] = out
            return out, None
    ctx.progress("reusing the load run of this certify run")
    return out, previous if isinstance(previous, HarnessError) else None


class LoadRun:
    """Runs every profile in order and writes plan, raw samples, resources and Locust output per profile."""

    def __init__(self, ctx: GateContext, settings: Any, out: Path) -> None:
        """Bind to the gate context that runs it, the load settings (G2's policy) and the output dir."""
        self.ctx = ctx
        self.settings = settings
        self.out = out
        self.requests: dict[str, RequestSpec] = dict(settings.requests)
        profiles: ProfilesTable = settings.profiles
        self.profiles = [
            effective(pid, spec, ctx.mode, settings.ci_scale, self.requests, ci_min_arrivals=settings.ci_min_arrivals)
            for pid, spec in profiles.items()
        ]

    def run(self) -> None:
        """Check prerequisites, then run each profile; a target failure stops the run with its evidence kept."""
        version = locust_version()
        self.ctx.record_tool("locust", version)
        if not self.requests:
            msg = "no requests declared: add [gates.G2.requests.<name>] tables (method, path, json_body, poll)"
            raise ToolMissingError(msg, hint="see the G2 section of the configuration reference")
        self.out.mkdir(parents=True, exist_ok=True)
        index: dict[str, Any] = {
            "mode": self.ctx.mode,
            "ci_scale": self.settings.ci_scale if self.ctx.mode == "ci" else 1.0,
            "locust": version,
            "workers": self.settings.workers,
            "profiles": [],
        }
        for profile in self.profiles:
            if self.ctx.cancel.is_set():
                msg = "the load run was cancelled"
                raise ToolFailedError(msg)
            self.ctx.progress(
                f"{profile.id}: {profile.title}, {profile.duration_s:g} s"
                + (" (ci-scaled)" if profile.scaled else "")
                + (f" at {profile.rate_scale:g}x rate" if profile.rate_scale != 1 else "")
            )
            self._profile(profile)
            index["profiles"].append(profile.id)
            (self.out / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def _profile(self, profile: EffectiveProfile) -> None:
        """One profile against a fresh instance of the target."""
        pdir = self.out / profile.id
        pdir.mkdir(parents=True, exist_ok=True)
        arrivals = plan_arrivals(profile.shape, profile.duration_s, profile.mix)
        (pdir / "plan.json.gz").write_bytes(_gzip(json.dumps(arrivals, separators=(",", ":")).encode()))
        instance_files: list[Path] = []
        death: dict[str, Any] | None = None
        with self.ctx.instance() as instance, self.ctx.observed(profile.id, instance.base_url):
            started = time.time()
            record, sampler, death = self._drive(profile, instance, arrivals, pdir)
            info = {"raw_csv_gz": str(pdir / "raw.csv.gz"), "instance": f"127.0.0.1:{instance.port}"}
            self.ctx.observe_window(profile.id, "load", started, time.time(), info)
            instance_files = instance.output_files()
        for path in instance_files:
            (pdir / "instance").mkdir(exist_ok=True)
            (pdir / "instance" / path.name).write_bytes(path.read_bytes())
        (pdir / "resources.csv").write_text(sampler.csv_text(), encoding="utf-8")
        (pdir / "gpu.csv").write_text(sampler.gpu_csv_text(), encoding="utf-8")
        (pdir / "host.csv").write_text(sampler.host_csv_text(), encoding="utf-8")
        drivers = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(pdir.glob("driver-w*.json"))]
        (pdir / "raw.csv.gz").write_bytes(_gzip(_merge_raw(sorted(pdir.glob("raw-w*.csv")))))
        for path in pdir.glob("raw-w*.csv"):
            path.unlink()
        seen = [pids for role, pids in sampler.pids_seen.items() if role.startswith("locust")]
        locust_pids = sorted(set().union(*seen) | {record["pid"], *record["worker_pids"]})
        summary = {
            **profile.model_dump(mode="json"),
            "planned_arrivals": len(arrivals),
            "workers": self.settings.workers,
            "remote_workers": self.settings.remote.workers if self.settings.remote else 0,
            "max_in_flight": self.settings.max_in_flight,
            "http_timeout_s": self.settings.http_timeout_s,
            "drain_s": self.settings.drain_s,
            "late_bound_s": self.settings.late_bound_ms / 1000,
            "max_late_fraction": self.settings.max_late_fraction,
            "min_delivered_ratio": self.settings.min_delivered_ratio,
            "confidence": self.settings.confidence,
            "locust": record,
            "locust_pids": locust_pids,
            "drivers": drivers,
            "gpu": sampler.gpu_note,
            "host": host_summary(sampler.host_rows, measured_window(drivers, profile)),
            "target_death": death,
        }
        (pdir / "profile.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if death is not None:
            stderr = "".join(tail(path, 1200) for path in instance_files if "stderr" in path.name).strip()
            msg = (
                f"{profile.id}: the target's {death['role']} process exited with code {death['returncode']} "
                f"{death['at_s']:.1f} s into the profile; captured stderr: {stderr[-1200:] or '(empty)'}"
            )
            raise TargetError(msg)
        if record["returncode"] != 0 or len(drivers) < self._driver_count():
            why = "timed out" if record["timed_out"] else f"exited {record['returncode']}"
            msg = (
                f"{profile.id}: Locust {why} with {len(drivers)} driver report(s); "
                f"stderr: {tail(pdir / 'locust.stderr.txt', 800).strip() or '(empty)'}"
            )
            raise ToolFailedError(msg)

    def _driver_count(self) -> int:
        """Drivers per profile: one per local worker process (or the single Locust process) plus remote workers."""
        local = int(self.settings.workers)
        remote = int(self.settings.remote.workers) if self.settings.remote else 0
        return local + remote if remote else max(1, local)

    def _drive(
        self, profile: EffectiveProfile, instance: Instance, arrivals: list[list[object]], pdir: Path
    ) -> tuple[dict[str, Any], ResourceSampler, dict[str, Any] | None]:
        """Run Locust on the plan while sampling resources and watching the target's processes."""
        workers = self.settings.workers
        remote = self.settings.remote
        drivers = self._driver_count()
        plan = {
            "profile": profile.id,
            "base_url": instance.base_url,
            "remote_base_url": remote.target_url.replace("{port}", str(instance.port)) if remote else None,
            "workers": drivers,
            "max_in_flight": self.settings.max_in_flight,
            "http_timeout_s": self.settings.http_timeout_s,
            "drain_s": self.settings.drain_s,
            "duration_s": profile.duration_s,
            "out_dir": str(pdir),
            "requests": {name: spec.model_dump(mode="json") for name, spec in self.requests.items()},
            "arrivals": arrivals,
        }
        plan_path = pdir / "locust-plan.json"
        plan_path.write_text(json.dumps(plan), encoding="utf-8")
        limit_s = profile.duration_s + self.settings.drain_s + 15 + (remote.wait_s if remote else 0)
        locust = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
        argv = [*locust, "--headless", "-u", str(drivers), "-r", str(drivers)]
        argv += ["--run-time", f"{int(limit_s) + 1}s", "--stop-timeout", "10", "--exit-code-on-error", "0"]
        argv += ["--only-summary", "--loglevel", "WARNING"]
        worker_argv: list[str] = []
        if remote:
            master_args, worker_argv = _distributed_argv(locust, remote, drivers)
            argv += master_args
            self.ctx.progress(f"{profile.id}: waiting up to {remote.wait_s:g} s for {remote.workers} remote worker(s)")
        elif workers:
            port = free_port()
            argv += ["--processes", str(workers), "--master-bind-port", str(port), "--master-port", str(port)]
        env = target_env({"CERTIFY_LOAD_PLAN": str(plan_path), "HOME": str(pdir)})
        started = time.monotonic()
        proc = spawn(
            argv, cwd=pdir, env=env, stdout_path=pdir / "locust.stdout.txt", stderr_path=pdir / "locust.stderr.txt"
        )
        local_workers = [
            spawn(
                worker_argv,
                cwd=pdir,
                env=env,
                stdout_path=pdir / f"locust-worker{index}.stdout.txt",
                stderr_path=pdir / f"locust-worker{index}.stderr.txt",
            )
            for index in range(workers if remote else 0)
        ]
        roles = {**{f"target-{name}": p for name, p in instance.procs.items()}, "locust": proc}
        roles.update({f"locust-worker{index}": worker for index, worker in enumerate(local_workers)})
        sampler = ResourceSampler(lambda: roles)
        sampler.start()
        death: dict[str, Any] | None = None
        timed_out = cancelled = False
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - started
                dead = [(name, p) for name, p in instance.procs.items() if p.poll() is not None]
                if dead:
                    name, dead_proc = dead[0]
                    death = {"role": name, "returncode": dead_proc.returncode, "at_s": round(elapsed, 3)}
                    break
                if elapsed > limit_s + STARTUP_MARGIN_S:
                    timed_out = True
                    break
                if self.ctx.cancel.is_set():
                    cancelled = True
                    break
                time.sleep(POLL_S)
        finally:
            stop_many([proc, *local_workers], 10.0)
            sampler.stop()
        record = {
            "argv": argv,
            "pid": proc.pid,
            "worker_argv": worker_argv,
            "worker_pids": [worker.pid for worker in local_workers],
            "returncode": None if (timed_out or cancelled or death) else proc.returncode,
            "duration_s": round(time.monotonic() - started, 3),
            "timed_out": timed_out,
            "cancelled": cancelled,
        }
        return record, sampler, death


def measured_window(drivers: list[dict[str, Any]], profile: EffectiveProfile) -> tuple[float, float] | None:
    """The profile's measured window in Unix time (warm-up excluded), from the local drivers' start; None without one.

    Remote drivers start on other hosts' clocks, so only this host's drivers place the window.
    """
    starts = [float(d["started_unix"]) for d in drivers if not d.get("remote") and "started_unix" in d]
    if not starts:
        return None
    return round(min(starts) + profile.warmup_s, 3), round(min(starts) + profile.duration_s, 3)


def _distributed_argv(locust: list[str], remote: Any, drivers: int) -> tuple[list[str], list[str]]:
    """Locust's distributed mode: the master's extra arguments and a local worker's argv.

    The master waits for every driver, local and remote alike; local workers connect over loopback
    when the master listens on every interface.
    """
    port = str(remote.master_port)
    master = ["--master", "--master-bind-host", remote.master_bind, "--master-bind-port", port]
    master += ["--expect-workers", str(drivers), "--expect-workers-max-wait", f"{remote.wait_s:g}"]
    wildcards = ("0.0.0.0", "::", "*")  # noqa: S104 - recognising the wildcard, not binding to it
    host = "127.0.0.1" if remote.master_bind in wildcards else remote.master_bind
    return master, [*locust, "--worker", "--master-host", host, "--master-port", port, "--loglevel", "WARNING"]


def _gzip(data: bytes) -> bytes:
    """Deterministic gzip (no timestamp, no file name)."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def _merge_raw(paths: list[Path]) -> bytes:
    """One CSV of every worker's rows, ordered by planned time, arrival and kind."""
    rows: list[list[str]] = []
    for path in paths:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            rows.extend(reader)
    rows.sort(key=lambda row: (float(row[3]), int(row[1]), KIND_ORDER.get(row[0], 9), float(row[4])))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RAW_FIELDS)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def publish(ctx: GateContext, out: Path) -> list[str]:
    """Copy the shared load run's files into this gate's evidence under load/; return their names."""
    names: list[str] = []
    if not out.is_dir():
        return names
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "locust-plan.json"):
        name = f"load/{path.relative_to(out).as_posix()}"
        ctx.copy_in(name, path)
        names.append(name)
    return names
