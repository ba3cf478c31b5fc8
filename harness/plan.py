"""The plan printed before a run: which gates, in which order, and how long they should take."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import CertifyConfigBase
from harness.gate import Gate
from harness.registry import catalogue, implemented
from harness.schedule import Slot, simulate


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
    runs_alone: bool = False
    after: tuple[str, ...] = ()
    gaps: tuple[str, ...] = ()

    @property
    def slot(self) -> Slot:
        """What the scheduler needs of this gate."""
        return Slot(self.gate_id, self.planned_s, self.runs_alone, self.after)


@dataclass(frozen=True)
class Plan:
    """The gates of a run and the expected total wall time."""

    entries: tuple[PlanEntry, ...]
    mode: str
    jobs: int

    def timeline(self) -> list[tuple[str, float, float]]:
        """(gate, start_s, end_s) of each implemented gate by the runner's own scheduling rules."""
        return simulate([e.slot for e in self.entries if e.gate is not None], self.jobs)

    @property
    def total_s(self) -> float:
        """Expected wall time: gates that run alone one by one, the rest in `jobs` lanes."""
        return max((end for _, _, end in self.timeline()), default=0.0)

    def describe(self) -> list[str]:
        """Human lines for the plan, printed before anything runs."""
        lines = [f"plan ({self.mode} mode, up to {self.jobs} gates at once; gates marked alone run with nothing else):"]
        for entry in self.entries:
            if entry.gate is None:
                lines.append(f"  {entry.gate_id:<4} {entry.title}: not implemented in this version -> NOT_RUN")
                continue
            kind = "service" if entry.needs_service else "static"
            if entry.runs_alone:
                kind += ", alone"
            lines.append(f"  {entry.gate_id:<4} {entry.title} [{kind}] ~{_human(entry.planned_s)}")
            lines.extend(f"         {detail}" for detail in entry.details)
            lines.extend(f"         GAP: {gap}" for gap in entry.gaps)
        gaps = sum(len(entry.gaps) for entry in self.entries)
        if gaps:
            lines.append(
                f"{gaps} configuration gap(s) (GAP above): those gates end NOT_RUN or INCONCLUSIVE until "
                "certify.toml fills them"
            )
        lines.extend(self._together())
        lines.append(f"expected total: ~{_human(self.total_s)}")
        if self.mode == "ci":
            lines.append("ci mode: durations are scaled down; the output is a merge-gate report, not a certificate")
        return lines

    def _together(self) -> list[str]:
        """The expected order, as phases of gates that run at the same time."""
        timeline = self.timeline()
        if not timeline:
            return []
        lines = ["order (expected):"]
        phase: list[str] = []
        phase_end = 0.0
        for gate_id, start, end in timeline:
            if phase and start >= phase_end:
                lines.append(f"  {' | '.join(phase)}")
                phase = []
            phase.append(gate_id)
            phase_end = max(phase_end, end)
        lines.append(f"  {' | '.join(phase)}")
        return lines

    def as_json(self) -> list[dict[str, Any]]:
        """The plan as recorded in run.json."""
        return [
            {
                "gate": e.gate_id,
                "implemented": e.gate is not None,
                "needs_service": e.needs_service,
                "runs_alone": e.runs_alone,
                "after": list(e.after),
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


def make_plan(
    config: CertifyConfigBase, selected: Sequence[str], mode: str, jobs: int, target_dir: Path | None = None
) -> Plan:
    """Plan the selected gates in catalogue order (with the config's gaps per gate when target_dir is given)."""
    entries = []
    known = catalogue()
    for gate_id in known:
        if gate_id not in selected:
            continue
        title, requirements = known[gate_id]
        gate = implemented(gate_id)
        planned: float = 0.0
        details: tuple[str, ...] = ()
        gaps: tuple[str, ...] = ()
        if gate is not None:
            policy = config.policy(gate_id)
            planned, details = gate.planned_duration_s(policy, mode), tuple(gate.plan_lines(policy, mode))
            gaps = tuple(gate.config_gaps(config, target_dir)) if target_dir is not None else ()
        entries.append(
            PlanEntry(
                gate_id=gate_id,
                title=title,
                requirements=requirements,
                gate=gate,
                needs_service=gate.spec.needs_service if gate is not None else False,
                runs_alone=gate.spec.runs_alone if gate is not None else False,
                after=gate.spec.after if gate is not None else (),
                planned_s=planned,
                required=gate_id in config.certificate.required_gates,
                details=details,
                gaps=gaps,
            )
        )
    return Plan(entries=tuple(entries), mode=mode, jobs=jobs)
