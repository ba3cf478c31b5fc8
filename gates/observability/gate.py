"""Gate G6: a real Prometheus scrapes the target under G6's own load and fault; its numbers must agree with the harness.

`collect` (gates/observability/run.py) drives one instance through a load window and a fault window
while Prometheus scrapes it every second with the target's alert rules loaded, and keeps the direct
scrapes, the generator's raw rows, Prometheus's answers, promtool's output and the log file.
`evaluate` recomputes every check from those files (gates/observability/judge.py).
When G2/G3/G4 are planned before G6, `run_observer` also gives the run a second, run-wide Prometheus
that scrapes their instances while they run (shared.py); G6's collect keeps its answers and
shared_judge.py judges each load profile and chaos experiment from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from gates.observability import evidence as ev
from gates.observability.check import Check
from gates.observability.judge import assess
from gates.observability.policy import ObservabilityPolicy
from gates.observability.report import (
    DASHBOARD_EXPORT,
    LOGS_SAMPLE,
    REPORT,
    dashboard_export,
    log_sample,
    render_report,
)
from gates.observability.run import ObservabilityRun
from gates.observability.shared import SharedPrometheus, record_shared
from gates.observability.shared_judge import assess_shared
from gates.observability.slo import must_fire, slo_plan_lines
from gates.observability.slo_judge import SLO_REPORT, slo_report, slo_section
from harness.checks import CheckSpec
from harness.context import GateContext, RunServices
from harness.evidence import dump_json
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import Status, Verdict, worst
from harness.observer import Observer

if TYPE_CHECKING:
    from pathlib import Path

    from harness.config import CertifyConfigBase

#: Instance start, Prometheus start, first scrape, quiet scrapes, Locust start-ups and the queries.
OVERHEAD_S = 45.0
#: Typical wait for the must-fire burn-rate alerts to resolve after the fault (at most slo_resolve_s).
SLO_RESOLVE_TYPICAL_S = 15.0


def verdict_of(checks: list[Check]) -> Verdict:
    """The gate's verdict: worst check status; one reason per check, then its findings."""
    reasons = []
    for check in checks:
        reasons.append(f"{check.name}: {check.status.value}: {check.summary}")
        reasons += [f"{check.name}: {finding}" for finding in check.findings[:6]]
    measurements = tuple(m for check in checks for m in check.measurements)
    details: dict[str, Any] = {c.name: {"status": c.status.value, "rows": c.rows} for c in checks}
    return Verdict(
        status=worst([c.status for c in checks]), reasons=tuple(reasons), measurements=measurements, details=details
    )


#: What this gate evidences (the traceability matrix).
CHECKS = (
    CheckSpec(
        id="G6.logs",
        title="structured JSON logs, warnings during the fault",
        requirements=("G6", "O1"),
        details=("logs",),
        measurements=("valid JSON log lines", "WARNING/ERROR/CRITICAL lines during the fault"),
        evidence=("logs_sample/*",),
    ),
    CheckSpec(
        id="G6.metrics",
        title="scraped metrics: families, counters and histogram against what the load generator saw",
        requirements=("G6", "O2"),
        details=(
            "scrape",
            "metrics",
            "cross-check",
            "latency",
            "shared scrape",
            "shared cross-check",
            "shared latency",
        ),
        evidence=("gates/G6/prom/crosscheck.json",),
    ),
    CheckSpec(
        id="G6.dashboards",
        title="every dashboard panel returns data from the real Prometheus; exported",
        requirements=("G6", "O3"),
        details=("dashboards",),
        evidence=("observability_dashboard_export.json", "gates/G6/prom/dashboard-queries.json"),
    ),
    CheckSpec(
        id="G6.alerts",
        title="alert rules valid (promtool), firing during the fault and silent before",
        requirements=("G6", "O4"),
        details=("alert rules", "alerts", "shared alerts"),
        evidence=("gates/G6/promtool.json", "gates/G6/prom/alerts-range.json"),
    ),
    CheckSpec(
        id="G6.slo",
        title="SLO burn-rate alerts: shipped, proven by the harness's synthetic series, firing in the fault",
        requirements=("O6",),
        details=("slo",),
        measurements=("synthetic SLO cases not as expected", "must-fire burn alerts fired and resolved"),
        evidence=(
            "gates/G6/slo/synthetic.json",
            "gates/G6/promtool.json",
            "gates/G6/prom/alerts-range.json",
            SLO_REPORT,
        ),
    ),
    CheckSpec(
        id="G6.live",
        title="no frozen metric: every family moves with live traffic",
        requirements=("O5",),
        details=("live metrics",),
        evidence=("gates/G6/scrapes/*.txt",),
    ),
)


class ObservabilityGate(Gate):
    """G6: metrics, logs, alert rules and dashboards checked against a real Prometheus and G6's own traffic."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="G6",
        title="Observability",
        requirements=("G6", "O1", "O2", "O3", "O4", "O5", "O6"),
        needs_service=True,
        # Its run-wide Prometheus watches G2's and G4's instances: judged once they are done.
        after=("G2", "G3", "G4"),
        timeout_s=3600.0,
        documents=(REPORT, DASHBOARD_EXPORT, LOGS_SAMPLE, SLO_REPORT),
        checks=CHECKS,
    )
    policy_model: ClassVar[type[Policy]] = ObservabilityPolicy

    def config_gaps(self, config: CertifyConfigBase, target_dir: Path) -> list[str]:
        """A service that exposes a metrics endpoint."""
        gaps = super().config_gaps(config, target_dir)
        if config.service is not None and not config.service.metrics:
            gaps.append("[service] metrics is empty: no Prometheus endpoint to scrape")
        return gaps

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """Load window, fault window, drains and overhead (release: at least the configured fault length)."""
        assert isinstance(policy, ObservabilityPolicy)  # noqa: S101 - the registry pairs gate and policy
        ci = mode == "ci"
        load = policy.ci_load_s if ci else policy.load_s
        fault = policy.fault.ci_duration_s if ci else policy.fault.duration_s
        resolve = SLO_RESOLVE_TYPICAL_S if must_fire(policy) else 0.0
        return load + fault + 2 * policy.drain_s + 2 * policy.quiet_s + OVERHEAD_S + resolve

    def plan_lines(self, policy: Policy, mode: str) -> list[str]:
        """The two traffic windows."""
        assert isinstance(policy, ObservabilityPolicy)  # noqa: S101 - the registry pairs gate and policy
        ci = mode == "ci"
        fault = policy.fault.ci_duration_s if ci else policy.fault.duration_s
        zero = " (alerts loaded with for: 0s)" if ci and policy.ci_zero_for else ""
        lines = [
            f"load: {policy.rate_per_min:g}/min for {policy.ci_load_s if ci else policy.load_s:g} s",
            f"fault: {fault:g} s{zero}; expected alerts: {', '.join(policy.fault.expect_alerts) or 'none declared'}",
        ]
        return lines + slo_plan_lines(policy, mode)

    def run_observer(self, policy: Policy, services: RunServices, planned: tuple[str, ...]) -> Observer | None:
        """A run-wide Prometheus when a gate G6 watches (G2, G3, G4 by default) is planned before G6."""
        assert isinstance(policy, ObservabilityPolicy)  # noqa: S101 - the registry pairs gate and policy
        before = planned[: planned.index(self.spec.id)] if self.spec.id in planned else ()
        watched = tuple(gate for gate in policy.shared.gates if gate in before)
        return SharedPrometheus(policy, services, watched).start() if watched else None

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Run Prometheus, load and fault against one instance; write the evidence and the documents."""
        assert isinstance(policy, ObservabilityPolicy)  # noqa: S101 - the registry pairs gate and policy
        recorder = ev.Recorder(ctx)
        if isinstance(ctx.observer, SharedPrometheus):
            record_shared(ctx.observer, recorder, policy)
        facts = ObservabilityRun(ctx, policy, recorder).run()
        checks = assess(recorder, policy) + assess_shared(recorder, policy)
        status = worst([c.status for c in checks]).value
        actions = recorder.read_json(ev.FAULTS) if recorder.exists(ev.FAULTS) else []
        slo = slo_report(recorder, facts, policy)
        slo_check = next((c for c in checks if c.name == "slo"), None)
        text = render_report(checks, facts, status, actions)
        if slo_check is not None:
            text += "\n".join(slo_section(slo, slo_check))
        ctx.write_document(REPORT, (text.rstrip("\n") + "\n").encode("utf-8"))
        ctx.write_document(SLO_REPORT, dump_json(slo))
        dashboards = next(c for c in checks if c.name == "dashboards")
        ctx.write_document(DASHBOARD_EXPORT, dump_json(dashboard_export(recorder, facts, dashboards)))
        if facts["log"].get("file"):
            text = recorder.read_text(facts["log"]["file"])
            sample = log_sample(text, facts, policy.log_sample_lines, policy.log_ts_field)
            name = facts["log"]["file"].removeprefix("logs/")
            ctx.write_document(f"{LOGS_SAMPLE}/{name}", sample.encode("utf-8"))

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """Every check recomputed from the evidence; the worst status wins."""
        assert isinstance(policy, ObservabilityPolicy)  # noqa: S101 - the registry pairs gate and policy
        if not evidence.exists(ev.RUN):
            return Verdict.of(Status.INCONCLUSIVE, "G6 recorded no run facts")
        return verdict_of(assess(evidence, policy) + assess_shared(evidence, policy))
