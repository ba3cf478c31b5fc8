"""Load profiles P1-P5 as config: the requests a target declares, arrival shapes, and ci-mode scaling.

The tables live in `[gates.G2]` (G3 reads the same definition, so both gates judge one load run):
`[gates.G2.requests.<name>]` declares what to send, `[gates.G2.profiles.P<n>]` overrides a profile.
A profile table given in certify.toml is merged key by key over that profile's defaults.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROFILE_IDS = ("P1", "P2", "P3", "P4", "P5")


class _Table(BaseModel):
    """A frozen config table; unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PollSpec(_Table):
    """How to wait for a submitted task: GET the poll path until its status field is terminal."""

    path: str = Field(description="Poll path template; {id} is the id read from the submit response.")
    id_field: str = Field("id", description="Field of the submit response's JSON holding the task id.")
    status_field: str = Field("status", description="Field of the poll response's JSON holding the status.")
    done_values: tuple[str, ...] = Field(("completed", "done"), description="Statuses meaning the task succeeded.")
    failed_values: tuple[str, ...] = Field(("failed", "cancelled"), description="Statuses meaning the task failed.")
    interval_s: float = Field(0.25, gt=0, le=60, description="Pause between polls.")
    timeout_s: float = Field(120.0, gt=0, description="A task not terminal after this long counts as failed.")


class RequestSpec(_Table):
    """One kind of arrival: an HTTP request, optionally a task to poll, optionally page follow-ups."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(description="Path on the target, e.g. /api/tasks.")
    json_body: dict[str, Any] | None = Field(
        None, description="JSON body template; '{seq}' and '{profile}' in string values are filled per arrival."
    )
    expect_status: tuple[int, ...] = Field((200, 201, 202), description="Statuses counted as success.")
    poll: PollSpec | None = Field(None, description="Submit-then-poll: wait until the task is done.")
    follow: tuple[str, ...] = Field((), description="Paths fetched (GET) one after another: a page session.")


class ArrivalShape(_Table):
    """When arrivals are planned: constant rate, linear ramp, or spike cycles; optionally Poisson."""

    kind: Literal["constant", "ramp", "spike"] = "constant"
    rate_per_min: float = Field(10.0, gt=0, description="constant: arrivals per minute.")
    start_per_min: float = Field(50.0, gt=0, description="ramp: rate at the start.")
    end_per_min: float = Field(200.0, gt=0, description="ramp: rate at the end.")
    burst_arrivals: int = Field(100, ge=1, description="spike: arrivals per burst.")
    burst_s: float = Field(10.0, gt=0, description="spike: the burst's length.")
    period_s: float = Field(60.0, gt=0, description="spike: one cycle (burst, then quiet); cycles = duration/period.")
    poisson: bool = Field(False, description="Exponential gaps at the same mean rate instead of even spacing.")

    @model_validator(mode="after")
    def _burst_fits(self) -> ArrivalShape:
        """A burst must fit in its cycle."""
        if self.kind == "spike" and self.burst_s > self.period_s:
            msg = f"burst_s ({self.burst_s:g}) must not exceed period_s ({self.period_s:g})"
            raise ValueError(msg)
        return self


class ProfileSpec(_Table):
    """One load profile: shape, request mix, durations and its p99 target."""

    title: str = ""
    duration_s: float = Field(900.0, gt=0, description="Release-mode duration.")
    ci_duration_s: float = Field(45.0, gt=0, description="ci-mode duration (before ci_scale).")
    warmup_s: float = Field(10.0, ge=0, description="Leading window excluded from latency percentiles.")
    ci_warmup_s: float = Field(3.0, ge=0, description="Warm-up in ci mode (before ci_scale).")
    shape: ArrivalShape = ArrivalShape()
    mix: dict[str, float] = Field(
        default_factory=dict, description="Request name -> weight; empty: every declared request, equal weights."
    )
    ci_min_arrivals: int | None = Field(
        None,
        ge=0,
        description="ci mode: this profile's planned-arrival floor; none: [gates.G2] ci_min_arrivals (0 there: off).",
    )
    p99_ms: float = Field(1000.0, gt=0, description="G2: p99 of HTTP latency (from planned start) must be below.")
    task_p99_ms: float | None = Field(None, gt=0, description="G2: optional p99 bound on task latency (submit->done).")


PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "P1": {
        "title": "Baseline: 10 tasks/min",
        "duration_s": 900.0,
        "ci_duration_s": 40.0,
        "shape": {"kind": "constant", "rate_per_min": 10.0},
        "p99_ms": 500.0,
    },
    "P2": {
        "title": "Concurrency: ramp 50 -> 200 tasks/min",
        "duration_s": 1800.0,
        "ci_duration_s": 60.0,
        "shape": {"kind": "ramp", "start_per_min": 50.0, "end_per_min": 200.0},
        "p99_ms": 1000.0,
    },
    "P3": {
        "title": "Spike: 0 -> 100 tasks in 10 s, 5 cycles",
        "duration_s": 300.0,
        "ci_duration_s": 60.0,
        "warmup_s": 0.0,
        "ci_warmup_s": 0.0,
        "shape": {"kind": "spike", "burst_arrivals": 100, "burst_s": 10.0, "period_s": 60.0},
        "p99_ms": 2000.0,
    },
    "P4": {
        "title": "Soak: 30 tasks/min for 8 h",
        "duration_s": 28800.0,
        "ci_duration_s": 150.0,
        "shape": {"kind": "constant", "rate_per_min": 30.0},
        # G3 judges the soak against 0.2 %: with no failure a 95 % Wilson bound gets under it from ~1,920 samples.
        "ci_min_arrivals": 2100,
        "p99_ms": 500.0,
    },
    "P5": {
        "title": "Mixed: compute tasks, page sessions, orchestrator tasks",
        "duration_s": 900.0,
        "ci_duration_s": 60.0,
        "shape": {"kind": "constant", "rate_per_min": 60.0},
        "p99_ms": 1500.0,
    },
}


class ProfilesTable(_Table):
    """The five profiles; a table given in certify.toml is merged over that profile's defaults."""

    P1: ProfileSpec = ProfileSpec.model_validate(PROFILE_DEFAULTS["P1"])
    P2: ProfileSpec = ProfileSpec.model_validate(PROFILE_DEFAULTS["P2"])
    P3: ProfileSpec = ProfileSpec.model_validate(PROFILE_DEFAULTS["P3"])
    P4: ProfileSpec = ProfileSpec.model_validate(PROFILE_DEFAULTS["P4"])
    P5: ProfileSpec = ProfileSpec.model_validate(PROFILE_DEFAULTS["P5"])

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        """Merge each given profile table over its defaults, so one key can be overridden alone."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, value in data.items():
            if name in PROFILE_DEFAULTS and isinstance(value, dict):
                merged[name] = {**PROFILE_DEFAULTS[name], **value}
        return merged

    def items(self) -> list[tuple[str, ProfileSpec]]:
        """(id, spec) in profile order."""
        return [(name, getattr(self, name)) for name in PROFILE_IDS]


def planned_count(shape: ArrivalShape, duration_s: float) -> float:
    """Arrivals a shape plans in duration_s (expected count; even spacing plans the same)."""
    if shape.kind == "constant":
        return shape.rate_per_min * duration_s / 60
    if shape.kind == "ramp":
        return (shape.start_per_min + shape.end_per_min) / 2 * duration_s / 60
    full, rest = divmod(duration_s, shape.period_s)
    return shape.burst_arrivals * (full + min(rest, shape.burst_s) / shape.burst_s)


def scaled_shape(shape: ArrivalShape, factor: float) -> ArrivalShape:
    """The same shape at `factor` times the arrival rate (spikes: more arrivals per burst)."""
    if factor == 1:
        return shape
    return shape.model_copy(
        update={
            "rate_per_min": shape.rate_per_min * factor,
            "start_per_min": shape.start_per_min * factor,
            "end_per_min": shape.end_per_min * factor,
            "burst_arrivals": math.ceil(shape.burst_arrivals * factor),
        }
    )


class EffectiveProfile(BaseModel):
    """A profile as it will run in this mode: durations after scaling, the mix resolved."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    mode: str
    scaled: bool
    duration_s: float
    release_duration_s: float
    warmup_s: float
    rate_scale: float = 1.0
    release_shape: ArrivalShape | None = None
    shape: ArrivalShape
    mix: dict[str, float]
    p99_ms: float
    task_p99_ms: float | None


def effective(
    profile_id: str,
    spec: ProfileSpec,
    mode: str,
    ci_scale: float,
    requests: dict[str, Any],
    *,
    ci_min_arrivals: int = 0,
) -> EffectiveProfile:
    """Resolve a profile for a mode: ci mode runs ci_duration_s x ci_scale and says so.

    In ci mode a profile planning fewer than `ci_min_arrivals` arrivals after its warm-up runs at a
    higher rate (the factor is recorded and stated with every result), so the short run still has
    enough samples for a p99 bound; release mode never changes the rate.
    """
    scaled = mode == "ci"
    duration = spec.ci_duration_s * ci_scale if scaled else spec.duration_s
    warmup = spec.ci_warmup_s * ci_scale if scaled else spec.warmup_s
    mix = dict(spec.mix) or dict.fromkeys(sorted(requests), 1.0)
    warmup = min(warmup, duration / 2)
    factor = 1.0
    floor = ci_min_arrivals if spec.ci_min_arrivals is None else spec.ci_min_arrivals
    if scaled and ci_min_arrivals and floor:
        planned = planned_count(spec.shape, duration) * (duration - warmup) / duration
        polled = sum(w for name, w in mix.items() if getattr(requests.get(name), "poll", None) is not None)
        if spec.task_p99_ms is not None and polled > 0:
            planned *= polled / sum(mix.values())  # the task p99 needs as many finished tasks
        factor = max(1.0, math.ceil(floor / planned * 10) / 10) if planned > 0 else 1.0
    return EffectiveProfile(
        id=profile_id,
        title=spec.title,
        mode=mode,
        scaled=scaled,
        duration_s=round(duration, 3),
        release_duration_s=spec.duration_s,
        warmup_s=round(warmup, 3),
        rate_scale=factor,
        release_shape=spec.shape if factor != 1 else None,
        shape=scaled_shape(spec.shape, factor),
        mix=mix,
        p99_ms=spec.p99_ms,
        task_p99_ms=spec.task_p99_ms,
    )
