"""Gates G2 (p99 latency under load) and G3 (error rate under load): one Locust run of profiles P1-P5.

Both gates' `collect` call `load.runner.shared_load_run`, which runs the profiles once per
`certify run` (the first caller runs them, later callers reuse the run-scoped result or its failure)
and each gate copies the raw results into its own evidence. `evaluate` recomputes every percentile
and error rate from the raw per-request CSV in the pack, never from a stored summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from harness.checks import CheckSpec
from harness.context import GateContext
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import Measurement, Status, Verdict, worst
from load.documents import write_documents
from load.profiles import PROFILE_IDS, ProfilesTable, RequestSpec, effective, planned_count
from load.runner import publish, shared_load_run
from load.stats import parse_raw, profile_stats, wilson

if TYPE_CHECKING:
    from harness.config import CertifyConfigBase

#: Start-up, drain and write-up of one profile, added to its duration in the plan.
PROFILE_OVERHEAD_S = 20.0
TIMEOUT_S = 15 * 3600.0
#: G2's planned time per mode in this process: the plan asks G2 before G3, so G3 knows the run is shared.
_G2_PLANNED_S: dict[str, float] = {}


class RemoteWorkers(Policy):
    """Locust workers started by hand on other hosts (Locust's distributed mode), joining each profile's master."""

    workers: int = Field(ge=1, le=256, description="How many remote workers each profile's master waits for.")
    master_bind: str = Field(
        description="Interface address the Locust master listens on, reachable from the remote workers."
    )
    master_port: int = Field(5557, ge=1024, le=65535, description="The master's port (fixed: the workers need it).")
    target_url: str = Field(
        pattern=r"^https?://",
        description="Base URL at which the remote workers reach the target, with {port} for the instance's port "
        "(e.g. http://10.0.0.5:{port}); the target's command must listen on that interface.",
    )
    wait_s: float = Field(300.0, gt=0, description="Longest a profile's master waits for all its workers to connect.")


class LoadPolicy(Policy):
    """G2 thresholds and the load definition shared with G3: requests, profiles P1-P5, generator limits."""

    requests: dict[str, RequestSpec] = Field(
        default_factory=dict, description="Named requests the profiles send ([gates.G2.requests.<name>])."
    )
    profiles: ProfilesTable = Field(ProfilesTable(), description="P1-P5; each table merges over its defaults.")
    ci_scale: float = Field(1.0, gt=0, le=10, description="ci mode: multiplier on every profile's ci_duration_s.")
    ci_min_arrivals: int = Field(
        400,
        ge=0,
        description="ci mode: a profile planning fewer arrivals after its warm-up runs at a higher rate (stated "
        "with every result) so its p99 can be bounded (>= 368 samples at 95 %); a profile may set its own floor "
        "(P4: 2100, for G3's 0.2 % soak limit); 0: never scale any rate.",
    )
    workers: int = Field(0, ge=0, le=32, description="0: one Locust process; N: a master and N local workers.")
    remote: RemoteWorkers | None = Field(
        None, description="Also drive from Locust workers on other hosts ([gates.G2.remote]); none: local only."
    )
    max_in_flight: int = Field(200, ge=1, description="Open-model concurrency bound per worker; beyond it, drops.")
    http_timeout_s: float = Field(30.0, gt=0, description="Connect and network timeout of each request.")
    drain_s: float = Field(30.0, ge=0, description="After the last planned arrival, time left for in-flight work.")
    late_bound_ms: float = Field(250.0, gt=0, description="An arrival sent later than this after its plan is late.")
    max_late_fraction: float = Field(0.01, ge=0, le=1, description="More late arrivals than this: not delivered.")
    min_delivered_ratio: float = Field(0.95, gt=0, le=1, description="Sent/planned arrivals below this: not delivered.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence of the p99 interval.")


class ErrorRatePolicy(Policy):
    """G3 thresholds: the error rate's upper Wilson bound per profile (the load itself is [gates.G2])."""

    max_error_rate: float = Field(0.01, gt=0, lt=1, description="Requirement G3: below 1% under load profiles.")
    soak_max_error_rate: float = Field(0.002, gt=0, lt=1, description="Requirement G3: below 0.2% in the soak.")
    soak_profiles: tuple[str, ...] = Field(("P4",), description="Profiles judged by the soak limit.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence of the Wilson interval.")


def _planned_s(policy: LoadPolicy, mode: str) -> float:
    """Wall time of every profile in a mode, overhead included."""
    total = 0.0
    for pid, spec in policy.profiles.items():
        run = effective(pid, spec, mode, policy.ci_scale, dict(policy.requests), ci_min_arrivals=policy.ci_min_arrivals)
        total += run.duration_s + PROFILE_OVERHEAD_S
    return total


def _load_settings(ctx: GateContext) -> LoadPolicy:
    """The load definition: always G2's table, whichever gate runs the load."""
    settings = ctx.config.policy("G2")
    assert isinstance(settings, LoadPolicy)  # noqa: S101 - G2 is registered with LoadPolicy
    return settings


def _profile_data(evidence: Evidence, pid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A profile's run record and its statistics recomputed from the raw CSV and the stored plan."""
    record: dict[str, Any] = evidence.read_json(f"load/{pid}/profile.json")
    planned = len(json.loads(_gunzip(evidence.read_bytes(f"load/{pid}/plan.json.gz"))))
    rows = parse_raw(evidence.read_bytes(f"load/{pid}/raw.csv.gz"))
    stats = profile_stats(rows, planned, float(record["warmup_s"]), float(record["late_bound_s"]), record["confidence"])
    return record, stats


def _gunzip(data: bytes) -> bytes:
    """Decompress gzip bytes."""
    import gzip  # noqa: PLC0415 - only evaluate needs it

    return gzip.decompress(data)


def _delivery_problem(pid: str, stats: dict[str, Any], record: dict[str, Any]) -> str | None:
    """Why the planned load was not delivered, or None."""
    delivery = stats["delivery"]
    if delivery["planned"] == 0:
        return f"{pid}: the plan has no arrivals"
    if delivery["delivered_ratio"] < record["min_delivered_ratio"]:
        return (
            f"{pid}: load not delivered: {delivery['sent']} of {delivery['planned']} planned arrivals sent "
            f"({delivery['delivered_ratio']:.1%} < {record['min_delivered_ratio']:.0%}; {delivery['dropped']} dropped "
            "for want of a free generator slot)"
        )
    if delivery["late"] > record["max_late_fraction"] * delivery["planned"]:
        return (
            f"{pid}: load not delivered on time: {delivery['late']} of {delivery['planned']} arrivals sent more than "
            f"{delivery['late_bound_s'] * 1000:g} ms after their planned time"
        )
    return None


def _scaled_note(pid: str, record: dict[str, Any]) -> str:
    """The statements that go with every profile's result: ci-mode scaling, and drivers on remote hosts."""
    remote = [driver for driver in record.get("drivers", []) if driver.get("remote")]
    hosts = ", ".join(sorted({str(driver.get("host")) for driver in remote}))
    remote_note = (
        f" [{len(remote)} of {len(record['drivers'])} drivers ran on remote hosts ({hosts}), "
        "not started or watched by the harness]"
        if remote
        else ""
    )
    if not record["scaled"]:
        return remote_note
    rate = record.get("rate_scale", 1.0)
    at_rate = f" at {rate:g}x the profile's arrival rate" if rate != 1 else ""
    return (
        f" [ci mode: ran {record['duration_s']:g} s of the {record['release_duration_s']:g} s release duration"
        f"{at_rate}]{remote_note}"
    )


def judge_quantile(value: float | None, upper: float | None, threshold: float) -> Status:
    """FAIL if the measured quantile exceeds the threshold; PASS only if its upper confidence bound is within."""
    if value is None:
        return Status.INCONCLUSIVE
    if value > threshold:
        return Status.FAIL
    if upper is not None and upper <= threshold:
        return Status.PASS
    return Status.INCONCLUSIVE


def judge_rate(failures: int, total: int, limit: float, confidence: float) -> tuple[Status, float, float]:
    """FAIL if the observed rate exceeds the limit; PASS only if its upper Wilson bound is within."""
    low, high = wilson(failures, total, confidence)
    if total == 0:
        return Status.INCONCLUSIVE, low, high
    if failures / total > limit:
        return Status.FAIL, low, high
    return (Status.PASS if high <= limit else Status.INCONCLUSIVE), low, high


#: What G2 and G3 evidence (the traceability matrix): one check per load profile each.
LATENCY_CHECKS = tuple(
    CheckSpec(
        id=f"G2.{pid}",
        title=f"{pid}: p99 HTTP and task latency, from the planned start, under the profile's load",
        requirements=("G2", pid),
        measurements=(f"{pid} p99 *",),
        evidence=(f"load_test_results/{pid}.json", f"load_test_results/{pid}-latency.svg"),
    )
    for pid in PROFILE_IDS
)
ERROR_RATE_CHECKS = tuple(
    CheckSpec(
        id=f"G3.{pid}",
        title=f"{pid}: request error rate and task failure rate (upper Wilson bound)",
        requirements=("G3",),
        measurements=(f"{pid} request error rate", f"{pid} task failure rate"),
        evidence=(f"gates/G3/load/{pid}/raw.csv.gz",),
    )
    for pid in PROFILE_IDS
)


class LatencyGate(Gate):
    """G2: each profile's p99 HTTP latency (from the planned start) against its threshold."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="G2",
        title="Latency under load (p99)",
        requirements=("G2", "P1", "P2", "P3", "P4", "P5"),
        needs_service=True,
        runs_alone=True,
        timeout_s=TIMEOUT_S,
        documents=("load_test_results",),
        checks=LATENCY_CHECKS,
    )
    policy_model: ClassVar[type[Policy]] = LoadPolicy

    def config_gaps(self, config: CertifyConfigBase, target_dir: Path) -> list[str]:
        """A service, and at least one request for the profiles to send."""
        gaps = super().config_gaps(config, target_dir)
        if not config.policy("G2").requests:
            gaps.append("no [gates.G2.requests.<name>]: the load profiles have nothing to send")
        return gaps

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """Every profile's real planned duration (release: the 8-hour soak included)."""
        assert isinstance(policy, LoadPolicy)  # noqa: S101 - the registry pairs gate and policy
        _G2_PLANNED_S[mode] = _planned_s(policy, mode)
        return _G2_PLANNED_S[mode]

    def plan_lines(self, policy: Policy, mode: str) -> list[str]:
        """One line per profile with the duration it will really run (and its release duration in ci mode)."""
        assert isinstance(policy, LoadPolicy)  # noqa: S101 - the registry pairs gate and policy
        lines = []
        for pid, spec in policy.profiles.items():
            run = effective(
                pid, spec, mode, policy.ci_scale, dict(policy.requests), ci_min_arrivals=policy.ci_min_arrivals
            )
            rate = f", {run.rate_scale:g}x rate" if run.rate_scale != 1 else ""
            scaled = f" (ci-scaled; release: {run.release_duration_s:g} s{rate})" if run.scaled else ""
            line = f"{pid} {run.title}: {run.duration_s:g} s{scaled}, p99 <= {run.p99_ms:g} ms"
            arrivals = planned_count(run.shape, run.duration_s) * (run.duration_s - run.warmup_s) / run.duration_s
            needed = _min_n(policy.confidence)
            if arrivals < needed:
                line += (
                    f"; WARNING: ~{arrivals:.0f} planned arrivals after the warm-up, a p99 bound needs {needed}: "
                    "expect INCONCLUSIVE unless polls make up the HTTP samples (lengthen the profile)"
                )
            lines.append(line)
        return lines

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Run (or reuse) the load run, copy it into the evidence, write load_test_results/."""
        out, failure = shared_load_run(ctx, _load_settings(ctx))
        publish(ctx, out)
        if failure is not None:
            raise failure
        assert isinstance(policy, LoadPolicy)  # noqa: S101 - the registry pairs gate and policy
        write_documents(ctx, out, policy)

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """Per profile: delivery first, then p99 (with its CI) against the threshold; worst status wins."""
        assert isinstance(policy, LoadPolicy)  # noqa: S101 - the registry pairs gate and policy
        statuses, reasons, measurements, details = [], [], [], {}
        for pid, spec in policy.profiles.items():
            if not evidence.exists(f"load/{pid}/raw.csv.gz"):
                statuses.append(Status.INCONCLUSIVE)
                reasons.append(f"{pid}: no raw results in the pack")
                continue
            record, stats = _profile_data(evidence, pid)
            status, reason, found = _judge_latency(pid, spec.p99_ms, spec.task_p99_ms, record, stats)
            statuses.append(status)
            reasons.append(reason)
            measurements.extend(found)
            details[pid] = {"status": status.value, "scaled": record["scaled"], **stats}
        return Verdict(
            status=worst(statuses), reasons=tuple(reasons), measurements=tuple(measurements), details=details
        )


def _judge_latency(
    pid: str, p99_ms: float, task_p99_ms: float | None, record: dict[str, Any], stats: dict[str, Any]
) -> tuple[Status, str, list[Measurement]]:
    """One profile's G2 status, sentence and measurements."""
    http = stats["http"]["corrected_ms"]
    ci = http["p99_ci"] or {}
    found = [Measurement(name=f"{pid} HTTP samples after {stats['warmup_s']:g} s warm-up", value=http["n"])]
    note = _scaled_note(pid, record)
    problem = _delivery_problem(pid, stats, record)
    if problem is not None:
        found.append(
            Measurement.judged(
                f"{pid} delivered/planned arrivals",
                stats["delivery"]["delivered_ratio"],
                ">=",
                record["min_delivered_ratio"],
            )
        )
        return Status.INCONCLUSIVE, problem + note, found
    if http["p99"] is not None:
        found.append(
            Measurement.judged(f"{pid} p99 HTTP latency (from planned start)", http["p99"], "<=", p99_ms, "ms")
        )
        found.append(Measurement(name=f"{pid} p99 upper {ci['confidence']:.0%} bound", value=ci["upper_ms"], unit="ms"))
        found.append(
            Measurement(name=f"{pid} p99 from actual send", value=stats["http"]["uncorrected_ms"]["p99"], unit="ms")
        )
        ended_by = stats["http"].get("ended_by", {})
        for clock, label in (("socket", "the socket's receive stamp"), ("driver", "the driver's clock")):
            found.append(Measurement(name=f"{pid} answers timed by {label}", value=ended_by.get(clock, 0)))
    status = judge_quantile(http["p99"], ci.get("upper_ms"), p99_ms)
    tasks = stats["tasks"]["latency_ms"]
    if task_p99_ms is not None:
        task_status = judge_quantile(tasks["p99"], (tasks["p99_ci"] or {}).get("upper_ms"), task_p99_ms)
        status = worst([status, task_status])
        if tasks["p99"] is not None:
            found.append(Measurement.judged(f"{pid} p99 task latency", tasks["p99"], "<=", task_p99_ms, "ms"))
    elif tasks["p99"] is not None:
        found.append(Measurement(name=f"{pid} p99 task latency (submit to done)", value=tasks["p99"], unit="ms"))
    if http["p99"] is None:
        return status, f"{pid}: no HTTP samples after the warm-up{note}", found
    text = (
        f"{pid}: p99 {http['p99']:g} ms (n={http['n']}, {ci['confidence']:.0%} CI "
        f"{_ms(ci['lower_ms'])}-{_ms(ci['upper_ms'])}) vs {p99_ms:g} ms"
    )
    if status is Status.INCONCLUSIVE and ci.get("upper_ms") is None:
        text += f"; {http['n']} samples are too few to bound a p99 (at least {_min_n(ci['confidence'])} needed)"
    elif status is Status.INCONCLUSIVE:
        text += "; the upper confidence bound exceeds the threshold"
    if task_p99_ms is not None and tasks["p99"] is not None:
        text += f"; task p99 {tasks['p99']:g} ms vs {task_p99_ms:g} ms"
    return status, text + note, found


def _ms(value: float | None) -> str:
    """A bound for a sentence."""
    return "?" if value is None else f"{value:g} ms"


def _min_n(confidence: float) -> int:
    """Smallest sample count whose maximum bounds p99 from above at this confidence."""
    n = 1
    while 1 - 0.99**n < 1 - (1 - confidence) / 2:
        n += 1
    return n


class ErrorRateGate(Gate):
    """G3: each profile's error rate (upper Wilson bound) against 1%, and 0.2% for the soak."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="G3",
        title="Error rate under load",
        requirements=("G3",),
        needs_service=True,
        runs_alone=True,
        after=("G2",),
        timeout_s=TIMEOUT_S,
        checks=ERROR_RATE_CHECKS,
    )
    policy_model: ClassVar[type[Policy]] = ErrorRatePolicy

    def config_gaps(self, config: CertifyConfigBase, target_dir: Path) -> list[str]:
        """As G2: it judges the errors of G2's load run."""
        gaps = super().config_gaps(config, target_dir)
        if not config.policy("G2").requests:
            gaps.append("no [gates.G2.requests.<name>]: the load profiles have nothing to send")
        return gaps

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """A few seconds when G2 is planned too (they share one load run); else the default profiles' time.

        The plan gives a gate only its own policy, so G3 alone cannot see [gates.G2] overrides and
        estimates from the default profiles (see the report: the core could pass the config).
        """
        del policy
        if mode in _G2_PLANNED_S:
            return PROFILE_OVERHEAD_S
        return _planned_s(LoadPolicy(), mode)

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Run (or reuse) the load run and copy it into the evidence."""
        del policy
        out, failure = shared_load_run(ctx, _load_settings(ctx))
        publish(ctx, out)
        if failure is not None:
            raise failure

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """Per profile: delivery, then request and task error rates against the limit; worst status wins."""
        assert isinstance(policy, ErrorRatePolicy)  # noqa: S101 - the registry pairs gate and policy
        statuses, reasons, measurements, details = [], [], [], {}
        for pid in PROFILE_IDS:
            if not evidence.exists(f"load/{pid}/raw.csv.gz"):
                statuses.append(Status.INCONCLUSIVE)
                reasons.append(f"{pid}: no raw results in the pack")
                continue
            record, stats = _profile_data(evidence, pid)
            limit = policy.soak_max_error_rate if pid in policy.soak_profiles else policy.max_error_rate
            status, reason, found = _judge_errors(pid, limit, policy.confidence, record, stats)
            statuses.append(status)
            reasons.append(reason)
            measurements.extend(found)
            details[pid] = {
                "status": status.value,
                "limit": limit,
                "http": stats["http"]["requests"],
                "errors": stats["http"]["errors"],
                "tasks": stats["tasks"],
                "errors_by_kind": stats["errors_by_kind"],
            }
        return Verdict(
            status=worst(statuses), reasons=tuple(reasons), measurements=tuple(measurements), details=details
        )


def _judge_errors(
    pid: str, limit: float, confidence: float, record: dict[str, Any], stats: dict[str, Any]
) -> tuple[Status, str, list[Measurement]]:
    """One profile's G3 status, sentence and measurements."""
    note = _scaled_note(pid, record)
    http, tasks = stats["http"], stats["tasks"]
    req_status, req_low, req_high = judge_rate(http["errors"], http["requests"], limit, confidence)
    found = [
        Measurement.judged(
            f"{pid} request error rate", round(http["errors"] / max(1, http["requests"]), 6), "<=", limit
        ),
        Measurement(name=f"{pid} request error rate upper Wilson bound", value=round(req_high, 6)),
    ]
    text = (
        f"{pid}: {http['errors']} of {http['requests']} requests failed "
        f"({http['errors'] / max(1, http['requests']):.2%}, {confidence:.0%} Wilson {req_low:.2%}-{req_high:.2%}) "
        f"vs {limit:.1%}"
    )
    statuses = [req_status]
    if tasks["submitted"]:
        # Tasks are composites of requests already counted above: judged on the observed rate only.
        _, _, task_high = judge_rate(tasks["failed"], tasks["submitted"], limit, confidence)
        statuses.append(Status.FAIL if tasks["failed"] / tasks["submitted"] > limit else Status.PASS)
        found.append(
            Measurement.judged(f"{pid} task failure rate", round(tasks["failed"] / tasks["submitted"], 6), "<=", limit)
        )
        text += f"; {tasks['failed']} of {tasks['submitted']} tasks failed (upper bound {task_high:.2%})"
    if http["errors"] and stats["errors_by_kind"]:
        top, count = next(iter(stats["errors_by_kind"].items()))
        text += f"; most frequent error: {top} (x{count})"
    status = worst(statuses)
    if status is Status.INCONCLUSIVE:
        text += "; too few samples to show the rate is below the limit"
    problem = _delivery_problem(pid, stats, record)
    if problem is not None:
        return Status.INCONCLUSIVE, problem + note, found
    return status, text + note, found
