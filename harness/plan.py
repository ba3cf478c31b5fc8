"""The plan printed before a run: which gates, in which order, and how long they should take."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.config import CertifyConfigBase
from harness.gate import Gate
from harness.registry import catalogue, implemented


@dataclass(frozen=True)
class PlanEntry:
    """One gate of the plan."""

    gate_id: str
    title: str
    requirements: tuple[str, ...]
    gate: Gate | None
    needs_service: bool
    planned_s: float
    required: bool
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """The gates of a run and the expected total wall time."""

    entries: tuple[PlanEntry, ...]
    mode: str
    jobs: int

    @property
    def total_s(self) -> float:
        """Expected wall time: concurrent static gates in `jobs` lanes, then service gates one by one."""
        static = [e.planned_s for e in self.entries if e.gate is not None and not e.needs_service]
        service = sum(e.planned_s for e in self.entries if e.gate is not None and e.needs_service)
        lanes = max(1, min(self.jobs, len(static)))
        static_s = max([*static, math.ceil(sum(static) / lanes)]) if static else 0.0
        return float(static_s + service)

    def describe(self) -> list[str]:
        """Human lines for the plan, printed before anything runs."""
        lines = [f"plan ({self.mode} mode, up to {self.jobs} static gates at once):"]
        for entry in self.entries:
            if entry.gate is None:
                lines.append(f"  {entry.gate_id:<4} {entry.title}: not implemented in this version -> NOT_RUN")
                continue
            kind = "service" if entry.needs_service else "static"
            lines.append(f"  {entry.gate_id:<4} {entry.title} [{kind}] ~{_human(entry.planned_s)}")
            lines.extend(f"         {detail}" for detail in entry.details)
        lines.append(f"expected total: ~{_human(self.total_s)}")
        if self.mode == "ci":
            lines.append("ci mode: durations are scaled down; the output is a merge-gate report, not a certificate")
        return lines

    def as_json(self) -> list[dict[str, Any]]:
        """The plan as recorded in run.json."""
        return [
            {
                "gate": e.gate_id,
                "implemented": e.gate is not None,
                "needs_service": e.needs_service,
                "planned_s": e.planned_s,
                "required": e.required,
            }
            for e in self.entries
        ]


def _human(seconds: float) -> str:
    """Seconds as s, min or h for the plan."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def make_plan(config: CertifyConfigBase, selected: Sequence[str], mode: str, jobs: int) -> Plan:
    """Plan the selected gates in catalogue order."""
    entries = []
    known = catalogue()
    for gate_id in known:
        if gate_id not in selected:
            continue
        title, requirements = known[gate_id]
        gate = implemented(gate_id)
        planned: float = 0.0
        details: tuple[str, ...] = ()
        if gate is not None:
            policy = config.policy(gate_id)
            planned, details = gate.planned_duration_s(policy, mode), tuple(gate.plan_lines(policy, mode))
        entries.append(
            PlanEntry(
                gate_id=gate_id,
                title=title,
                requirements=requirements,
                gate=gate,
                needs_service=gate.spec.needs_service if gate is not None else False,
                planned_s=planned,
                required=gate_id in config.certificate.required_gates,
                details=details,
            )
        )
    return Plan(entries=tuple(entries), mode=mode, jobs=jobs)
