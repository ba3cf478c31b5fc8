"""The data a run produces: statuses, measurements against thresholds, verdicts and gate results."""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Status(enum.StrEnum):
    """The verdict lattice every gate maps into; only PASS lets a required gate through."""

    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    NOT_RUN = "NOT_RUN"
    ERROR = "ERROR"


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


def worst(statuses: list[Status]) -> Status:
    """Combine sub-verdicts: any FAIL fails; otherwise ERROR, NOT_RUN, INCONCLUSIVE block PASS."""
    order = [Status.FAIL, Status.ERROR, Status.NOT_RUN, Status.INCONCLUSIVE, Status.PASS]
    for status in order:
        if status in statuses:
            return status
    return Status.INCONCLUSIVE
