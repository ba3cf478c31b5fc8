"""Which gates run together: a pure scheduler the runner asks each time a slot frees up.

Three rules, all read from each gate's `GateSpec`:
- a gate that `runs_alone` (G2/G3: they measure latency, which another gate's CPU use would
  distort) starts only when nothing else runs, and nothing else starts while it runs;
- a gate starts only after every planned gate in its `after` list has finished (G6 judges what its
  run-wide Prometheus saw of G2's and G4's instances, so it waits for them);
- otherwise up to `jobs` gates run at once, longest planned first, so the long ones do not end last.

The same rules give the plan's expected total (`simulate`), so what the plan prints is what the
runner does.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Slot:
    """What the scheduler needs to know of one implemented gate."""

    gate_id: str
    planned_s: float
    runs_alone: bool = False
    after: tuple[str, ...] = ()


def ordered(slots: Sequence[Slot]) -> list[Slot]:
    """Pending order: gates that run alone first (on a quiet machine), then the rest longest first."""
    alone = [slot for slot in slots if slot.runs_alone]
    shared = sorted((slot for slot in slots if not slot.runs_alone), key=lambda slot: -slot.planned_s)
    return alone + shared


def next_to_start(
    pending: Sequence[Slot], running: Collection[Slot], finished: Collection[str], jobs: int
) -> Slot | None:
    """The first pending gate that may start now, or None (keep waiting)."""
    if len(running) >= jobs or any(slot.runs_alone for slot in running):
        return None
    planned = {slot.gate_id for slot in pending} | {slot.gate_id for slot in running} | set(finished)
    for slot in pending:
        if any(dep in planned and dep not in finished for dep in slot.after):
            continue
        if slot.runs_alone and running:
            # Nothing jumps the queue past a gate waiting to run alone: it would wait for ever.
            return None
        return slot
    if pending and not running:
        # Only a cycle of `after` lists (plugin gates) gets here: run in order rather than hang.
        return pending[0]
    return None


def simulate(slots: Sequence[Slot], jobs: int) -> list[tuple[str, float, float]]:
    """(gate, start_s, end_s) of every gate if each took exactly its planned time."""
    pending = ordered(slots)
    running: list[tuple[Slot, float]] = []
    finished: set[str] = set()
    timeline: list[tuple[str, float, float]] = []
    now = 0.0
    while pending or running:
        while (slot := next_to_start(pending, [r for r, _ in running], finished, jobs)) is not None:
            pending.remove(slot)
            running.append((slot, now + slot.planned_s))
            timeline.append((slot.gate_id, now, now + slot.planned_s))
        running.sort(key=lambda item: item[1])
        done, now = running.pop(0)
        finished.add(done.gate_id)
    return timeline


def overlaps(spans: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each gate's recorded span (start_s, end_s) with the gates whose spans overlapped it, by start."""
    out = []
    for gate_id, span in sorted(spans.items(), key=lambda item: item[1]["start_s"]):
        start, end = span["start_s"], span.get("end_s")
        beside = [
            other
            for other, theirs in spans.items()
            if other != gate_id
            and (end is None or theirs["start_s"] < end)
            and (theirs.get("end_s") is None or theirs["end_s"] > start)
        ]
        out.append({"gate": gate_id, "start_s": start, "end_s": end, "ran_with": sorted(beside)})
    return out
