"""One run of one playbook on its own instance: inject, dry-run, refusals, heal, rollback, ledger.

Collect-side. Every observation is appended to the run record, which the gate stores as raw
evidence; nothing here decides a verdict, except when to stop waiting (the same pure judge is used).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from gates.playbooks.config import PlaybookPolicy, Request
from gates.playbooks.instances import PlaybookInstances
from gates.playbooks.judge import STABLE_S, recovered_at, sample_healthy
from gates.playbooks.learning import read_learning
from gates.playbooks.ledger import Ledger
from gates.playbooks.observe import (
    Hold,
    call,
    field,
    observe,
    query_rows,
    snapshot_files,
    snapshot_processes,
)
from harness.errors import TargetError
from harness.lifecycle import Instance

SAMPLE_S = 0.25
#: Shortest control window beside the dry-run (seconds with no dry-run, to see the fault's own churn).
CONTROL_S = 0.3


def window_epochs(policy: PlaybookPolicy, now: float | None = None) -> tuple[float, float]:
    """Governance times inside (last Monday 10:00 local) and outside (last Saturday 12:00) the window."""
    today = datetime.fromtimestamp(now if now is not None else time.time()).replace(minute=0, second=0, microsecond=0)
    monday = (today - timedelta(days=today.weekday() + 7)).replace(hour=10)
    saturday = monday + timedelta(days=5, hours=2)
    inside = policy.in_window_epoch if policy.in_window_epoch is not None else monday.timestamp()
    outside = policy.out_of_window_epoch if policy.out_of_window_epoch is not None else saturday.timestamp()
    return inside, outside


class PlaybookRun:
    """Drives one repetition of one playbook against one fresh instance and records what it saw."""

    def __init__(self, policy: PlaybookPolicy, playbook: str, tier: int, rep: int, cancel: threading.Event) -> None:
        """Bind to the policy, the playbook (as the target listed it) and the run's cancel flag."""
        self.policy = policy
        self.api = policy.target_api
        self.playbook = playbook
        self.check = policy.playbooks[playbook]
        self.tier = tier
        self.cancel = cancel
        self.names = tuple(self.check.probes)
        self.all_names = (*self.names, *policy.health)
        self.rollback_names = tuple(self.check.rollback_probes) or self.names
        self.record: dict[str, Any] = {"playbook": playbook, "tier": tier, "rep": rep, "calls": []}
        self.port = 0
        self.instance: Instance | None = None
        self.t0 = 0.0
        self.started = time.monotonic()

    # -- plumbing ------------------------------------------------------------------------------------

    def mark(self, phase: str) -> None:
        """Record when a phase ended, in seconds since the run began (where the gate's time goes; not judged)."""
        self.record.setdefault("phases_s", {})[phase] = round(time.monotonic() - self.started, 3)

    def send(self, request: Request, values: dict[str, Any] | None = None, body: Any = None) -> dict[str, Any]:
        """Send one request and keep the answer in the record."""
        answer = call(self.port, request, values, body)
        self.record["calls"].append({**answer, "t": round(answer["at"] - self.t0, 3) if self.t0 else None})
        return answer

    def sample(self, names: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Observe every named probe once; t is seconds since the injection."""
        assert self.instance is not None  # noqa: S101 - only called while an instance runs
        wanted = names if names is not None else self.all_names
        at = time.time()
        obs = {name: observe(self.port, self.instance.data_dir, self.policy.probes[name]) for name in wanted}
        return {"t": round(at - self.t0, 3) if self.t0 else 0.0, "at": round(at, 3), "obs": obs}

    def snapshot(self, full: bool = True) -> dict[str, Any]:
        """Observable state: files, SQLite rows, API answers and (full) the processes of the instance."""
        assert self.instance is not None  # noqa: S101 - only called while an instance runs
        data_dir = self.instance.data_dir
        snap: dict[str, Any] = {
            "files": snapshot_files(data_dir, self.policy.volatile),
            "sqlite": {s.query: query_rows(data_dir, s) for s in self.policy.snapshot_sqlite if full or s.rollback},
        }
        if full:
            snap["api"] = {r.path: field(call(self.port, r), "body") for r in self.policy.snapshot_api}
            snap["processes"] = snapshot_processes(os.getpgid(self.instance.service.pid))
        return snap

    def incidents(self) -> list[dict[str, Any]]:
        """The target's incidents (as it reports them)."""
        answer = call(self.port, self.api.incidents)
        items = field(answer["body"], self.api.incidents_items)
        return items if isinstance(items, list) else []

    def set_clock(self, epoch: float | None) -> None:
        """Set the governance clock (if the target declares how)."""
        if self.api.clock is not None:
            self.send(self.api.clock, body={self.api.clock_field: epoch})

    # -- the run -------------------------------------------------------------------------------------

    def execute(self, instances: PlaybookInstances, observed: Callable[[], None] = lambda: None) -> dict[str, Any]:
        """Run the whole scenario on a fresh instance; the record is returned even when the target fails.

        `observed` is called once the last observation is made, before the instance is stopped (the
        gate lets the next run start while this instance shuts down).
        """
        label = f"PB-{self.playbook}-r{self.record['rep']}"
        self.record["started_at"] = round(time.time(), 3)
        unrunnable = self.unrunnable()
        if unrunnable:
            self.record["not_run"] = unrunnable
            self.record["observed_at"] = self.record["started_at"]
            observed()
            self.mark("stopped")
            return self.record
        try:
            with instances.running(label) as instance:
                self.mark("started")
                self.instance, self.port = instance, instance.port
                self.record["instance"] = instance.name
                try:
                    self._scenario()
                finally:
                    self.record["observed_at"] = round(time.time(), 3)
                    observed()
        except TargetError as exc:
            self.record["start_error"] = exc.message[-600:]
        self.mark("stopped")
        return self.record

    def unrunnable(self) -> str:
        """Why this run cannot be made with the requests the target declares (empty: it can)."""
        missing = [name for name in ("approvals", "approve") if getattr(self.api, name) is None]
        if self.tier >= 2 and missing:
            return (
                f"tier {self.tier} needs an approval and [gates.PB.api] {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not declared"
            )
        return ""

    def _scenario(self) -> None:
        """Settle, inject under hold, dry-run, refusals, heal, rollback, reconcile, audit."""
        inside, outside = window_epochs(self.policy)
        windowed = self.tier >= self.policy.window_tier and self.api.clock is not None
        self.set_clock(outside if windowed else inside)
        self.record["watermark"] = self._settle()
        self.mark("settled")
        # No [gates.PB.work]: no work is submitted; the judge reports the ledger NOT_RUN naming the table.
        ledger = Ledger(self.port, self.policy.work) if self.policy.work is not None else None
        if ledger is not None:
            ledger.start()
        try:
            self.record["baseline"] = self.sample(self.names)
            self._inject_and_dry_run(ledger)
            self.mark("dry_run")
            self._refusals(windowed, inside)
            self.mark("refusals")
            self._await_recovery()
            self.mark("recovered")
            self._rollback()
            self.mark("rollback")
        finally:
            if ledger is not None:
                ledger.stop()
        if ledger is not None:
            self.record["ledger"] = {"attempts": ledger.attempts, "finals": ledger.read_back(self.cancel)}
            self.mark("ledger")
        self._closing_facts()
        self.mark("closing")

    def _settle(self) -> int:
        """Wait until no incident is open for 1 s (start-up healing), bounded; return the newest incident id."""
        deadline = time.monotonic() + self.policy.settle_s
        quiet_since = None
        while time.monotonic() < deadline and not self.cancel.is_set():
            found = self.incidents()
            open_now = [i for i in found if i.get(self.api.incident_status_field) not in self.api.final]
            quiet_since = (quiet_since or time.monotonic()) if not open_now else None
            if quiet_since is not None and time.monotonic() - quiet_since >= 1.0:
                break
            time.sleep(SAMPLE_S)
        self.record["settle_incidents"] = self.incidents()
        ids = [int(i.get(self.api.incident_id_field) or 0) for i in self.record["settle_incidents"]]
        return max(ids, default=0)

    def _inject_and_dry_run(self, ledger: Ledger | None) -> None:
        """Hold the executor, inject, wait until the harness sees the fault, snapshot, dry-run, snapshot."""
        assert self.instance is not None  # noqa: S101 - only called while an instance runs
        pgid = os.getpgid(self.instance.service.pid)
        databases = tuple(dict.fromkeys(spec.database for spec in self.policy.snapshot_sqlite))
        with Hold(self.instance.data_dir, self.policy.hold_pid_file, pgid, databases) as hold:
            self.record["held"] = hold.pid is not None
            self.record["hold"] = {"lock_retries": hold.lock_retries, "locked": hold.locked}
            self.t0 = time.time()
            self.record["inject_at"] = self.t0
            body = {**(self.api.inject.body or {}), **self.check.options}
            self.record["inject"] = self.send(self.api.inject, {"id": self.playbook}, body)
            self.record["observed"] = self._watch_fault()
            if hold.pid is None:
                self.record["dry_run_skip"] = (
                    "no hold_pid_file declared"
                    if not self.policy.hold_pid_file
                    else f"no live process of this instance named by {self.policy.hold_pid_file}"
                )
                return
            if ledger is not None:
                ledger.pause()
            try:
                if self.api.dry_run is not None:
                    self._dry_run(self.api.dry_run)
                else:
                    self._pre_execute_snapshot()
            finally:
                if ledger is not None:
                    ledger.resume()
        self.record["released_at"] = time.time()

    def _dry_run(self, request: Request) -> None:
        """Snapshot, dry-run, snapshot, with a control window on each side; all under the hold, ledger paused."""
        # Control windows without a dry-run, before and after it, at least as long as its own:
        # what changes in them is the fault's own churn (a poison task keeps crashing workers).
        # The first is the settling pause the dry-run always had: the hold stays short, or a
        # fault that clears itself (poison: the task fails for good) is gone before release.
        control_before = self.snapshot()
        time.sleep(CONTROL_S)  # in-flight work settles; workers still run, their files are volatile
        before = self.snapshot()
        before["probes"] = self.sample(self.rollback_names)["obs"]
        started = time.monotonic()
        answer = self.send(request, {"id": self.playbook}, self.check.dry_run_params)
        after = self.snapshot()
        window_s = time.monotonic() - started
        time.sleep(max(CONTROL_S, window_s))
        control_after = self.snapshot()
        self.record["dry_run"] = {
            "before": before,
            "answer": answer,
            "after": after,
            "window_s": round(window_s, 3),
            "control": {"before": control_before, "after": control_after},
        }

    def _pre_execute_snapshot(self) -> None:
        """No dry-run declared: only the state before execute (what the rollback is compared with), held."""
        self.record["dry_run_skip"] = "[gates.PB.api] dry_run not declared"
        time.sleep(CONTROL_S)  # in-flight work settles, as before the dry-run's snapshot
        before = self.snapshot()
        before["probes"] = self.sample(self.rollback_names)["obs"]
        self.record["pre_execute"] = before

    def _watch_fault(self) -> list[dict[str, Any]]:
        """Sample the playbook's probes until one sees the fault or observe_s passes."""
        samples = []
        deadline = time.monotonic() + self.check.observe_s
        while not self.cancel.is_set():
            samples.append(self.sample(self.names))
            if not sample_healthy(self.policy, self.names, samples[-1]) or time.monotonic() >= deadline:
                return samples
            time.sleep(SAMPLE_S)
        return samples

    def _observe_refusal(self) -> dict[str, Any]:
        """Sample for refusal_observe_s: the fault must stay (no healing happens)."""
        since = time.time()
        samples = []
        while time.time() - since < self.policy.refusal_observe_s and not self.cancel.is_set():
            samples.append(self.sample(self.names))
            time.sleep(SAMPLE_S)
        return {"since": since, "samples": samples}

    def _refusals(self, windowed: bool, inside: float) -> None:
        """Tier >= 2: refused without approval; approved; tier >= window: refused outside the window."""
        if self.tier < 2:
            return
        refusals: dict[str, Any] = {"needs_approval": self._observe_refusal()}
        self.record["approval"] = self._approve()
        if self.tier >= self.policy.window_tier and self.api.clock is None:
            self.record["refusal_skip"] = {
                "outside_window": "[gates.PB.api] clock not declared: the governance clock cannot leave the window"
            }
        if windowed:
            refusals["outside_window"] = self._observe_refusal()
            self.set_clock(inside)
        self.record["refusals"] = refusals
        self.record["allowed_at"] = time.time()

    def _approve(self) -> dict[str, Any] | None:
        """Approve the pending request of this playbook (waiting for it a little)."""
        approvals, approve = self.api.approvals, self.api.approve
        if approvals is None or approve is None:  # such a run is not made (`unrunnable`)
            return None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not self.cancel.is_set():
            items = field(call(self.port, approvals)["body"], self.api.approvals_items) or []
            for item in items:
                if item.get(self.api.approval_playbook_field) == self.playbook:
                    return self.send(approve, {"approval_id": item.get(self.api.approval_id_field)})
            time.sleep(SAMPLE_S)
        return None

    def _await_recovery(self) -> None:
        """Sample all probes until health is back and stable and the incident is final, or the budget ends."""
        budget_s = self.check.recovery_budget_s or self.policy.recovery_budget_s
        start = self.record.get("allowed_at", self.t0)
        self.record["recovery_ref"] = "approval" if "allowed_at" in self.record else "injection"
        samples: list[dict[str, Any]] = []
        incidents: list[dict[str, Any]] = []
        while time.time() - start < budget_s + STABLE_S and not self.cancel.is_set():
            sample = self.sample()
            sample["t"] = round(sample["at"] - start, 3)
            samples.append(sample)
            incidents = [
                i for i in self.incidents() if int(i.get(self.api.incident_id_field) or 0) > self.record["watermark"]
            ]
            mine_final = [
                i
                for i in incidents
                if i.get(self.api.incident_playbook_field) == self.playbook
                and i.get(self.api.incident_status_field) in self.api.final
            ]
            seen = self.record.setdefault("final_seen_at", {})
            for item in mine_final:
                seen.setdefault(str(item.get(self.api.incident_id_field)), round(time.time(), 3))
            if mine_final and recovered_at(self.policy, self.all_names, samples) is not None:
                break
            time.sleep(SAMPLE_S)
        self.record["samples"] = samples
        self.record["incidents"] = incidents

    def _rollback(self) -> None:
        """Ask the target to roll back the healed incident; then observe and snapshot."""
        healed = [
            i
            for i in self.record["incidents"]
            if i.get(self.api.incident_playbook_field) == self.playbook
            and i.get(self.api.incident_status_field) in self.api.healed
        ]
        rollback, rollback_status = self.api.rollback, self.api.rollback_status
        skip = self._rollback_skip(bool(healed))
        if skip or rollback is None or rollback_status is None:
            self.record["rollback_skip"] = skip
            return
        incident_id = healed[0].get(self.api.incident_id_field)
        answer = self.send(rollback, {"incident_id": incident_id})
        request_id = field(answer["body"], self.api.rollback_request_field)
        state = None
        deadline = time.monotonic() + 30
        while request_id is not None and time.monotonic() < deadline and not self.cancel.is_set():
            state = field(
                self.send(rollback_status, {"request_id": request_id})["body"], self.api.rollback_status_field
            )
            if state in self.api.rollback_done or state in self.api.rollback_failed:
                break
            time.sleep(SAMPLE_S)
        time.sleep(0.5)
        self.record["rollback"] = {
            "state": state,
            "probe": self.sample(self.rollback_names),
            "after": self.snapshot(full=False),
        }

    def _rollback_skip(self, healed: bool) -> str:
        """Why no rollback is requested (empty: one is); the missing [gates.PB.api] key when that is why."""
        if not healed:
            return "no healed incident"
        if self.check.rollback == "none":
            return "not declared"
        for key in ("rollback", "rollback_status"):
            if getattr(self.api, key) is None:
                return f"[gates.PB.api] {key} not declared"
        return ""

    def _closing_facts(self) -> None:
        """Audit entries, audit chain verification and the target's stats, as the target reports them."""
        assert self.instance is not None  # noqa: S101 - only called while an instance runs
        if self.policy.audit is not None:
            self.record["audit"] = query_rows(self.instance.data_dir, self.policy.audit)
        if self.api.audit_verify is not None:
            self.record["audit_verify"] = call(self.port, self.api.audit_verify)
        if self.api.stats is not None:
            before = self.incidents()
            stats = call(self.port, self.api.stats)
            self.record["stats_read"] = {"before": before, "stats": stats, "after": self.incidents()}
        learning = read_learning(self)
        if learning is not None:
            self.record["learning_read"] = learning
