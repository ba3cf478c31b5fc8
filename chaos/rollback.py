"""C6 engine: the bad-deploy rollback drill on a running instance, recorded raw for `chaos.rollback_judge`.

In order:
1. steady state: `steady_probes` healthy probes in a row (readiness AND a fresh task completing);
   the running version and the target's alert are read (the alert must not be firing yet);
2. the completion and submission counters are read, the work stream and the prober start;
3. after `baseline_s` the target's `deploy` command runs (the bad canary); from then on the version
   and the alert are read every `READ_INTERVAL_S`;
4. once the harness's own probes or work stream saw a failure AND the target's alert fired, the
   declared `rollback` command runs (with `automatic = true` the harness runs nothing and waits);
5. observation ends when the old version is back, the probes have been healthy for `stable_s` and
   the alert is resolved, or when `budget_s` (plus one probe's latency) has passed since the deploy;
6. steady state after; every accepted id is read back until terminal (`drain_s`), counters read again.
Judging is `chaos.rollback_judge`'s job; the engine uses the same pure functions to know when to stop.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from chaos.client import TaskClient, call
from chaos.experiments import ChaosPolicy
from chaos.instance import ChaosInstance
from chaos.ledger import WorkStream, reconcile
from chaos.probe import Prober
from chaos.recovery import accepted_ids
from chaos.rollback_judge import drill_facts
from chaos.rollback_spec import RollbackDrill
from chaos.runner import Clock, confirmed_recovery, pause, steady_state, watched_work
from harness.lifecycle import fill, target_env
from harness.procs import ProcessRegistry, run_tool

#: How often the running version and the target's alert are read after the deploy.
READ_INTERVAL_S = 0.25


def dotted(body: Any, path: str) -> Any:
    """Pure: the value at a dotted path of a JSON body (None when any step is missing)."""
    node = body
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


class Drill:
    """One rollback drill against a running instance."""

    def __init__(  # noqa: PLR0917 - the instance, the gate's policy and where the target's commands run
        self,
        inst: ChaosInstance,
        policy: ChaosPolicy,
        settings: dict[str, Any],
        cancel: threading.Event,
        python: Path,
        target_dir: Path,
        registry: ProcessRegistry,
    ) -> None:
        """Bind everything the drill needs; `settings` holds the readiness and metrics paths."""
        assert policy.rollback is not None  # noqa: S101 - the gate runs a drill only when one is declared
        self.inst = inst
        self.policy = policy
        self.spec: RollbackDrill = policy.rollback
        self.settings = settings
        self.cancel = cancel
        self.python = python
        self.target_dir = target_dir
        self.registry = registry
        self.clock = Clock()
        #: The [service] env the instance runs with; the commands get it too (they act on the same installation).
        self.service_env: dict[str, str] = {}
        body = policy.tasks.bodies[self.spec.work] if self.spec.work else next(iter(policy.tasks.bodies.values()), {})
        self.client = TaskClient(inst.port, policy.tasks, body)
        self.completed = set(policy.tasks.completed)
        self.values = {
            "python": str(python),
            "target_dir": str(target_dir),
            "data_dir": str(inst.data_dir),
            "port": str(inst.port),
            "base_url": f"http://127.0.0.1:{inst.port}",
        }

    def run(self) -> dict[str, Any]:
        """Run the drill; the raw record."""
        tasks = self.policy.tasks
        record: dict[str, Any] = {
            "settings": self.settings,
            "drill": self.spec.model_dump(mode="json"),
            "tasks": tasks.model_dump(mode="json", include={"completed", "failed", "completions_field"}),
            "steady_before": self._steady(),
            "version_before": self._version(),
            "alert_before": self._alert(),
            "deploy": None,
            "rollback": None,
            "reads": [],
            "work": [],
            "samples": [],
            "steady_after": {"met": False, "samples": []},
            "outcome": "ran",
        }
        metrics = self.settings["metrics"]
        before = [
            self.client.metric_total(metrics, name)[1] for name in (tasks.completions_metric, tasks.submissions_metric)
        ]
        if not record["steady_before"]["met"]:
            record.update(outcome="inconclusive", reason=self._not_steady())
        elif record["version_before"]["version"] is None:
            record.update(
                outcome="inconclusive",
                reason=f"the running version could not be read before the deploy: GET {self.spec.version_path} "
                + (record["version_before"]["error"] or f"gave no {self.spec.version_field}"),
            )
        else:
            self._method(record)
            record["steady_after"] = self._steady()
        ids = accepted_ids(record)
        finals = reconcile(self.client, ids, drain_s=self.policy.drain_s, cancel=self.cancel, clock=self.clock)
        after = [
            self.client.metric_total(metrics, name)[1] for name in (tasks.completions_metric, tasks.submissions_metric)
        ]
        record["reconciliation"] = {
            "finals": finals,
            "drain_s": self.policy.drain_s,
            "metric": {
                "name": tasks.completions_metric if before[0] and after[0] else "",
                "before_lines": before[0],
                "after_lines": after[0],
                "submitted_name": tasks.submissions_metric,
                "submitted_before_lines": before[1],
                "submitted_after_lines": after[1],
                "extra_completed": 0,
            },
        }
        return record

    def _not_steady(self) -> str:
        """Why the drill did not start."""
        return (
            f"steady state not met before the deploy: {self.policy.steady_probes} healthy probes in a row not "
            f"reached within {self.policy.steady_timeout_s:g} s; the canary was not deployed"
        )

    def _steady(self) -> dict[str, Any]:
        """Probe one at a time until `steady_probes` in a row are healthy or `steady_timeout_s` passes."""
        return steady_state(self.client, self.settings["readiness"], self.policy, self.clock, self.cancel)

    def _method(self, record: dict[str, Any]) -> None:
        """Work stream and probes around the deploy, the detection, the rollback and the restore."""
        with watched_work(self.client, self.settings["readiness"], self.policy, self.clock, record) as watched:
            pause(self.cancel, self.policy.baseline_s)
            record["deploy"] = self._command("deploy", self.spec.deploy)
            if record["deploy"]["returncode"] == 0:
                self._observe(record, *watched)

    def _observe(self, record: dict[str, Any], stream: WorkStream, prober: Prober) -> None:
        """Read version and alert until restored or out of budget; run the rollback once both detections are in.

        A restore seen while probes are in flight is confirmed on complete evidence first (`confirmed_recovery`).
        """
        deadline = record["deploy"]["started_at_s"] + self.spec.budget_s + self.policy.healthy_latency_s
        while self.clock() < deadline:
            pause(self.cancel, READ_INTERVAL_S)
            record["reads"].append({"t_s": round(self.clock(), 4), **self._version(), **self._alert()})
            facts = self._facts(record, stream, prober)
            if (
                not self.spec.automatic
                and record["rollback"] is None
                and facts["harness_detected_at_s"] is not None
                and facts["alert_fired_at_s"] is not None
            ):
                record["rollback"] = self._command("rollback", self.spec.rollback)
            restored = facts["restored_at_s"] is not None
            if restored and confirmed_recovery(
                prober,
                lambda: self._facts(record, stream, prober)["restored_at_s"] is not None,
                self.policy,
                self.clock,
                self.cancel,
            ):
                return

    def _facts(self, record: dict[str, Any], stream: WorkStream, prober: Prober) -> dict[str, Any]:
        """The drill's facts so far: work and finished probes copied into the record, probes in flight counted."""
        samples, in_flight = prober.view()
        record["work"], record["samples"] = list(stream.attempts), samples
        return drill_facts(
            record,
            self.policy.healthy_latency_s,
            self.policy.stable_s,
            in_flight_since_s=[t for t in in_flight if t is not None],
            now_s=self.clock(),
        )

    def _command(self, role: str, argv: tuple[str, ...]) -> dict[str, Any]:
        """Run one of the target's drill commands (bounded, output saved beside the instance's); its facts."""
        filled = [fill(part, self.values) for part in argv]
        started = self.clock()
        env = target_env(dict(self.service_env), venv=self.python.parent.parent)
        run = run_tool(
            filled,
            cwd=self.target_dir,
            env=env,
            timeout_s=self.spec.command_timeout_s,
            stdout_path=self.inst.log_dir / f"drill-{role}.stdout.txt",
            stderr_path=self.inst.log_dir / f"drill-{role}.stderr.txt",
            cancel=self.cancel,
            registry=self.registry,
        )
        return {
            "argv": filled,
            "started_at_s": round(started, 4),
            "ended_at_s": round(self.clock(), 4),
            "returncode": run.returncode,
            "timed_out": run.timed_out,
            "stdout": f"drill-{role}.stdout.txt",
            "stderr": f"drill-{role}.stderr.txt",
        }

    def _version(self) -> dict[str, Any]:
        """GET the version endpoint: the version string (None when unreadable) and why not."""
        answer = call(self.inst.port, "GET", self.spec.version_path, timeout_s=self.policy.tasks.timeout_s)
        value = dotted(answer.body, self.spec.version_field) if answer.ok else None
        error = answer.error or (None if answer.ok else f"HTTP {answer.status}")
        return {"version": None if value is None else str(value), "version_http": answer.status, "error": error}

    def _alert(self) -> dict[str, Any]:
        """The target's alert gauge: its summed value (None when absent) and the exposition lines read."""
        value, lines = self.client.metric_total(self.settings["metrics"], self.spec.alert_metric)
        return {"alert": value, "alert_lines": lines[:5]}
