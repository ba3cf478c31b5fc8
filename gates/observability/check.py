"""One G6 check's outcome: the unit the assessment, the verdict and the report are built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.model import Measurement, Status


@dataclass
class Check:
    """One G6 check: status, one-line summary, findings, measurements and rows for the report."""

    name: str
    status: Status
    summary: str
    findings: list[str] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


def not_run_prometheus(name: str, facts: dict[str, Any]) -> Check:
    """A Prometheus-backed check that could not run, with the reason and the install command."""
    prom = facts["prometheus"]
    return Check(name, Status.NOT_RUN, f"not run: {prom['why']} (install: {prom['hint']})")
