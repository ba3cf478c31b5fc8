"""Gate G4: chaos recovery. Fault experiments C1-C4 with measured recovery time and a no-data-loss ledger.

`collect` starts one instance per experiment (dependencies behind an embedded Toxiproxy; see
chaos/instance.py), runs each experiment's repetitions (chaos/runner.py) and stores every probe sample,
every work submission, the fault's facts and the read-back of every accepted id. Up to
`concurrency` experiments run at the same time, each on its own instance; experiments whose faults
share something never overlap (chaos/schedule.py), and when each ran is kept in schedule.json. It also
writes chaos_report.md and, under chaos/, a Chaos Toolkit-shaped journal and an SVG timeline per repetition.
`evaluate` recomputes every recovery time, loss and duplicate count from those records.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from chaos.experiments import ChaosPolicy, Experiment
from chaos.faults import Injector, injector_for
from chaos.instance import ChaosInstance, ChaosLauncher, InstanceOptions
from chaos.journal import build_journal
from chaos.judge import NOT_APPLICABLE, judge_experiment
from chaos.recovery import analyse
from chaos.report import render_report
from chaos.rollback import Drill
from chaos.rollback_judge import DRILL, judge_drill, render_drill
from chaos.runner import Repetition
from chaos.schedule import EXCLUSIVE, Job, LiveInstances, Span, planned_makespan_s, run_scheduled
from chaos.timeline import render
from chaos.toxiproxy_client import ToxiproxyClient, find_or_start_toxiproxy, stop_toxiproxy
from harness.checks import CheckSpec
from harness.context import GateContext
from harness.errors import TargetError
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import Measurement, Status, Verdict, worst
from harness.procs import REGISTRY

if TYPE_CHECKING:
    from harness.config import CertifyConfigBase

RUN_FILE = "chaos_run.json"
SCHEDULE_FILE = "schedule.json"
#: C6: the rollback drill's record, its job id in the schedule, and its write-up.
DRILL_FILE = "rollback/drill.json"
DRILL_JOB = "C6-rollback-drill"
DRILL_DOC = "chaos/rollback-drill.md"
#: An experiment's stored outcome and its repetition records.
Stored = tuple[dict[str, Any] | None, list[dict[str, Any]]]
#: Steady states, drain and write-up of one repetition, beyond its fault window (measured on guardian: ~3 s).
REPETITION_OVERHEAD_S = 3.0
#: Starting and stopping one instance (guardian: ~3 s).
INSTANCE_OVERHEAD_S = 5.0
#: A capacity burst's typical duration (one before each fault, one after recovery).
CAPACITY_BURST_S = 1.5


def _settings(ctx: GateContext, policy: ChaosPolicy, exp: Experiment) -> dict[str, Any]:
    """Paths and mode-dependent durations a repetition runs with (stored with its record)."""
    assert ctx.config.service is not None  # noqa: S101 - the launcher refused a config without [service]
    return {
        "mode": ctx.mode,
        "readiness": ctx.config.service.readiness,
        "metrics": ctx.config.service.metrics or "",
        "fault_s": policy.fault_window_s(exp, ctx.mode),
        "budget_s": policy.budget_s(exp),
        "probe_interval_s": policy.probe_interval_s,
        "healthy_latency_s": policy.healthy_latency_s,
        "stable_s": policy.stable_s,
    }


def job_of(exp: Experiment, injector: Injector) -> Job:
    """The scheduling view of an experiment: what its fault shares with others (everything, if exclusive)."""
    resources = injector.resources() | ({EXCLUSIVE} if exp.exclusive else set())
    return Job(exp.id, frozenset(resources))


def start_order(jobs: list[Job]) -> list[Job]:
    """Pure: experiments whose shared resource most others also hold first, else in declared order.

    Those cannot overlap one another, so their chain sets the gate's duration; started first, the
    experiments that share nothing fill the other slots beside it instead of waiting at the end.
    """

    def contention(job: Job) -> int:
        if EXCLUSIVE in job.resources:
            return 0
        return sum(
            1
            for other in jobs
            if other is not job and EXCLUSIVE not in other.resources and job.resources & other.resources
        )

    return sorted(jobs, key=lambda job: -contention(job))


@dataclass
class _Run:
    """What the experiments of one collect share: launcher, the target's python, results, live instances."""

    launcher: ChaosLauncher
    python: Path
    stored: dict[str, Stored] = field(default_factory=dict)
    seed: int = 0
    live: LiveInstances = field(default_factory=LiveInstances)
    lock: threading.Lock = field(default_factory=threading.Lock)


#: What this gate evidences (the traceability matrix): one check per fault class, one for data loss.
CHECKS = (
    *(
        CheckSpec(
            id=f"G4.{fault}",
            title=f"{fault} experiments: automatic recovery within the budget",
            requirements=("G4", fault),
            measurements=(
                f"{fault}-* max recovery time",
                f"{fault}-* max capacity restore time",
                f"{fault}-* min throughput after/before",
            ),
            evidence=(f"chaos/{fault}-*/journal-*.json", "chaos_report.md"),
        )
        for fault in ("C1", "C2", "C3", "C4")
    ),
    CheckSpec(
        id="G4.no-loss",
        title="no accepted task lost, left uncompleted or duplicated across every experiment",
        requirements=("G4", "C5"),
        measurements=("* lost", "* not completed", "* duplicated"),
        evidence=("gates/G4/experiments/*/outcome.json", "chaos_report.md"),
    ),
    CheckSpec(
        id="G4.rollback",
        title="bad-deploy rollback drill: the canary seen failing by the harness and the target's alert, "
        "rolled back and restored within the budget, nothing lost",
        requirements=("G4", "C6"),
        measurements=(f"{DRILL} *",),
        details=("rollback.status",),
        evidence=(f"gates/G4/{DRILL_FILE}", DRILL_DOC),
    ),
)


class ChaosGate(Gate):
    """G4: every experiment recovers within its budget and loses and duplicates no accepted work."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="G4",
        title="Chaos recovery",
        requirements=("G4", "C1", "C2", "C3", "C4", "C5", "C6"),
        needs_service=True,
        timeout_s=4 * 3600.0,
        documents=("chaos_report.md", "chaos"),
        checks=CHECKS,
    )
    policy_model: ClassVar[type[Policy]] = ChaosPolicy

    def config_gaps(self, config: CertifyConfigBase, target_dir: Path) -> list[str]:
        """A service, and at least one experiment."""
        gaps = super().config_gaps(config, target_dir)
        if not config.policy("G4").experiments and config.policy("G4").rollback is None:
            gaps.append("no [[gates.G4.experiments]] and no [gates.G4.rollback]: no fault to inject")
        return gaps

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """Baseline, fault window, typical recovery and overhead per repetition, scheduled as `collect` does."""
        assert isinstance(policy, ChaosPolicy)  # noqa: S101 - the registry pairs gate and policy
        durations = {}
        for exp in policy.experiments:
            per = policy.baseline_s + policy.moment_jitter_s / 2 + policy.fault_window_s(exp, mode) + policy.stable_s
            per += 2 * CAPACITY_BURST_S + REPETITION_OVERHEAD_S
            starts = policy.reps(mode) if exp.fresh_instance else 1
            applicable = injector_for(exp.fault).not_applicable() is None
            durations[exp.id] = (per * policy.reps(mode) + INSTANCE_OVERHEAD_S * starts) if applicable else 0.0
        jobs = start_order([job_of(exp, injector_for(exp.fault)) for exp in policy.experiments])
        if policy.rollback is not None:
            durations[DRILL_JOB] = drill_planned_s(policy)
            jobs.insert(0, Job(DRILL_JOB, frozenset({DRILL_JOB})))
        return max(planned_makespan_s(jobs, durations, policy.concurrency), 5.0)

    def plan_lines(self, policy: Policy, mode: str) -> list[str]:
        """How many repetitions each experiment runs and on how many instances (#25 item 4)."""
        assert isinstance(policy, ChaosPolicy)  # noqa: S101 - the registry pairs gate and policy
        reps = policy.reps(mode)
        shared = [exp.id for exp in policy.experiments if not exp.fresh_instance]
        fresh = [exp.id for exp in policy.experiments if exp.fresh_instance]
        seed = f"seed {policy.seed}" if policy.seed is not None else "a new seed (recorded in gates/G4/chaos_run.json)"
        lines = [
            f"{reps} repetition(s) per experiment, each fault at a random moment up to "
            f"{policy.moment_jitter_s:g} s after the baseline ({seed})"
        ]
        if shared:
            lines.append(f"back to back on one instance: {', '.join(shared)}")
        if fresh:
            lines.append(f"a fresh instance per repetition (fresh_instance = true): {', '.join(fresh)}")
        if policy.rollback is not None:
            how = "waits for the target's own rollback" if policy.rollback.automatic else "runs the declared rollback"
            lines.append(
                f"C6 rollback drill on an instance of its own: deploys the bad canary, {how} once the probes and "
                f"{policy.rollback.alert_metric} have seen it, restored within {policy.rollback.budget_s:g} s"
            )
        return lines

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Run every experiment; store raw records, journals, timelines and the report."""
        assert isinstance(policy, ChaosPolicy)  # noqa: S101 - the registry pairs gate and policy
        seed = policy.seed if policy.seed is not None else secrets.randbelow(2**31)
        ctx.write_json(
            RUN_FILE,
            {
                "mode": ctx.mode,
                "experiments": [e.id for e in policy.experiments],
                "seed": seed,
                "replay": f"[gates.G4] seed = {seed} replays this run's fault moments and kill choices",
            },
        )
        stored: dict[str, Stored] = {}
        if not policy.experiments and policy.rollback is None:
            self._write_report(ctx, policy, stored, seed)
            return
        python = ctx.target_python()
        base_url, server = find_or_start_toxiproxy(ctx.scratch / "toxiproxy")
        REGISTRY.add(server)  # so an interrupted run kills it with every other child
        spans: list[Span] = []
        jobs = {exp.id: (exp, job_of(exp, injector_for(exp.fault))) for exp in policy.experiments}
        try:
            client = ToxiproxyClient(base_url, timeout_s=10.0)
            ctx.record_tool("toxiproxy", client.version())
            run = _Run(
                ChaosLauncher(ctx.config, ctx.target_dir, ctx.scratch, REGISTRY, client), python, stored, seed=seed
            )

            def work(job: Job) -> None:
                if job.id == DRILL_JOB:
                    result: Stored = (self._drill(ctx, policy, run), [])
                else:
                    result = self._experiment(ctx, policy, run, jobs[job.id][0])
                with run.lock:
                    stored[job.id] = result

            order = start_order([job for _exp, job in jobs.values()])
            if policy.rollback is not None:  # first: it shares nothing, so it runs beside the first experiment
                order.insert(0, Job(DRILL_JOB, frozenset({DRILL_JOB})))
            run_scheduled(order, policy.concurrency, work, ctx.cancel, spans)
        finally:
            stop_toxiproxy(server)
            REGISTRY.discard(server)
            with contextlib.suppress(OSError):
                ctx.copy_in("toxiproxy-server.log", ctx.scratch / "toxiproxy" / "toxiproxy-server.log")
            ctx.write_json(SCHEDULE_FILE, _schedule_record(policy, spans))
            self._write_report(ctx, policy, stored, seed)

    def _drill(self, ctx: GateContext, policy: ChaosPolicy, run: _Run) -> dict[str, Any]:
        """C6: the rollback drill on an instance of its own; its record in gates/G4/rollback/drill.json."""
        ctx.progress(f"{DRILL_JOB}: starting an instance")
        try:
            inst = run.launcher.start(run.python, f"G4-{DRILL_JOB}", InstanceOptions())
        except TargetError as exc:
            for item in exc.output_files:
                path = Path(str(item))
                ctx.copy_in(f"instances/{DRILL_JOB}/{path.name}", path)
            failed = {"outcome": "start_failed", "reason": exc.message}
            ctx.write_json(DRILL_FILE, failed)
            return failed
        run.live.up(DRILL_JOB, f"127.0.0.1:{inst.port}")
        try:
            ctx.progress(f"{DRILL_JOB}: deploying the bad canary under load")
            settings = {**_drill_settings(ctx, policy), "started_at": dt.datetime.now(dt.UTC).isoformat()}
            assert ctx.config.service is not None  # noqa: S101 - the launcher refused a config without [service]
            drill = Drill(inst, policy, settings, ctx.cancel, run.python, ctx.target_dir, REGISTRY)
            # Not in the record (env values may be private); values that are templates of the instance's
            # dependency addresses ({db_url}) are left out: the launcher fills those for the service only.
            drill.service_env = {k: v for k, v in ctx.config.service.env.items() if "{" not in v}
            record = drill.run()
            ctx.write_json(DRILL_FILE, record)
            return record
        finally:
            run.launcher.stop(inst)
            run.live.down(DRILL_JOB)
            for path in inst.output_files():
                ctx.copy_in(f"instances/{DRILL_JOB}/{path.name}", path)

    def _experiment(self, ctx: GateContext, policy: ChaosPolicy, run: _Run, exp: Experiment) -> Stored:
        """One experiment: check it can run, start its instance, run its repetitions, stop it."""
        injector = injector_for(exp.fault)
        reps = policy.reps(ctx.mode)
        outcome: dict[str, Any] = {
            "repetitions": reps,
            "fault_s": policy.fault_window_s(exp, ctx.mode),
            "seed": run.seed,
            "instances": "one per repetition" if exp.fresh_instance else "one, repetitions back to back",
        }
        name = f"experiments/{exp.id}/outcome.json"
        for status, reason in (("not_applicable", injector.not_applicable()), ("not_run", injector.unavailable())):
            if reason is not None:
                outcome.update(status=status, reason=reason)
                ctx.write_json(name, outcome)
                return outcome, []
        outcome.update(status="ran", reason="")
        ctx.write_json(name, outcome)  # a crash mid-way then leaves "k of n repetitions recorded"
        records: list[dict[str, Any]] = []
        batches = [[n] for n in range(1, reps + 1)] if exp.fresh_instance else [list(range(1, reps + 1))]
        for batch in batches:
            failed = self._on_instance(ctx, policy, run, exp, injector, batch, records)
            if failed is not None:
                outcome.update(status="start_failed", reason=failed)
                ctx.write_json(name, outcome)
                return outcome, records
        return outcome, records

    def _on_instance(  # noqa: PLR0917 - one instance of one experiment and the repetitions it runs
        self,
        ctx: GateContext,
        policy: ChaosPolicy,
        run: _Run,
        exp: Experiment,
        injector: Injector,
        batch: list[int],
        records: list[dict[str, Any]],
    ) -> str | None:
        """Start an instance, run these repetitions on it back to back, stop it; why it did not start, or None."""
        ctx.progress(f"{exp.id}: starting an instance")
        folder = f"instances/{exp.id}" + (f"/rep-{batch[0]}" if exp.fresh_instance else "")
        try:
            inst = run.launcher.start(run.python, f"G4-{exp.id}-{batch[0]}", injector.options())
        except TargetError as exc:
            for item in exc.output_files:
                path = Path(str(item))
                ctx.copy_in(f"{folder}/{path.name}", path)
            return exc.message
        run.live.up(exp.id, f"127.0.0.1:{inst.port}")
        try:
            with ctx.observed(exp.id, f"http://127.0.0.1:{inst.port}"):
                self._repetitions(
                    ctx, policy, inst, exp, injector, records=records, live=run.live, batch=batch, seed=run.seed
                )
        finally:
            run.launcher.stop(inst)
            run.live.down(exp.id)
            for path in inst.output_files():
                ctx.copy_in(f"{folder}/{path.name}", path)
        return None

    def _repetitions(
        self,
        ctx: GateContext,
        policy: ChaosPolicy,
        inst: ChaosInstance,
        exp: Experiment,
        injector: Injector,
        *,
        records: list[dict[str, Any]],
        live: LiveInstances,
        batch: list[int],
        seed: int,
    ) -> None:
        """Run and store these repetitions back to back on one instance, with their journals and timelines.

        Each repetition's fault lands at a seeded random moment after the baseline, and a kill picks among
        the matching processes with the same seeded source, so `[gates.G4] seed` replays both.
        """
        carried: list[str] = []
        reps = policy.reps(ctx.mode)
        for n in batch:
            ctx.progress(f"{exp.id}: repetition {n}/{reps} ({exp.title})")
            rng = policy.moment_rng(seed, exp, n)
            moment = round(rng.uniform(0.0, policy.moment_jitter_s), 3)
            injector.rng = rng
            started = dt.datetime.now(dt.UTC)
            record = Repetition(
                inst, policy, exp, injector, settings=_settings(ctx, policy, exp), cancel=ctx.cancel, moment_s=moment
            ).run(carried)
            record["started_at"] = started.isoformat()
            record["seed"] = seed
            record["repetition"] = n
            ctx.write_json(f"experiments/{exp.id}/rep-{n}.json", record)
            records.append(record)
            carried = record["reconciliation"]["open_ids"]
            found = analyse(record, policy.healthy_latency_s, policy.stable_s)
            window = _Window(rep=n, t0=started.timestamp(), fault=record["fault"], found=found)
            _observe_window(ctx, policy, inst, exp, window, live=live)
            journal = build_journal(exp, record, found, started)
            ctx.write_document(f"chaos/{exp.id}/journal-{n}.json", _json_bytes(journal))
            title = f"{exp.id} repetition {n}: {exp.title}"
            svg = render(title, record, found, policy.healthy_latency_s, policy.budget_s(exp))
            ctx.write_document(f"chaos/{exp.id}/timeline-{n}.svg", svg.encode("utf-8"))

    def _write_report(self, ctx: GateContext, policy: ChaosPolicy, stored: dict[str, Stored], seed: int) -> None:
        """chaos_report.md from the records just written, judged as evaluate judges them."""
        judged = [judge_experiment(exp, *stored.get(exp.id, (None, [])), policy) for exp in policy.experiments]
        status = _gate_status(policy, judged)
        keys = {"probe_interval_s", "healthy_latency_s", "stable_s", "work_rate_per_s", "ci_fault_s", "concurrency"}
        facts = {**policy.model_dump(include=keys), "repetitions": policy.reps(ctx.mode)}
        facts["seed"] = seed
        ctx.write_document("chaos_report.md", render_report(judged, ctx.mode, facts, status.value).encode("utf-8"))
        if policy.rollback is not None:
            record = stored.get(DRILL_JOB, (None, []))[0]
            ctx.write_document(DRILL_DOC, render_drill(_judge_drill(policy, record)).encode("utf-8"))

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """Judge each experiment from its records (and the rollback drill); every counted one must pass."""
        assert isinstance(policy, ChaosPolicy)  # noqa: S101 - the registry pairs gate and policy
        verdict = self._evaluate_experiments(evidence, policy)
        if policy.rollback is None:
            return verdict
        drill = _judge_drill(policy, evidence.read_json(DRILL_FILE) if evidence.exists(DRILL_FILE) else None)
        status = Status(drill["status"]) if not policy.experiments else worst([verdict.status, Status(drill["status"])])
        reasons = [r for r in verdict.reasons if policy.experiments] + list(drill["reasons"])
        return Verdict(
            status=status,
            reasons=tuple(reasons),
            measurements=verdict.measurements + _drill_measurements(drill),
            details={**verdict.details, "rollback": {k: v for k, v in drill.items() if not k.endswith("_ids")}},
        )

    def _evaluate_experiments(self, evidence: Evidence, policy: ChaosPolicy) -> Verdict:
        """The experiments' verdict (NOT_RUN when none is declared)."""
        if not policy.experiments:
            return Verdict.of(Status.NOT_RUN, "no experiments declared in [gates.G4] (add [[gates.G4.experiments]])")
        judged = [judge_experiment(exp, *_stored(evidence, exp), policy) for exp in policy.experiments]
        reasons: list[str] = []
        measurements: list[Measurement] = []
        for exp, item in zip(policy.experiments, judged, strict=True):
            reasons.extend(item["reasons"])
            rec = (item.get("recovery_s") or {}).get("max")
            if rec is not None:
                measurements.append(Measurement.judged(f"{exp.id} max recovery time", rec, "<=", item["budget_s"], "s"))
            restore = (item.get("capacity_restore_s") or {}).get("max")
            if restore is not None:
                measurements.append(
                    Measurement.judged(f"{exp.id} max capacity restore time", restore, "<=", item["budget_s"], "s")
                )
            if item.get("throughput_ratio_min") is not None:
                measurements.append(
                    Measurement.judged(
                        f"{exp.id} min throughput after/before",
                        item["throughput_ratio_min"],
                        ">=",
                        policy.capacity.min_fraction,
                    )
                )
            for key in ("lost", "not_completed", "duplicated"):
                if item.get(key) is not None:
                    measurements.append(Measurement.judged(f"{exp.id} {key.replace('_', ' ')}", item[key], "==", 0))
        status = _gate_status(policy, judged)
        if not _counted(policy, judged):
            reasons.append("no experiment that counts towards G4 could run")
        return Verdict(
            status=status,
            reasons=tuple(reasons),
            measurements=tuple(measurements),
            details={"experiments": [{k: v for k, v in item.items() if k != "per_repetition"} for item in judged]},
        )


def _counted(policy: ChaosPolicy, judged: list[dict[str, Any]]) -> list[Status]:
    """Statuses that decide G4: not-applicable ones never, optional ones only when they pass."""
    statuses = []
    for exp, item in zip(policy.experiments, judged, strict=True):
        if item["status"] == NOT_APPLICABLE:
            continue
        status = Status(item["status"])
        if exp.optional and status is not Status.PASS:
            continue
        statuses.append(status)
    return statuses


def _gate_status(policy: ChaosPolicy, judged: list[dict[str, Any]]) -> Status:
    """G4's status: the worst counted experiment; NOT_RUN when none counts."""
    if not policy.experiments:
        return Status.NOT_RUN
    statuses = _counted(policy, judged)
    return worst(statuses) if statuses else Status.NOT_RUN


def _stored(evidence: Evidence, exp: Experiment) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """An experiment's outcome and its repetition records, as stored."""
    name = f"experiments/{exp.id}/outcome.json"
    if not evidence.exists(name):
        return None, []
    outcome = evidence.read_json(name)
    records = []
    for n in range(1, int(outcome["repetitions"]) + 1):
        rep = f"experiments/{exp.id}/rep-{n}.json"
        if evidence.exists(rep):
            records.append(evidence.read_json(rep))
    return outcome, records


def _schedule_record(policy: ChaosPolicy, spans: list[Span]) -> dict[str, Any]:
    """schedule.json: the concurrency and, per experiment that started, when it ran and what it held."""
    return {
        "concurrency": policy.concurrency,
        "experiments": [
            {"id": s.id, "start": round(s.start, 3), "end": round(s.end, 3), "resources": list(s.resources)}
            for s in spans
        ],
    }


def _json_bytes(data: Any) -> bytes:
    """Stable JSON bytes for a document."""
    import json  # noqa: PLC0415 - only documents need it

    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


@dataclass(frozen=True)
class _Window:
    """One repetition's fault facts and analysis, on its clock starting at unix time t0."""

    rep: int
    t0: float
    fault: dict[str, Any]
    found: dict[str, Any]


def _observe_window(
    ctx: GateContext,
    policy: ChaosPolicy,
    inst: ChaosInstance,
    exp: Experiment,
    window: _Window,
    *,
    live: LiveInstances,
) -> None:
    """Tell the run's observer (G6) when this repetition's fault was in and until the harness saw recovery.

    `concurrent` lists the other experiments' instances that were up during the window.
    """
    rep, t0, fault, found = window.rep, window.t0, window.fault, window.found
    if fault.get("injected_at_s") is None:
        return
    removed = fault.get("removed_at_s")
    recovered = found.get("recovered_at_s")
    if recovered is not None:
        end = recovered
    elif removed is not None:
        end = removed + policy.recovery_budget_s
    else:
        end = fault["injected_at_s"] + policy.recovery_budget_s
    info = {
        "instance": f"127.0.0.1:{inst.port}",
        "repetition": rep,
        "removed_at": None if removed is None else round(t0 + removed, 3),
        "recovered": recovered is not None,
        "title": exp.title,
    }
    start_at, end_at = t0 + fault["injected_at_s"], t0 + end
    info["concurrent"] = live.during(start_at, end_at, besides=exp.id)
    ctx.observe_window(f"{exp.id}#{rep}", "chaos", start_at, end_at, info)


def drill_planned_s(policy: ChaosPolicy) -> float:
    """Pure: a typical drill on guardian: an instance, steady state, baseline, ~10 s to restored, the drain."""
    return INSTANCE_OVERHEAD_S + policy.baseline_s + 10.0 + policy.stable_s + REPETITION_OVERHEAD_S


def _drill_settings(ctx: GateContext, policy: ChaosPolicy) -> dict[str, Any]:
    """Paths and durations the drill runs with (stored with its record)."""
    assert ctx.config.service is not None  # noqa: S101 - the launcher refused a config without [service]
    return {
        "mode": ctx.mode,
        "readiness": ctx.config.service.readiness,
        "metrics": ctx.config.service.metrics or "",
        "probe_interval_s": policy.probe_interval_s,
        "healthy_latency_s": policy.healthy_latency_s,
        "stable_s": policy.stable_s,
    }


def _judge_drill(policy: ChaosPolicy, record: dict[str, Any] | None) -> dict[str, Any]:
    """The drill judged under the gate's policy."""
    assert policy.rollback is not None  # noqa: S101 - only called when a drill is declared
    return judge_drill(record, policy.rollback.budget_s, policy.healthy_latency_s, policy.stable_s)


def _drill_measurements(drill: dict[str, Any]) -> tuple[Measurement, ...]:
    """The drill's judged figures: deploy-to-restored within the budget, the ledger; detections as facts."""
    found = []
    if drill.get("restored_s") is not None:
        found.append(
            Measurement.judged(f"{DRILL} deploy-to-restored time", drill["restored_s"], "<=", drill["budget_s"], "s")
        )
    for key, label in (("harness_detect_s", "harness detection time"), ("alert_detect_s", "alert detection time")):
        if drill.get(key) is not None:
            found.append(Measurement.judged(f"{DRILL} {label}", drill[key], "<=", drill["budget_s"], "s"))
    for key in ("lost", "not_completed", "duplicated"):
        if drill.get(key) is not None:
            found.append(Measurement.judged(f"{DRILL} {key.replace('_', ' ')}", drill[key], "==", 0))
    return tuple(found)
