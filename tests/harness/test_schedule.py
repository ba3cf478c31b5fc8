"""The scheduler: gates that run alone run with nothing else, `after` is honoured, the rest share `jobs` lanes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.schedule import Slot, next_to_start, ordered, overlaps, simulate

G1 = Slot("G1", 270)
G2 = Slot("G2", 200, runs_alone=True)
G3 = Slot("G3", 1, runs_alone=True, after=("G2",))
G4 = Slot("G4", 200)
G6 = Slot("G6", 90, after=("G2", "G3", "G4"))
PB = Slot("PB", 150)


def _spans(timeline: list[tuple[str, float, float]]) -> dict[str, tuple[float, float]]:
    """Gate -> (start, end) of a simulated timeline."""
    return {gate: (start, end) for gate, start, end in timeline}


def test_gates_that_run_alone_come_first_then_the_longest() -> None:
    """Pending order puts G2/G3 first (quiet machine), then the others by planned time, longest first."""
    assert [slot.gate_id for slot in ordered([PB, G6, G2, G1, G3, G4])] == ["G2", "G3", "G1", "G4", "PB", "G6"]


def test_nothing_starts_beside_a_gate_running_alone() -> None:
    """While G2 runs, no other gate may start, however many lanes are free."""
    assert next_to_start([G1, G4], [G2], set(), jobs=4) is None


def test_a_gate_running_alone_waits_for_the_machine_to_empty() -> None:
    """A gate that must run alone does not start beside another, and nothing overtakes it."""
    assert next_to_start([G2, G4], [G1], set(), jobs=4) is None
    assert next_to_start([G2, G4], [], set(), jobs=4) == G2


def test_after_waits_only_for_planned_gates() -> None:
    """G6 waits for a planned G4; with G4 not planned at all it may start."""
    assert next_to_start([G6], [G4], {"G2", "G3"}, jobs=4) is None
    assert next_to_start([G6], [], {"G2", "G3", "G4"}, jobs=4) == G6
    assert next_to_start([G6], [], set(), jobs=4) == G6


def test_a_cycle_of_after_lists_runs_in_order_instead_of_hanging() -> None:
    """Two plugin gates each waiting for the other: the first pending one starts once nothing runs."""
    a, b = Slot("A", 1, after=("B",)), Slot("B", 1, after=("A",))
    assert next_to_start([a, b], [], set(), jobs=2) == a
    assert next_to_start([b], [a], set(), jobs=2) is None


def test_jobs_bounds_the_gates_running_at_once() -> None:
    """With every lane busy nothing starts."""
    assert next_to_start([PB], [G1, G4], set(), jobs=2) is None
    assert next_to_start([PB], [G1], set(), jobs=2) == PB


def test_simulated_reference_order() -> None:
    """G2 then G3 alone; then G1, G4, PB together; G6 once G4 is done."""
    spans = _spans(simulate([G1, G2, G3, G4, G6, PB], jobs=3))
    assert spans["G2"] == (0, 200)
    assert spans["G3"] == (200, 201)
    assert {spans[g][0] for g in ("G1", "G4", "PB")} == {201}
    assert spans["G6"][0] == spans["G4"][1]


def _reaches(by_id: dict[str, Slot], start: str, goal: str) -> bool:
    """Whether following `after` lists from `start` leads back to `goal`."""
    seen: set[str] = set()
    todo = [dep for dep in by_id[start].after if dep in by_id]
    while todo:
        gate = todo.pop()
        if gate == goal:
            return True
        if gate not in seen:
            seen.add(gate)
            todo.extend(dep for dep in by_id[gate].after if dep in by_id)
    return False


slots = st.lists(
    st.builds(
        Slot,
        gate_id=st.sampled_from([f"X{i}" for i in range(8)]),
        planned_s=st.floats(min_value=0.1, max_value=100),
        runs_alone=st.booleans(),
        after=st.lists(st.sampled_from([f"X{i}" for i in range(8)]), max_size=2).map(tuple),
    ),
    max_size=8,
    unique_by=lambda slot: slot.gate_id,
)


@given(slots, st.integers(min_value=1, max_value=5))
def test_simulation_never_overlaps_a_lone_gate_and_honours_after(plan: list[Slot], jobs: int) -> None:
    """For any plan: every gate that can run does, none beside a lone gate, none before what it must follow."""
    spans = _spans(simulate(plan, jobs))
    by_id = {slot.gate_id: slot for slot in plan}
    assert set(spans) == set(by_id)
    cyclic = any(_reaches(by_id, slot.gate_id, slot.gate_id) for slot in plan)
    for gate, (start, end) in spans.items():
        others = [(s, e) for g, (s, e) in spans.items() if g != gate]
        if by_id[gate].runs_alone:
            assert all(e <= start or s >= end for s, e in others)
        for dep in by_id[gate].after:
            if dep in spans and dep != gate and not cyclic:
                assert spans[dep][1] <= start
        assert sum(1 for s, e in others if s <= start < e) < jobs


def test_overlaps_lists_what_ran_beside_each_gate() -> None:
    """Recorded spans become a timeline sorted by start, with the gates each one overlapped."""
    spans = {"G2": {"start_s": 0.0, "end_s": 200.0}, "G1": {"start_s": 200.5, "end_s": 400.0}, "PB": {"start_s": 201.0}}
    timeline = overlaps(spans)
    assert [item["gate"] for item in timeline] == ["G2", "G1", "PB"]
    assert timeline[0]["ran_with"] == []
    assert timeline[1]["ran_with"] == ["PB"]
    assert timeline[2]["end_s"] is None
