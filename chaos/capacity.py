"""Capacity as part of the steady state (#25): the process tree by role, and completed-work throughput.

Recording (I/O): `TreeSampler` counts the instance's processes by role (psutil; the service's process
group and its descendants, matched by the `[gates.G4.roles]` command-line patterns) every few hundred
ms for the whole repetition; `measure_burst` submits a burst of work at once and follows every id
until it is terminal, so the completion rate of the target's workers is measured from the ledger;
`read_role_metrics` reads the gauges in which the target publishes its own counts.

Judging (pure): `capacity_restore` finds when every role's count was back to its pre-fault value
(with the killed pid gone), `burst_rate` turns a burst into a rate, `metric_disagreements` compares
the target's own counts with the tree.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from chaos.client import TaskClient, counter_sum
from chaos.experiments import RoleSpec

#: How often the process tree is counted.
TREE_INTERVAL_S = 0.2
#: Pause between read rounds of a burst's pending ids.
BURST_POLL_S = 0.05


def instance_processes(service_pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in the service's process group or below it."""
    found: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(service_pid)
        found.update({p.pid: p for p in [root, *root.children(recursive=True)]})
    except psutil.NoSuchProcess:
        pass
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == service_pid:  # spawned in its own session: pgid == the service's pid
                found.setdefault(proc.pid, proc)
        except OSError:
            continue
    out = []
    for pid, proc in sorted(found.items()):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            out.append((pid, " ".join(proc.cmdline())))
        except psutil.Error:
            continue
    return out


def count_roles(processes: list[tuple[int, str]], roles: Mapping[str, RoleSpec]) -> dict[str, list[int]]:
    """Pure: the pids of each role (a process whose command line matches the role's pattern)."""
    return {
        name: sorted(pid for pid, cmdline in processes if re.search(role.cmdline, cmdline))
        for name, role in roles.items()
    }


class TreeSampler:
    """Counts the instance's processes by role every `TREE_INTERVAL_S` in a thread; keeps every sample."""

    def __init__(self, service_pid: int, roles: Mapping[str, RoleSpec], clock: Callable[[], float]) -> None:
        """Bind to the service's pid, the declared roles and the repetition's clock."""
        self.service_pid = service_pid
        self.roles = roles
        self.clock = clock
        self.samples: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-tree", daemon=True)

    def start(self) -> None:
        """Start counting (one sample at once)."""
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        """Stop counting (one last sample)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def sample(self) -> dict[str, Any]:
        """Count now; the sample is kept."""
        roles = count_roles(instance_processes(self.service_pid), self.roles)
        # Stamped once the listing is complete: a sample before the fault's time saw no effect of it.
        sample = {"t_s": round(self.clock(), 4), "roles": roles}
        with self._lock:
            self.samples.append(sample)
        return sample

    def snapshot(self) -> list[dict[str, Any]]:
        """The samples so far, in time order."""
        with self._lock:
            return sorted(self.samples, key=lambda item: item["t_s"])

    def _run(self) -> None:
        while not self._stop.wait(TREE_INTERVAL_S):
            self.sample()


def measure_burst(
    client: TaskClient, size: int, timeout_s: float, clock: Callable[[], float], cancel: threading.Event
) -> dict[str, Any]:
    """Submit `size` units of work at once and follow each id until terminal; when each was seen done."""
    record: dict[str, Any] = {"t0_s": round(clock(), 4), "size": size, "ids": [], "rejected": 0, "done": {}}
    for _ in range(size):
        _answer, task_id = client.submit()
        if task_id is None:
            record["rejected"] += 1
        else:
            record["ids"].append(task_id)
    record["submitted_s"] = round(clock(), 4)
    pending = list(record["ids"])
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline and not cancel.is_set():
        still = []
        for task_id in pending:
            _answer, state = client.state(task_id)
            if client.terminal(state):
                record["done"][task_id] = [round(clock(), 4), state]
            else:
                still.append(task_id)
        pending = still
        if pending:
            cancel.wait(BURST_POLL_S)
    record["end_s"] = round(clock(), 4)
    record["unfinished"] = len(pending)
    return record


def read_role_metrics(client: TaskClient, metrics_path: str, roles: Mapping[str, RoleSpec]) -> dict[str, float | None]:
    """The target's own count of each role that names a metric (None when it could not be read)."""
    out: dict[str, float | None] = {}
    for name, role in roles.items():
        if role.metric:
            _total, lines = client.metric_total(metrics_path, role.metric)
            out[name] = counter_sum(lines, role.metric) if lines else None
    return out


def burst_rate(burst: dict[str, Any] | None, completed_states: set[str]) -> dict[str, Any] | None:
    """Pure: completed units, the window from the first submission to the last completion seen, the rate."""
    if not burst:
        return None
    times = [t for t, state in burst["done"].values() if state in completed_states]
    if not times:
        return {"completed": 0, "size": burst["size"], "window_s": None, "rate_per_s": 0.0}
    window = max(max(times) - burst["t0_s"], 1e-3)
    return {
        "completed": len(times),
        "size": burst["size"],
        "window_s": round(window, 3),
        "rate_per_s": round(len(times) / window, 2),
    }


def _roles_before(tree: list[dict[str, Any]], injected_at_s: float) -> dict[str, list[int]] | None:
    """The last role count taken before the fault (the steady state's)."""
    before = [s for s in tree if s["t_s"] <= injected_at_s]
    return before[-1]["roles"] if before else None


def capacity_restore(tree: list[dict[str, Any]], fault: dict[str, Any], stable_s: float) -> dict[str, Any]:
    """Pure: the pre-fault role counts, whether the fault was seen in the tree, and when capacity was back.

    Capacity is back at the first sample of the final streak (lasting `stable_s`) in which every role
    has its pre-fault count and the killed pid (if any) is in none of them; with no short sample at
    all it is the injection time.
    """
    injected, removed = fault.get("injected_at_s"), fault.get("removed_at_s")
    facts = fault.get("inject") or {}
    # Only a kill removes a process on purpose (older records carry no type: a kill's facts say "gone").
    is_kill = fault.get("type", "kill" if "gone" in facts else "") == "kill"
    killed = facts.get("pid") if is_kill else None
    out: dict[str, Any] = {
        "before": None,
        "final": None,
        "killed_role": None,
        "killed_seen_gone": None,
        "lost_at_s": None,
        "restored_at_s": None,
        "restore_from_removal_s": None,
        "short_samples": 0,
    }
    if injected is None or not tree:
        return out
    before = _roles_before(tree, injected)
    out["before"] = before
    after = sorted((s for s in tree if s["t_s"] >= injected), key=lambda s: s["t_s"])
    if before is None or not after:
        return out
    out["final"] = after[-1]["roles"]
    if killed is not None:
        out["killed_role"] = next((name for name, pids in before.items() if killed in pids), None)
        out["killed_seen_gone"] = any(all(killed not in pids for pids in s["roles"].values()) for s in after)

    def whole(sample: dict[str, Any]) -> bool:
        return all(
            len(sample["roles"].get(name, [])) == len(pids) and killed not in sample["roles"].get(name, [])
            for name, pids in before.items()
        )

    flags = [whole(s) for s in after]
    out["short_samples"] = flags.count(False)
    out["lost_at_s"] = next((s["t_s"] for s, ok in zip(after, flags, strict=True) if not ok), None)
    start = len(flags)
    while start > 0 and flags[start - 1]:
        start -= 1
    if start == len(flags):
        return out
    if start > 0 and after[-1]["t_s"] - after[start]["t_s"] < stable_s:
        return out
    restored = injected if start == 0 else after[start]["t_s"]
    out["restored_at_s"] = round(restored, 3)
    out["restore_from_removal_s"] = round(max(0.0, restored - (removed if removed is not None else injected)), 3)
    return out


def metric_disagreements(reads: list[dict[str, Any]]) -> list[str]:
    """Pure: for the last read of each role metric, a sentence where the target's count differs from the tree's."""
    if not reads:
        return []
    last = reads[-1]
    problems = []
    for role, value in sorted(last["metrics"].items()):
        counted = len(last["roles"].get(role, []))
        if value is None:
            problems.append(f"role {role}: its metric could not be read")
        elif round(value) != counted:
            problems.append(f"role {role}: the target's metric says {value:g}, the process tree has {counted}")
    return problems


def analyse_capacity(record: dict[str, Any], stable_s: float) -> dict[str, Any]:
    """Pure: everything judged about one repetition's capacity, from its stored record."""
    completed = set(record["tasks"]["completed"])
    capacity = record.get("capacity") or {}
    return {
        **capacity_restore(record.get("tree") or [], record["fault"], stable_s),
        "roles_declared": bool(record.get("tree")) and bool(record["tree"][0]["roles"]),
        "rate_before": burst_rate(capacity.get("before"), completed),
        # A confirming burst is run when the first one after recovery was short: the better of the two counts.
        "rate_after": max(
            (r for r in (burst_rate(capacity.get(w), completed) for w in ("after", "after_confirm")) if r),
            key=lambda r: r["rate_per_s"],
            default=None,
        ),
        "confirmed": capacity.get("after_confirm") is not None,
        # Work accepted before the post-recovery burst and still open when the burst began (bounded wait).
        "backlog": capacity.get("backlog"),
        "metrics_before": metric_disagreements(capacity.get("metrics_before") or []),
        "metrics_after": metric_disagreements(capacity.get("metrics_after") or []),
    }
