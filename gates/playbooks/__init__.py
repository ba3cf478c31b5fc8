"""Gate PB: every playbook of the target verified end to end on its own instance, trusting nothing it says.

For each playbook the target lists: inject its fault, see it with the harness's own probes, check the
dry-run changes nothing, check tier 2/3 refusals, wait for the harness's probes (not the playbook's
verify) to see health back, roll back and compare with the state before execute, reconcile a ledger
of work submitted throughout. Then governance on a separate instance: out-of-bounds parameters and a
run forced past the watchdog. `evaluate` recomputes everything from the stored raw observations.
"""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from gates.playbooks import audit_chain
from gates.playbooks.canaries import collect_canaries, judge_canaries
from gates.playbooks.config import PlaybookPolicy, undeclared_notes
from gates.playbooks.duplicates import collect_duplicates, judge_duplicates
from gates.playbooks.failure_modes import judge_failure_modes
from gates.playbooks.governance import collect_governance, judge_governance
from gates.playbooks.instances import PlaybookInstances
from gates.playbooks.judge import judge_playbook, judge_run
from gates.playbooks.observe import field
from gates.playbooks.report import render_json, render_markdown, render_svg
from gates.playbooks.rollback_docs import collect_rollback_docs, judge_rollback_docs
from gates.playbooks.scenario import PlaybookRun
from gates.playbooks.stats import judge_claims
from harness.checks import CheckSpec
from harness.context import GateContext
from harness.errors import TargetError, ToolMissingError
from harness.evidence import dump_json
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import Measurement, Status, Verdict, worst

if TYPE_CHECKING:
    from pathlib import Path

    from harness.config import CertifyConfigBase

PLAN = "plan.json"
GOVERNANCE = "governance.json"
ROLLBACK_DOCS = "rollback_docs.json"
CANARIES = "canaries.json"
DUPLICATES = "duplicates.json"
DOCUMENTS = ("playbooks_report.md", "playbooks_report.json", "playbooks_mttr.svg")


def _listed(policy: PlaybookPolicy, governance: dict[str, Any]) -> list[dict[str, Any]]:
    """The playbooks the target listed: id, tier, fault (pure)."""
    items = field((governance.get("list") or {}).get("body"), policy.target_api.list_items)
    api = policy.target_api
    return [
        {
            "id": str(item.get(api.id_field)),
            "tier": int(item.get(api.tier_field) or 1),
            "fault": item.get(api.fault_field, ""),
        }
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict)
    ]


def _unverified(reason: str) -> dict[str, Any]:
    """The report row of a listed playbook that was not verified."""
    return {
        "checks": {},
        "verdict": "NOT_RUN",
        "recovery_s": [],
        "target_recovery_s": [],
        "ledger": [],
        "reasons": [reason],
    }


def _percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def _prefixed(checks: dict[str, str], prefix: str) -> dict[str, str]:
    """The governance sub-checks of one requirement (their names start with its id)."""
    return {name: status for name, status in checks.items() if name.startswith(prefix)}


def _store_rollback_docs(ctx: GateContext, policy: PlaybookPolicy) -> dict[str, Any] | None:
    """H4: copy each declared playbook's runbook rollback section into the evidence (None: not declared)."""
    if policy.rollback_docs is None:
        return None
    docs = collect_rollback_docs(policy, ctx.target_dir)
    ctx.write_json(ROLLBACK_DOCS, docs)
    return docs


def _canary_job(
    ctx: GateContext, instances: PlaybookInstances, policy: PlaybookPolicy, slots: threading.Semaphore
) -> dict[str, Any] | None:
    """H7 on an instance of its own, holding one instance slot; the record is stored (None: not declared)."""
    if policy.canaries is None or ctx.config.service is None:
        return None
    with slots:
        ctx.progress("canary instance: metrics live, faults at the canaries' layers")
        try:
            record = collect_canaries(instances, policy, ctx.config.service.metrics or "/metrics", ctx.cancel)
        except TargetError as exc:
            record = {"start_error": exc.message[-600:]}
    ctx.write_json(CANARIES, record)
    stored: dict[str, Any] = json.loads(dump_json(record))
    return stored


def _duplicates_job(
    ctx: GateContext, instances: PlaybookInstances, policy: PlaybookPolicy, slots: threading.Semaphore
) -> dict[str, Any] | None:
    """H12 on an instance of its own, holding one instance slot; the record is stored (None: not declared)."""
    if policy.duplicates is None:
        return None
    with slots:
        ctx.progress("duplicates instance: three approval requests, the governance clock moved")
        record = collect_duplicates(instances, policy, ctx.cancel)
    ctx.write_json(DUPLICATES, record)
    stored: dict[str, Any] = json.loads(dump_json(record))
    return stored


def _instances(ctx: GateContext, policy: PlaybookPolicy) -> PlaybookInstances:
    """The gate's instances (nothing started); NOT_RUN when there is no [service], then when no [gates.PB.api]."""
    instances = PlaybookInstances(ctx, policy)
    if policy.api is None:
        msg = "no [gates.PB.api]: the harness has no request to list the playbooks, inject or read incidents with"
        raise ToolMissingError(msg)
    return instances


#: The checks that run on instances of their own beside the governance instance (H7, H12).
_SIDE_JOBS = (_canary_job, _duplicates_job)


class _Slot:
    """One of the gate's `parallel` instance slots, held from a run's start until its last observation."""

    def __init__(self, slots: threading.Semaphore) -> None:
        """Wait for a free slot."""
        slots.acquire()
        self._slots = slots
        self._held = True
        self._lock = threading.Lock()

    def release(self) -> None:
        """Give the slot back (once; later calls do nothing)."""
        with self._lock:
            if self._held:
                self._held = False
                self._slots.release()


#: What this gate evidences (the traceability matrix).
CHECKS = (
    CheckSpec(
        id="PB.count",
        title="every playbook the target lists is loaded, as many as the catalogue names",
        requirements=("H1",),
        measurements=("playbooks listed",),
        evidence=("gates/PB/plan.json",),
    ),
    CheckSpec(
        id="PB.lifecycle",
        title="per playbook: fault seen, dry-run without side effects, execute, verify, rollback",
        requirements=("H2",),
        details=("playbooks",),
        evidence=("playbooks_report.json", "playbooks_report.md"),
    ),
    CheckSpec(
        id="PB.mttr",
        title="MTTR from the harness's own probe timeline",
        requirements=("H5",),
        measurements=("MTTR max",),
        evidence=("playbooks_mttr.svg", "playbooks_report.json"),
    ),
    CheckSpec(
        id="PB.healer-stats",
        title="the healer stats API agrees with the target's own incident list, read before and after each run",
        requirements=("H6",),
        details=("healer_stats",),
        evidence=("playbooks_report.json",),
    ),
    CheckSpec(
        id="PB.learning",
        title="learning aggregates (24 h, 7 d, all) and scheduler counters agree with the incident list and audit log",
        requirements=("H14",),
        details=("learning",),
        evidence=("playbooks_report.json",),
    ),
    CheckSpec(
        id="PB.audit-chain",
        title="the target's hash-chained audit log, every hash recomputed by the harness",
        requirements=("S6",),
        details=(f"governance.{audit_chain.CHECK}",),
        evidence=("gates/PB/governance.json",),
    ),
    CheckSpec(
        id="PB.sandbox",
        title="measured on the running instance: not root, data dir not group/world writable, secret files 0600, "
        "listening only on the configured interface, playbook actions within the policy",
        requirements=("S5",),
        details=("sandbox",),
        evidence=("gates/PB/governance.json",),
    ),
    CheckSpec(
        id="PB.at-rest",
        title="a canary written through the API per sensitive store, searched for in every file of the data dir",
        requirements=("S7",),
        details=("at_rest",),
        evidence=("gates/PB/governance.json",),
    ),
    CheckSpec(
        id="PB.failure-modes",
        title="the target's top 10 failure modes, each handled by a playbook that PASSed here: its verify hook "
        "passed and the harness's own probes saw health back",
        requirements=("H3",),
        details=("failure_modes",),
        evidence=("playbooks_report.json", "playbooks_report.md"),
    ),
    CheckSpec(
        id="PB.rollback-docs",
        title="every playbook's rollback ran and matched the state before execute; its runbook's rollback "
        "section exists and names the declared rollback steps",
        requirements=("H4",),
        details=("rollback_docs",),
        evidence=("gates/PB/rollback_docs.json", "playbooks_report.json"),
    ),
    CheckSpec(
        id="PB.canaries",
        title="canary metrics of every layer L2-L7 present and live; a fault at each layer that must react (L4 port "
        "closed, L5 session cut, L6 answer truncated, L7 wrong response) moves its canary within its interval; "
        "layers left out (L2/L3) are reported not observable here, never PASS",
        requirements=("H7",),
        measurements=("canary * reaction",),
        details=("canaries",),
        evidence=("gates/PB/canaries.json", "playbooks_report.json"),
    ),
    CheckSpec(
        id="PB.duplicates",
        title="two approval requests for the same service and diagnosis within 10 minutes: the second refused and "
        "audited; with the governance clock moved past the window a third is accepted",
        requirements=("H12",),
        details=("duplicates",),
        evidence=("gates/PB/duplicates.json", "playbooks_report.json"),
    ),
    CheckSpec(
        id="PB.governance",
        title="approval, change window, run timeout, parameter bounds and the audit log, held and audited",
        requirements=("H8", "H9", "H10", "H11", "H13"),
        evidence=("gates/PB/governance.json",),
    ),
)


class PlaybookGate(Gate):
    """Verifies the target's self-healing playbooks end to end."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="PB",
        title="Self-healing playbooks",
        requirements=(
            "H1",
            "H2",
            "H3",
            "H4",
            "H5",
            "H6",
            "H7",
            "H8",
            "H9",
            "H10",
            "H11",
            "H12",
            "H13",
            "H14",
            "S5",
            "S6",
            "S7",
        ),
        needs_service=True,
        timeout_s=3600,
        documents=DOCUMENTS,
        checks=CHECKS,
    )
    policy_model: ClassVar[type[Policy]] = PlaybookPolicy

    def config_gaps(self, config: CertifyConfigBase, target_dir: Path) -> list[str]:
        """A service, and probes declared for its playbooks."""
        gaps = super().config_gaps(config, target_dir)
        if not config.policy("PB").playbooks:
            gaps.append("no [gates.PB.playbooks.<id>]: no playbook has probes declared, none can be verified")
        return gaps

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """About 20 s per playbook run, spread over the parallel instances, plus the governance instance.

        The S7 canaries add their settle time and a read of the data dir per store (S5 is a glance).
        """
        assert isinstance(policy, PlaybookPolicy)  # noqa: S101 - the registry pairs gate and policy
        reps = policy.repetitions_ci if mode == "ci" else policy.repetitions
        count = max(len(policy.playbooks), 1)
        at_rest = len(policy.at_rest.stores) * (policy.at_rest.settle_s + 1.0) if policy.at_rest else 0.0
        canaries = policy.canaries
        canary_s = 3 * canaries.interval_s * (1 + len(canaries.faults)) if canaries else 0.0
        duplicates_s = 3 * policy.duplicates.step_timeout_s / 2 if policy.duplicates else 0.0
        return 40.0 + 20.0 * count * reps / policy.parallel + at_rest + (canary_s + duplicates_s) / policy.parallel

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Governance instance first (the list), then every declared and listed playbook on its own instance.

        The governance instance holds one of the `parallel` instance slots; the playbook runs start as
        soon as it has read the list, while it goes on with the parameter and watchdog checks.
        """
        assert isinstance(policy, PlaybookPolicy)  # noqa: S101 - the registry pairs gate and policy
        started = time.monotonic()
        instances = _instances(ctx, policy)
        slots = threading.Semaphore(policy.parallel)
        listed_answer: list[dict[str, Any]] = []
        list_read = threading.Event()

        def on_list(answer: dict[str, Any]) -> None:
            listed_answer.append(answer)
            list_read.set()

        def governance_run() -> dict[str, Any]:
            with slots:
                try:
                    return collect_governance(instances, policy, ctx.cancel, on_list)
                finally:
                    list_read.set()  # no list (start failure, crash): nothing waits for one

        def one(job: tuple[dict[str, Any], int]) -> tuple[str, dict[str, Any]] | None:
            item, rep = job
            slot = _Slot(slots)
            try:
                if ctx.cancel.is_set():
                    return None
                ctx.progress(f"{item['id']} run {rep}/{reps}")
                run = PlaybookRun(policy, item["id"], item["tier"], rep, ctx.cancel)
                record = run.execute(instances, observed=slot.release)
            finally:
                slot.release()
            name = f"runs/{item['id']}-r{rep}.json"
            ctx.write_json(name, record)
            return name, json.loads(dump_json(record))

        ctx.progress("governance instance: list, parameters, watchdog")
        reps = policy.repetitions_ci if ctx.mode == "ci" else policy.repetitions
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="pb-governance") as governor:
            pending = governor.submit(governance_run)
            canaries, duplicates = (governor.submit(job, ctx, instances, policy, slots) for job in _SIDE_JOBS)
            list_read.wait()
            listed = _listed(policy, {"list": listed_answer[0]}) if listed_answer else []
            jobs = [(item, rep) for item in listed if item["id"] in policy.playbooks for rep in range(1, reps + 1)]
            # Twice as many threads as slots: a run whose instance is shutting down holds a thread, not a slot.
            with ThreadPoolExecutor(max_workers=2 * policy.parallel, thread_name_prefix="pb") as pool:
                done = [result for result in pool.map(one, jobs) if result is not None]
            governance = pending.result()
        ctx.write_json(GOVERNANCE, governance)
        if governance.get("start_error"):
            raise TargetError(f"the target did not start for the playbook gate: {governance['start_error']}")
        plan = {
            "mode": ctx.mode,
            "repetitions": reps,
            "parallel": policy.parallel,
            "runs": [n for n, _ in done],
            "elapsed_s": round(time.monotonic() - started, 1),
        }
        ctx.write_json(PLAN, plan)
        stored_governance = json.loads(dump_json(governance))
        summary = self.summarize(
            stored_governance,
            [record for _, record in done],
            plan,
            policy,
            docs=_store_rollback_docs(ctx, policy),
            canaries=canaries.result(),
            duplicates=duplicates.result(),
        )
        ctx.write_document("playbooks_report.json", render_json(summary))
        ctx.write_document("playbooks_report.md", render_markdown(summary))
        ctx.write_document("playbooks_mttr.svg", render_svg(summary))

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """Recompute every check from the stored raw records; the documents must match the recomputation."""
        assert isinstance(policy, PlaybookPolicy)  # noqa: S101 - the registry pairs gate and policy
        plan = evidence.read_json(PLAN)
        governance = evidence.read_json(GOVERNANCE)
        runs = [evidence.read_json(name) for name in plan["runs"]]
        docs = evidence.read_json(ROLLBACK_DOCS) if evidence.exists(ROLLBACK_DOCS) else None
        canaries = evidence.read_json(CANARIES) if evidence.exists(CANARIES) else None
        duplicates = evidence.read_json(DUPLICATES) if evidence.exists(DUPLICATES) else None
        summary = self.summarize(governance, runs, plan, policy, docs=docs, canaries=canaries, duplicates=duplicates)
        if evidence.exists("playbooks_report.json") and evidence.read_bytes("playbooks_report.json") != render_json(
            summary
        ):
            return Verdict.of(Status.FAIL, "playbooks_report.json does not match the recomputed summary")
        mttr = summary["mttr_s"]
        measurements = [
            Measurement.judged("playbooks listed", summary["listed"], "==", policy.expected_count),
            Measurement(name="playbooks verified (PASS)", value=summary["passed"]),
            Measurement(name="MTTR p50", value=mttr["p50"], unit="s"),
            Measurement(name="MTTR p95", value=mttr["p95"], unit="s"),
        ]
        if mttr["max"] is not None:
            measurements.append(Measurement.judged("MTTR max", mttr["max"], "<", policy.recovery_budget_s, "s"))
        canary = summary.get("canaries") or {}
        measurements += [
            Measurement.judged(f"canary {f['layer']} reaction", f["reaction_s"], "<=", canary["budget_s"], "s")
            for f in canary.get("faults", [])
            if f["reaction_s"] is not None
        ]
        return Verdict(
            status=Status(summary["status"]),
            reasons=(summary["headline"], *summary["reasons"][:40]),
            measurements=tuple(measurements),
            details={
                "playbooks": {row["id"]: row["verdict"] for row in summary["playbooks"]},
                "healer_stats": {
                    row["id"]: row["checks"]["stats"]
                    for row in summary["playbooks"]
                    if "stats" in row.get("checks", {})
                },
                "learning": {
                    row["id"]: row["checks"]["learning"]
                    for row in summary["playbooks"]
                    if "learning" in row.get("checks", {})
                },
                "governance": dict(summary["governance"]["checks"]),
                "sandbox": _prefixed(summary["governance"]["checks"], "S5 "),
                "at_rest": _prefixed(summary["governance"]["checks"], "S7 "),
                "failure_modes": dict(summary["failure_modes"]["checks"]),
                "rollback_docs": dict((summary.get("rollback_docs") or {}).get("checks", {})),
                "canaries": dict((summary.get("canaries") or {}).get("checks", {})),
                "duplicates": dict((summary.get("duplicates") or {}).get("checks", {})),
                "elapsed_s": plan["elapsed_s"],
                "parallel": plan["parallel"],
            },
        )

    @staticmethod
    def summarize(
        governance: dict[str, Any],
        runs: list[dict[str, Any]],
        plan: dict[str, Any],
        policy: PlaybookPolicy,
        *,
        docs: dict[str, Any] | None = None,
        canaries: dict[str, Any] | None = None,
        duplicates: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Pure: the whole judgement, the input of the verdict and of every document.

        The H3 failure modes, the H4 rollback docs, the H7 canaries and the H12 duplicate guard count
        towards the gate's status only once the target declares them; undeclared, their checks alone say
        FAIL / nothing recorded.
        """
        listed = _listed(policy, governance)
        judged: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            judged.setdefault(run["playbook"], []).append(judge_claims(policy, run, judge_run(policy, run)))
        rows: list[dict[str, Any]] = []
        reasons: list[str] = []
        statuses: list[Status] = []
        for item in listed:
            if item["id"] not in policy.playbooks:
                row = _unverified(f"{item['id']}: no probes declared for it in [gates.PB.playbooks]: not verified")
            elif not judged.get(item["id"]):
                row = _unverified(f"{item['id']}: not run (interrupted)")
            else:
                row = judge_playbook(judged[item["id"]])
            rows.append({**item, **row})
            reasons.extend(row["reasons"])
            statuses.append(Status(row["verdict"]))
        ids = {item["id"] for item in listed}
        missing = sorted(set(policy.playbooks) - ids)
        if missing:
            reasons.insert(0, f"declared in certify.toml but not listed by the target: {', '.join(missing)}")
            statuses.append(Status.FAIL)
        gov = judge_governance(policy, governance)
        reasons.extend(gov["reasons"])
        statuses.extend(Status("INCONCLUSIVE" if v == "INCONCLUSIVE" else v) for v in gov["checks"].values())
        count_ok = len(listed) == policy.expected_count
        if not count_ok:
            reasons.insert(0, f"the target lists {len(listed)} of {policy.expected_count} playbooks (requirement H1)")
            statuses.append(Status.FAIL)
        modes = judge_failure_modes(policy, rows)
        rollback_docs = judge_rollback_docs(policy, rows, docs)
        if policy.failure_modes:
            reasons.extend(modes["reasons"])
            statuses.extend(Status(v) for v in modes["checks"].values())
        if rollback_docs is not None:
            reasons.extend(rollback_docs["reasons"])
            statuses.extend(Status(v) for v in rollback_docs["checks"].values())
        canary = judge_canaries(policy, canaries)
        if canary is not None:
            reasons.extend(canary["reasons"])
            statuses.extend(Status(v) for v in canary["checks"].values())
        guard = judge_duplicates(policy, duplicates)
        if guard is not None:
            reasons.extend(guard["reasons"])
            statuses.extend(Status(v) for v in guard["checks"].values())
        reasons.extend(undeclared_notes(policy.target_api))
        recoveries = [value for row in rows for value in row["recovery_s"]]
        high = max(recoveries) if recoveries else None
        status = worst(statuses) if statuses else Status.INCONCLUSIVE
        passed = sum(1 for row in rows if row["verdict"] == "PASS")
        under = high is not None and high < 120.0 and passed == len(rows) and bool(rows)
        return {
            "status": status.value,
            "headline": f"{passed} of {len(listed)} listed playbooks verified end to end; "
            f"{len(listed)} listed, {policy.expected_count} expected",
            "listed": len(listed),
            "expected_count": policy.expected_count,
            "passed": passed,
            "mode": plan["mode"],
            "repetitions": plan["repetitions"],
            "parallel": plan["parallel"],
            "elapsed_s": plan["elapsed_s"],
            "runs": len(runs),
            "budget_s": policy.recovery_budget_s,
            "mttr_s": {
                "count": len(recoveries),
                "p50": _percentile(recoveries, 50),
                "p95": _percentile(recoveries, 95),
                "max": high,
            },
            "mttr_claim": "MTTR < 2 min: every playbook verified and the largest measured recovery is under 120 s"
            if under
            else "No MTTR < 2 min claim: it needs every playbook verified and the largest recovery < 120 s",
            "playbooks": rows,
            "failure_modes": modes,
            "rollback_docs": rollback_docs,
            "canaries": canary,
            "duplicates": guard,
            "governance": gov,
            "reasons": reasons,
        }
