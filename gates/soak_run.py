"""Collect side of the SOAK gate: the P4 soak load and the self-healing loop on one long-lived instance.

One instance of the target (started with the playbook gate's `service_args`, so its healer and fault
injection are on) runs for the whole soak. The soak is cut into segments of at most `segment_s`
(an hour by default): each segment is one Locust run of the P4 profile at its declared rate (never
sped up), while two threads run beside it: a sampler reading the service process's RSS and open
file descriptors from /proc (measured by the harness, never asked of the target) and the healing
loop, which injects one of the target's tier-1 playbook faults every `fault_interval_s` and watches,
with the playbook gate's own probes, until the target has healed it. Each finished segment is
written into the pack at once, with a progress file naming every segment file's sha256, so a soak
whose harness dies can be resumed from its pack (`certify soak --resume PACK`).

Nothing here decides a verdict; gates/soak_judge.py does, from the stored files.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gates.playbooks.config import PlaybookPolicy
from gates.playbooks.instances import PlaybookInstances
from gates.playbooks.judge import sample_healthy
from gates.playbooks.observe import call, field, observe
from harness.errors import PackError, TargetError, ToolMissingError
from load.profiles import effective
from load.runner import LoadRun, _gzip, _merge_raw, locust_version
from load.schedule import plan_arrivals

if TYPE_CHECKING:
    from gates.soak import SoakPolicy
    from harness.context import GateContext
    from harness.lifecycle import Instance

PLAN = "soak_plan.json"
PROGRESS = "progress.json"
PROC_FIELDS = ("t", "rss_kb", "fds", "group_rss_kb", "group_procs", "group_fds")
SAMPLE_HEAL_S = 0.5


@dataclass(frozen=True)
class SoakRequest:
    """What `certify soak` asked for: hours (None: the policy's for the mode) and a pack to resume from."""

    hours: float | None = None
    resume_from: Path | None = None


#: Set by `certify soak` before its run starts; `certify run --gates SOAK` leaves it empty.
REQUEST = SoakRequest()


def set_request(request: SoakRequest) -> None:
    """Record what `certify soak` asked for, for the SOAK gate's collect of this process."""
    global REQUEST  # noqa: PLW0603 - one request per process, set once by the CLI before the run
    REQUEST = request


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def proc_rss_kb(pid: int) -> int | None:
    """VmRSS of a process in KiB from /proc/<pid>/status (None when it is gone or unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return 0


def proc_fds(pid: int) -> int | None:
    """How many file descriptors a process holds open (entries of /proc/<pid>/fd; None when unreadable)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def group_totals(pgid: int) -> tuple[int, int, int]:
    """Summed VmRSS (KiB), count, and summed open fds of the processes in a process group."""
    total = count = fds = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != pgid:
                continue
        except OSError:
            continue
        rss = proc_rss_kb(int(entry))
        if rss is not None:
            total, count = total + rss, count + 1
            fds += proc_fds(int(entry)) or 0
    return total, count, fds


class ProcSampler:
    """Samples the service process's RSS and fd count, and its process group's, every `interval_s` in a thread."""

    def __init__(self, pid: int, interval_s: float, t0: float) -> None:
        """Bind to the service's pid; t is seconds since `t0` (the soak's start, monotonic)."""
        self.pid = pid
        self.interval_s = interval_s
        self.t0 = t0
        self.rows: list[tuple[float, int | None, int | None, int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-proc", daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and take one last sample."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        """One sample now, then every interval until stopped, and a last one."""
        pgid = os.getpgid(self.pid)
        while True:
            self._sample(pgid)
            if self._stop.wait(self.interval_s):
                self._sample(pgid)
                return

    def _sample(self, pgid: int) -> None:
        """One row: the service pid's RSS and fds, its process group's RSS, process count and fds."""
        total, count, fds = group_totals(pgid)
        t = round(time.monotonic() - self.t0, 3)
        self.rows.append((t, proc_rss_kb(self.pid), proc_fds(self.pid), total, count, fds))

    def csv_text(self) -> str:
        """The samples as CSV (empty cells for a value that could not be read)."""
        lines = [",".join(PROC_FIELDS)]
        lines += [",".join("" if v is None else str(v) for v in row) for row in self.rows]
        return "\n".join(lines) + "\n"


class HealingLoop:
    """Injects a tier-1 playbook fault every interval and watches, with the harness's probes, for the heal."""

    def __init__(
        self,
        pb: PlaybookPolicy,
        policy: SoakPolicy,
        playbooks: list[str],
        instance: Instance,
        *,
        interval_s: float,
        cancel: threading.Event,
    ) -> None:
        """Bind to PB's policy (probes, API), the soak policy, the instance, the pace and the cancel flag."""
        self.interval_s = interval_s
        self.cancel = cancel
        self.pb = pb
        self.policy = policy
        self.playbooks = playbooks
        self.instance = instance
        self.heals: list[dict[str, Any]] = []
        self.next_index = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, first_index: int) -> None:
        """Start the loop; the first fault is the playbook at `first_index` of the rotation."""
        self.next_index = first_index
        self._thread = threading.Thread(target=self._run, name="soak-heal", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Inject no more; a heal being watched is watched to its end (cut short only when the run is cancelled)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.policy.heal_budget_s + 30)

    def _run(self) -> None:
        """Wait an interval, inject, watch; until stopped."""
        while not self._stop.wait(self.interval_s):
            if not self.playbooks:
                return
            playbook = self.playbooks[self.next_index % len(self.playbooks)]
            self.next_index += 1
            self.heals.append(self._one(playbook))

    def _incidents(self) -> list[dict[str, Any]]:
        """The target's incidents as it reports them."""
        api = self.pb.target_api
        items = field(call(self.instance.port, api.incidents)["body"], api.incidents_items)
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def _sample(self, names: tuple[str, ...]) -> dict[str, Any]:
        """One observation of the named probes."""
        obs = {name: observe(self.instance.port, self.instance.data_dir, self.pb.probes[name]) for name in names}
        return {"at": round(time.time(), 3), "obs": obs}

    def _one(self, playbook: str) -> dict[str, Any]:
        """Inject one fault and watch until its incident is final and the probes are healthy, or the budget ends."""
        api = self.pb.target_api
        check = self.pb.playbooks[playbook]
        names = (*check.probes, *self.pb.health)
        watermark = max((int(i.get(api.incident_id_field) or 0) for i in self._incidents()), default=0)
        injected_at = time.time()
        answer = call(self.instance.port, api.inject, {"id": playbook}, {**(api.inject.body or {}), **check.options})
        record: dict[str, Any] = {
            "playbook": playbook,
            "inject_at": round(injected_at, 3),
            "inject_status": answer["status"],
            "inject_error": answer["error"],
            "samples": [],
            "incidents": [],
        }
        deadline = injected_at + self.policy.heal_budget_s
        while time.time() < deadline:
            sample = self._sample(names)
            record["samples"].append(sample)
            mine = [
                i
                for i in self._incidents()
                if int(i.get(api.incident_id_field) or 0) > watermark and i.get(api.incident_playbook_field) == playbook
            ]
            record["incidents"] = mine
            # A rolled-back attempt is final but not a heal: the healer may try again within the budget.
            healed = [i for i in mine if i.get(api.incident_status_field) in api.healed]
            if healed and sample_healthy(self.pb, names, sample):
                break
            if self.cancel.wait(SAMPLE_HEAL_S):
                record["cut_short"] = True
                break
        record["ended_at"] = round(time.time(), 3)
        return record


def tier_one_playbooks(pb: PlaybookPolicy, instance: Instance, wanted: tuple[str, ...]) -> tuple[list[str], Any]:
    """The playbooks the loop rotates through: `wanted`, or every listed tier-1 playbook PB declares."""
    answer = call(instance.port, pb.target_api.list_playbooks)
    items = field(answer.get("body"), pb.target_api.list_items)
    listed = {
        str(item.get(pb.target_api.id_field)): int(item.get(pb.target_api.tier_field) or 1)
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict)
    }
    if wanted:
        return [name for name in wanted if name in pb.playbooks], listed
    return sorted(name for name, tier in listed.items() if tier == 1 and name in pb.playbooks), listed


class SoakRun:
    """Runs the soak's segments on one instance, writing each into the pack as it finishes."""

    def __init__(self, ctx: GateContext, policy: SoakPolicy, request: SoakRequest) -> None:
        """Bind to the gate context, the soak policy and what `certify soak` asked for."""
        self.ctx = ctx
        self.policy = policy
        self.request = request
        self.pb = ctx.config.policy("PB")
        self.load = ctx.config.policy("G2")
        self.segments: list[dict[str, Any]] = []
        #: Every segment file written or carried over, by gate-relative name (the soak report reads them).
        self.files: dict[str, bytes] = {}
        self.plan: dict[str, Any] | None = None
        self.fault_interval_s = policy.fault_interval_s

    def requested_hours(self, carried: dict[str, Any] | None) -> float:
        """Hours asked for: --hours, else the resumed pack's, else the policy's for this mode."""
        if self.request.hours is not None:
            return self.request.hours
        if carried is not None:
            return float(carried["plan"]["requested_hours"])
        return self.policy.hours if self.ctx.mode == "release" else self.policy.ci_hours

    def run(self) -> None:
        """Plan, carry over a resumed pack's segments, then run segments until the requested hours are soaked."""
        self.ctx.record_tool("locust", locust_version())
        if not self.load.requests:
            msg = "no requests declared: the soak sends the P4 mix of [gates.G2.requests.<name>]"
            raise ToolMissingError(msg)
        if self.ctx.config.service is None:
            msg = "certify.toml has no [service] table: the soak needs to start the target"
            raise ToolMissingError(msg)
        carried = load_resumable(self.request.resume_from) if self.request.resume_from else None
        hours = self.requested_hours(carried)
        if self.ctx.mode == "ci" or hours < 1:
            self.fault_interval_s = self.policy.ci_fault_interval_s
        plan = {
            "mode": self.ctx.mode,
            "requested_hours": hours,
            "segment_s": self.policy.segment_s,
            "fault_interval_s": self.fault_interval_s,
            "heal_budget_s": self.policy.heal_budget_s,
            "sample_s": self.policy.sample_s,
            "resumed_from": None,
            "started_at": round(time.time(), 3),
        }
        if carried is not None:
            plan["resumed_from"] = {
                "pack": str(self.request.resume_from),
                "started_at": carried["plan"]["started_at"],
                "segments": len(carried["segments"]),
                "soaked_s": sum(s["soaked_s"] for s in carried["segments"]),
                "checked_against": carried["checked_against"],
            }
            for segment in carried["segments"]:
                self._carry(segment, carried["root"])
        self.plan = plan
        self.ctx.write_json(PLAN, plan)
        self._write_progress(plan)
        remaining_s = hours * 3600 - sum(s["soaked_s"] for s in self.segments)
        if remaining_s <= 1:
            self.ctx.progress("the resumed pack already holds the requested hours")
            return
        self._run_segments(remaining_s, plan)

    def _carry(self, segment: dict[str, Any], root: Path) -> None:
        """Copy one segment of the resumed pack into this pack, under the same index."""
        for name in segment["files"]:
            source = root / "gates" / "SOAK" / name
            self.files[name] = source.read_bytes()
            self.ctx.copy_in(name, source)
        self.segments.append({**segment, "carried": True})

    def _write_progress(self, plan: dict[str, Any]) -> None:
        """The progress file: every segment so far with its files' sha256 (what a resume checks)."""
        self.ctx.write_json(PROGRESS, {"plan": plan, "segments": self.segments})

    def _run_segments(self, remaining_s: float, plan: dict[str, Any]) -> None:
        """Start the instance, then one segment after another; the loop and sampler run throughout."""
        if self.pb.api is None:
            msg = "no [gates.PB.api]: the self-healing loop has no request to list, inject or read incidents with"
            raise ToolMissingError(msg)
        instances = PlaybookInstances(self.ctx, self.pb)
        with instances.running(f"SOAK-{len(self.segments) + 1:03d}") as instance:
            playbooks, listed = tier_one_playbooks(self.pb, instance, self.policy.playbooks)
            self.ctx.write_json(f"instance-{len(self.segments) + 1:03d}.json", {"listed": listed, "loop": playbooks})
            if not playbooks:
                msg = "the self-healing loop has no playbook to inject: no tier-1 playbook listed and declared in PB"
                raise ToolMissingError(msg)
            rotation = sum(len(s.get("heal_playbooks", [])) for s in self.segments)
            while remaining_s > 1 and not self.ctx.cancel.is_set():
                length = min(self.policy.segment_s, remaining_s)
                segment = self._segment(instance, playbooks, rotation, length)
                rotation += len(segment["heal_playbooks"])
                remaining_s -= segment["soaked_s"]
                self.segments.append(segment)
                self._write_progress(plan)
                if instance.service.poll() is not None:
                    msg = f"the target's service exited with code {instance.service.returncode} during the soak"
                    raise TargetError(msg)

    def _segment(self, instance: Instance, playbooks: list[str], rotation: int, length_s: float) -> dict[str, Any]:
        """One segment: P4 load for `length_s`, the sampler and the healing loop beside it; files into the pack."""
        index = len(self.segments) + 1
        name = f"segments/{index:03d}"
        spec = self.load.profiles.P4.model_copy(update={"duration_s": length_s})
        profile = effective("P4", spec, "release", 1.0, dict(self.load.requests))
        warmup_s = min(profile.warmup_s, length_s / 2) if index == 1 or self.segments[-1].get("carried") else 0.0
        profile = profile.model_copy(update={"warmup_s": warmup_s, "mode": self.ctx.mode})
        pdir = self.ctx.scratch / name
        pdir.mkdir(parents=True, exist_ok=True)
        arrivals = plan_arrivals(profile.shape, profile.duration_s, profile.mix)
        self.ctx.progress(f"segment {index}: {length_s:g} s of P4 at {profile.shape.rate_per_min:g}/min")
        t0 = time.monotonic()
        started_at = time.time()
        sampler = ProcSampler(instance.service.pid, self.policy.sample_s, t0)
        loop = HealingLoop(
            self.pb, self.policy, playbooks, instance, interval_s=self.fault_interval_s, cancel=self.ctx.cancel
        )
        sampler.start()
        loop.start(rotation)
        try:
            record, _resources, death = LoadRun(self.ctx, self.load, pdir)._drive(profile, instance, arrivals, pdir)
        finally:
            loop.stop()
            sampler.stop()
        wall_s = time.monotonic() - t0
        raw = _gzip(_merge_raw(sorted(pdir.glob("raw-w*.csv"))))
        drivers = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(pdir.glob("driver-w*.json"))]
        meta = {
            "index": index,
            "instance": instance.name,
            "service_pid": instance.service.pid,
            "started_at": round(started_at, 3),
            "ended_at": round(time.time(), 3),
            "planned_s": length_s,
            "wall_s": round(wall_s, 3),
            "planned_arrivals": len(arrivals),
            "warmup_s": warmup_s,
            "rate_per_min": profile.shape.rate_per_min,
            "mix": profile.mix,
            "locust": record,
            # The drivers' plan origin (unix): places each planned arrival against the fault windows.
            "load_started_unix": min((d["started_unix"] for d in drivers), default=None),
            "target_death": death,
            "cancelled": bool(record["cancelled"]) or self.ctx.cancel.is_set(),
            "complete": record["returncode"] == 0 and death is None and not self.ctx.cancel.is_set(),
        }
        payloads = {
            f"{name}/raw.csv.gz": raw,
            f"{name}/proc.csv": sampler.csv_text().encode(),
            f"{name}/heals.json": (json.dumps(loop.heals, indent=1, sort_keys=True) + "\n").encode(),
            f"{name}/segment.json": (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode(),
        }
        for relpath, data in payloads.items():
            self.ctx.write_bytes(relpath, data)
            self.files[relpath] = data
        return {
            "index": index,
            "soaked_s": round(length_s if meta["complete"] else min(length_s, wall_s), 3),
            "complete": meta["complete"],
            "heal_playbooks": [h["playbook"] for h in loop.heals],
            "files": {relpath: sha256_bytes(data) for relpath, data in payloads.items()},
        }


def load_resumable(pack: Path) -> dict[str, Any]:
    """A previous soak pack's plan and finished segments, each file checked against progress.json (and the manifest)."""
    soak_dir = pack / "gates" / "SOAK"
    try:
        progress = json.loads((soak_dir / PROGRESS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"--resume {pack}: no gates/SOAK/{PROGRESS}; not a soak pack"
        raise PackError(msg) from None
    except (OSError, ValueError) as exc:
        msg = f"--resume {pack}: gates/SOAK/{PROGRESS} is unreadable: {exc}"
        raise PackError(msg) from None
    manifest_files: dict[str, Any] = {}
    manifest = pack / "manifest.json"
    if manifest.is_file():
        manifest_files = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
    for segment in progress.get("segments", []):
        for relpath, digest in segment["files"].items():
            path = soak_dir / relpath
            if not path.is_file() or sha256_bytes(path.read_bytes()) != digest:
                msg = f"--resume {pack}: gates/SOAK/{relpath} is missing or differs from its sha256 in {PROGRESS}"
                raise PackError(msg)
            listed = manifest_files.get(f"gates/SOAK/{relpath}")
            if manifest_files and (listed is None or listed.get("sha256") != digest):
                msg = f"--resume {pack}: gates/SOAK/{relpath} is not in the pack's manifest with that sha256"
                raise PackError(msg)
    return {
        "root": pack,
        "plan": progress["plan"],
        "segments": [s for s in progress.get("segments", []) if not s.get("carried_bad")],
        "checked_against": "manifest.json and progress.json" if manifest_files else "progress.json (no manifest)",
    }
