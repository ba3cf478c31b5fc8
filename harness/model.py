"""The data a run produces: statuses, measurements against thresholds, verdicts and gate results."""

from __future__ import annotations

import enum
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Status(enum.StrEnum):
    """The verdict lattice every gate maps into; only PASS lets a required gate through."""

    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    NOT_RUN = "NOT_RUN"
    ERROR = "ERROR"
    # Never a gate's own verdict: the harness records it for a gate or requirement the target declared
    # not applicable ([certificate] not_applicable) on terms the policy allows; it blocks nothing.
    NOT_APPLICABLE = "N/A"


Comparator = Literal["<", "<=", ">", ">=", "==", "!="]


def compare(value: float, comparator: Comparator, threshold: float) -> bool:
    """Return whether `value comparator threshold` holds."""
    checks = {
        "<": value < threshold,
        "<=": value <= threshold,
        ">": value > threshold,
        ">=": value >= threshold,
        "==": value == threshold,
        "!=": value != threshold,
    }
    return checks[comparator]


class Measurement(BaseModel):
    """One measured value next to the threshold it is judged against."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    value: float | str | None
    unit: str = ""
    threshold: float | str | None = None
    comparator: Comparator | None = None
    passed: bool | None = None

    @classmethod
    def judged(cls, name: str, value: float, comparator: Comparator, threshold: float, unit: str = "") -> Measurement:
        """Build a measurement and record whether it meets its threshold."""
        return cls(
            name=name,
            value=value,
            unit=unit,
            threshold=threshold,
            comparator=comparator,
            passed=compare(value, comparator, threshold),
        )


class Verdict(BaseModel):
    """What a gate's pure `evaluate` returns: status, reasons and measurements."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Status
    reasons: tuple[str, ...] = ()
    measurements: tuple[Measurement, ...] = ()
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, status: Status, *reasons: str, **kwargs: Any) -> Verdict:
        """Shorthand for a verdict with reasons given positionally."""
        return cls(status=status, reasons=tuple(reasons), **kwargs)

    def difference(self, recorded: Verdict) -> str:
        """What tells this (recomputed) verdict from a recorded one, in one line: reasons gained, lost, details."""
        gained = [reason for reason in self.reasons if reason not in recorded.reasons]
        lost = [reason for reason in recorded.reasons if reason not in self.reasons]
        parts = [f"now: {_clip(reason, 160)}" for reason in gained[:2]]
        parts += [f"no longer: {_clip(reason, 160)}" for reason in lost[:2]]
        if self.measurements != recorded.measurements:
            parts.append("measurements differ")
        changed = sorted(
            k for k in self.details.keys() | recorded.details.keys() if self.details.get(k) != recorded.details.get(k)
        )
        parts += [
            f"details.{key}: {_clip(_json(recorded.details.get(key)), 100)} -> "
            f"{_clip(_json(self.details.get(key)), 100)}"
            for key in changed[:2]
        ]
        return "; ".join(parts) or "status differs"


class GateResult(BaseModel):
    """A verdict as recorded in results.json, with the run facts that evaluate cannot know."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gate: str
    title: str
    requirements: tuple[str, ...]
    required: bool
    verdict: Verdict
    duration_s: float
    evidence: tuple[str, ...] = ()


def _clip(text: str, limit: int) -> str:
    """Text cut to about `limit` characters in the middle, so its end (often an id in brackets) survives."""
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]} ... {text[-keep:]}"


def _json(value: Any) -> str:
    """A detail value as compact JSON, for a one-line difference."""
    return json.dumps(value, sort_keys=True, default=str)


def worst(statuses: list[Status]) -> Status:
    """Combine sub-verdicts: any FAIL fails; otherwise ERROR, NOT_RUN, INCONCLUSIVE block PASS.

    N/A counts only when nothing else is there: PASS and N/A combine to PASS.
    """
    order = [Status.FAIL, Status.ERROR, Status.NOT_RUN, Status.INCONCLUSIVE, Status.PASS, Status.NOT_APPLICABLE]
    for status in order:
        if status in statuses:
            return status
    return Status.INCONCLUSIVE
