"""Gate SOAK: the P4 soak load and the self-healing loop together, for hours, on one instance (H15).

Its checks claim H15 only: P4 and G3 stay evidenced by G2/G3's own P4 profile, so a run without the
(opt-in) soak does not turn them NOT_RUN; the soak's P4-length verdict is one of H15's conditions.

`certify soak --hours H` runs it alone (`certify run --gates SOAK` too, for the policy's hours of the
mode). collect is gates/soak_run.py; the verdict is gates/soak_judge.py's, from the stored files:
hourly latency percentiles and error rate from the raw per-request CSV, the service process's RSS
and open-fd growth from the harness's own /proc samples, every injected fault healed by the target
and seen healthy by the playbook gate's probes. A soak shorter than the catalogue's duration (8 h
for P4, 7 days for the loop) is abbreviated (R5): in release mode the gate is then INCONCLUSIVE, in
ci mode it is the shortened soak ci asks for and says so; either way it never evidences P4 or H15.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from gates import soak_run
from gates.playbooks.config import PlaybookPolicy
from gates.soak_judge import duration_judgement, instance_growth, judge_figures, segment_figures
from gates.soak_report import render_report_md
from gates.soak_run import PROGRESS, SoakRun
from harness.checks import CheckSpec
from harness.errors import PackError
from harness.evidence import dump_json
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import Measurement, Status, Verdict, worst

if TYPE_CHECKING:
    from harness.config import CertifyConfigBase
    from harness.context import GateContext

DOCUMENTS = ("soak_report.md", "soak_report.json")
#: Seven days and a margin: the loop's catalogue duration.
TIMEOUT_S = 8 * 24 * 3600.0


class SoakPolicy(Policy):
    """[gates.SOAK]: durations, the healing loop's pace, and the limits of the soak's figures."""

    hours: float = Field(8.0, gt=0, description="Release mode: hours of the P4 soak (catalogue P4: 8-12 h).")
    loop_hours: float = Field(
        168.0, gt=0, description="Hours the self-healing loop must run for H15 (catalogue: 7 days)."
    )
    ci_hours: float = Field(0.25, gt=0, description="ci mode: hours of the shortened soak (labelled shortened).")
    segment_s: float = Field(3600.0, ge=10, description="Length of one segment: the figures are given per segment.")
    fault_interval_s: float = Field(300.0, ge=5, description="Release mode: one injected fault every so many seconds.")
    ci_fault_interval_s: float = Field(60.0, ge=5, description="ci mode (and soaks under an hour): fault interval.")
    heal_budget_s: float = Field(120.0, gt=0, description="Longest the loop watches one fault for its heal.")
    sample_s: float = Field(5.0, gt=0, le=60, description="Interval of the /proc RSS and fd samples.")
    resource_warmup_s: float = Field(120.0, ge=0, description="Start of an instance left out of growth figures.")
    max_error_rate: float = Field(0.002, gt=0, le=1, description="Requirement G3: below 0.2% in the soak.")
    p99_ms: float | None = Field(
        None, gt=0, description="Hourly p99 HTTP latency bound; none: [gates.G2.profiles.P4] p99_ms."
    )
    max_rss_growth_mib_per_h: float = Field(
        8.0, ge=0, description="Service process RSS growth allowed per hour (at least one hour's worth)."
    )
    max_fd_growth_per_h: float = Field(
        4.0, ge=0, description="Service process open-fd growth allowed per hour (at least one hour's worth)."
    )
    fault_grace_s: float = Field(10.0, ge=0, description="Seconds after a heal's watch still counted in its window.")
    judge_fault_windows: bool = Field(
        False, description="true: judge error rate and p99 on every request, fault windows included (stricter)."
    )
    max_group_rss_growth_mib_per_h: float = Field(
        32.0, ge=0, description="RSS growth of the service's whole process group allowed per hour (workers, API...)."
    )
    max_group_fd_growth_per_h: float = Field(
        16.0, ge=0, description="Open-fd growth of the service's whole process group allowed per hour."
    )
    min_faults: int = Field(1, ge=0, description="Fewest injected faults watched to their end for a verdict.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence of the error rate's Wilson bound.")
    playbooks: tuple[str, ...] = Field(
        (), description="Playbooks the loop injects in turn; empty: every tier-1 playbook listed and declared in PB."
    )


class JudgedSoakPolicy(SoakPolicy):
    """What evaluate receives: [gates.SOAK] with the P4 p99 bound and the playbook gate's probes resolved."""

    p4_p99_ms: float
    pb: PlaybookPolicy


CHECKS = (
    CheckSpec(
        id="SOAK.load",
        title="P4 soak load beside the loop: hourly p99 HTTP latency, request error rate (< 0.2 %, Wilson bound)",
        requirements=("H15",),
        details=("checks.load",),
        evidence=("gates/SOAK/segments/*/raw.csv.gz", "soak_report.json"),
    ),
    CheckSpec(
        id="SOAK.resources",
        title="service process RSS and open file descriptors, from /proc by the harness: growth within limits",
        requirements=("H15",),
        details=("checks.resources",),
        evidence=("gates/SOAK/segments/*/proc.csv",),
    ),
    CheckSpec(
        id="SOAK.healing",
        title="self-healing loop: every fault the harness injected healed, seen healthy by the harness's probes",
        requirements=("H15",),
        details=("checks.healing",),
        evidence=("gates/SOAK/segments/*/heals.json",),
    ),
    CheckSpec(
        id="SOAK.h15-duration",
        title="H15: the soak ran its catalogue duration (P4 load 8 h, the self-healing loop 7 days); abbreviated "
        "is never PASS (R5)",
        requirements=("H15",),
        details=("checks.p4_duration", "checks.h15_duration"),
        evidence=("gates/SOAK/progress.json", "soak_report.md"),
    ),
)


class SoakGate(Gate):
    """The long soak: load and self-healing loop for the configured hours, judged per hour."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="SOAK",
        title="Soak: P4 load and the self-healing loop",
        requirements=("H15",),
        needs_service=True,
        runs_alone=True,
        timeout_s=TIMEOUT_S,
        documents=DOCUMENTS,
        checks=CHECKS,
    )
    policy_model: ClassVar[type[Policy]] = SoakPolicy

    def policy_for(self, config: CertifyConfigBase) -> Policy:
        """[gates.SOAK] plus the P4 p99 bound of [gates.G2] and the probes and API of [gates.PB]."""
        table = config.policy(self.spec.id)
        p4 = config.policy("G2").profiles.P4
        return JudgedSoakPolicy.model_validate(
            {**table.model_dump(), "p4_p99_ms": table.p99_ms or p4.p99_ms, "pb": config.policy("PB")}
        )

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """The requested hours (certify soak) or the policy's for the mode, plus start-up."""
        assert isinstance(policy, SoakPolicy)  # noqa: S101 - the registry pairs gate and policy
        asked = soak_run.REQUEST.hours
        hours = asked if asked is not None else (policy.hours if mode == "release" else policy.ci_hours)
        return hours * 3600 + 60

    def plan_lines(self, policy: Policy, mode: str) -> list[str]:
        """The soak's hours and what they count for."""
        assert isinstance(policy, SoakPolicy)  # noqa: S101 - the registry pairs gate and policy
        hours = self.planned_duration_s(policy, mode) / 3600 - 60 / 3600
        line = f"soak: {hours:g} h of P4 load with the self-healing loop"
        if hours < policy.hours or hours < policy.loop_hours:
            line += (
                f" (abbreviated: P4 needs {policy.hours:g} h, H15 {policy.loop_hours:g} h; never counts as the soak)"
            )
        return [line]

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Run the soak (resuming a pack if asked), then write the soak report from the stored files."""
        assert isinstance(policy, JudgedSoakPolicy)  # noqa: S101 - policy_for builds it
        run = SoakRun(ctx, policy, soak_run.REQUEST)
        try:
            run.run()
        finally:
            summary = summarize(lambda name: run.files[name], run.plan, run.segments, policy)
            if summary is not None:
                ctx.write_document("soak_report.json", dump_json(summary))
                ctx.write_document("soak_report.md", render_report_md(summary))

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """Recompute every hour's figures and the duration verdict from the stored segments."""
        assert isinstance(policy, JudgedSoakPolicy)  # noqa: S101 - policy_for builds it
        if not evidence.exists(PROGRESS):
            return Verdict.of(Status.INCONCLUSIVE, "no soak progress in the pack: the soak did not start")
        progress = evidence.read_json(PROGRESS)
        summary = summarize(evidence.read_bytes, progress["plan"], progress["segments"], policy)
        if summary is None:
            return Verdict.of(Status.INCONCLUSIVE, "the soak recorded no finished segment")
        return verdict_of(summary)


def summarize(
    read: Callable[[str], bytes], plan: dict[str, Any] | None, segments: list[dict[str, Any]], policy: JudgedSoakPolicy
) -> dict[str, Any] | None:
    """The soak's figures per hour and overall, from its segment files (None: no segment finished); pure."""
    if plan is None or not segments:
        return None
    metas, procs, hours = [], [], []
    for segment in segments:
        base = f"segments/{segment['index']:03d}"
        try:
            meta = json.loads(read(f"{base}/segment.json"))
            proc = read(f"{base}/proc.csv").decode()
            heals = json.loads(read(f"{base}/heals.json"))
            raw = read(f"{base}/raw.csv.gz")
        except (KeyError, PackError, ValueError) as exc:
            msg = f"gate SOAK: segment {segment['index']} is unreadable: {exc}"
            raise PackError(msg) from None
        metas.append(meta)
        procs.append(proc)
        hours.append(
            {
                **segment_figures(meta, raw, proc, heals, policy.pb, policy.confidence, policy.fault_grace_s),
                "carried": bool(segment.get("carried")),
            }
        )
    instances = instance_growth(metas, procs, policy.resource_warmup_s)
    statuses, reasons, measurements = judge_figures(hours, instances, policy, policy.p4_p99_ms)
    soaked_s = sum(float(s["soaked_s"]) for s in segments)
    # A segment cut short and then resumed still counts its hours: only the soak's total decides "stopped".
    stopped = soaked_s + 1 < float(plan["requested_hours"]) * 3600
    duration = duration_judgement(soaked_s, float(plan["requested_hours"]), policy, stopped)
    return {
        "format": "release-harness-soak/1",
        "mode": plan["mode"],
        "plan": plan,
        "hours": hours,
        "instances": instances,
        "duration": duration,
        "checks": {
            **{k: v.value for k, v in statuses.items()},
            "p4_duration": duration["p4"],
            "h15_duration": duration["h15"],
        },
        "reasons": reasons,
        "measurements": [m.model_dump(mode="json") for m in measurements],
        "limits": {
            "max_error_rate": policy.max_error_rate,
            "p99_ms": policy.p4_p99_ms,
            "max_rss_growth_mib_per_h": policy.max_rss_growth_mib_per_h,
            "max_fd_growth_per_h": policy.max_fd_growth_per_h,
            "max_group_rss_growth_mib_per_h": policy.max_group_rss_growth_mib_per_h,
            "max_group_fd_growth_per_h": policy.max_group_fd_growth_per_h,
            "hours": policy.hours,
            "loop_hours": policy.loop_hours,
        },
    }


def verdict_of(summary: dict[str, Any]) -> Verdict:
    """The gate's verdict from the summary: figures, then the duration (release: abbreviated is INCONCLUSIVE)."""
    checks = summary["checks"]
    duration = summary["duration"]
    figures = worst([Status(checks[name]) for name in ("load", "resources", "healing")])
    reasons = list(duration["notes"]) + list(summary["reasons"])
    if summary["mode"] == "ci":
        status = figures
        reasons.insert(0, f"shortened soak (ci mode): {duration['soaked_h']:.2f} h; it does not evidence P4 or H15")
    else:
        status = worst([figures, Status(duration["p4"]), Status(duration["h15"])])
    measurements = [Measurement.model_validate(m) for m in summary["measurements"]]
    measurements.append(Measurement(name="soak hours", value=duration["soaked_h"], unit="h"))
    details = {
        "checks": checks,
        "abbreviated": duration["abbreviated"],
        "hours": [
            {k: v for k, v in h.items() if k not in ("heals", "errors_by_kind", "during_faults", "outside_faults")}
            for h in summary["hours"]
        ],
    }
    return Verdict(status=status, reasons=tuple(reasons), measurements=tuple(measurements), details=details)
