"""Pure judging of G1's test strength: mutation.json (written by gates/mutation.py) in, findings out.

A mutant the target's tests fail on is killed; a timed-out mutant counts as killed and is listed; a
mutant no test executes is "not covered" and errors are counted apart, neither enters the kill rate.
The kill rate's Wilson 95 % lower bound is judged against the policy minimum. Too few mutants for a
bound that could reach the minimum is INCONCLUSIVE, unless even the upper bound is below it (then the
tests are weak beyond doubt: FAIL). Nothing here does I/O beyond the evidence reader it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from scipy import stats

from gates.mutation_review import EquivalentMutant, review_exclusions, seed_problem
from harness.model import Measurement, Status

#: The evidence file of the test-strength run (under gates/G1/ in the pack).
MUTATION = "mutation.json"
#: Statuses the runner records per mutant; anything else is counted as an error.
KILLED, SURVIVED, TIMEOUT, NOT_COVERED = "killed", "survived", "timeout", "not covered"
SURVIVORS_IN_REASONS = 10
KILL_RATE_MEASUREMENT = "mutation kill rate, Wilson 95 % lower bound (critical modules)"
#: How many reviewed equivalent mutants a target may exclude (standard policy: the same ceiling).
MAX_EQUIVALENT_MUTANTS = 10


class EvidenceReader(Protocol):
    """What judging reads: `Evidence` in evaluate, the just-written files in collect."""

    def exists(self, name: str) -> bool:
        """Whether the evidence file is present."""

    def read_json(self, name: str) -> Any:
        """A JSON evidence file's content."""


class FindingsSink(Protocol):
    """The part of coverage_judge.Findings this module writes to."""

    statuses: list[Status]
    problems: list[str]
    notes: list[str]
    measurements: list[Measurement]
    details: dict[str, Any]

    def block(self, status: Status, reason: str) -> None:
        """Record a finding that blocks a PASS by itself."""


def wilson_interval_pct(killed: int, judged: int) -> tuple[float, float]:
    """The Wilson score 95 % interval of the kill rate, in percent (scipy.stats.binomtest)."""
    interval = stats.binomtest(killed, judged).proportion_ci(confidence_level=0.95, method="wilson")
    return round(100 * float(interval.low), 2), round(100 * float(interval.high), 2)


def tally(mutants: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Mutants grouped by outcome: killed, survived, timeout, not covered and errors."""
    groups: dict[str, list[dict[str, Any]]] = {KILLED: [], SURVIVED: [], TIMEOUT: [], NOT_COVERED: [], "errors": []}
    for mutant in mutants:
        groups.get(mutant["status"], groups["errors"]).append(mutant)
    return groups


def _where(mutant: dict[str, Any]) -> str:
    """file:line of a mutant, as far as the runner located it."""
    return f"{mutant['file']}:{mutant['line']}" if mutant.get("line") else str(mutant["file"])


def _change(mutant: dict[str, Any]) -> str:
    """The mutated line, old -> new, from the mutant's unified diff."""
    lines = mutant.get("diff", "").splitlines()
    old = [line[1:].strip() for line in lines if line.startswith("-") and not line.startswith("---")]
    new = [line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")]
    return f"`{' / '.join(old)}` -> `{' / '.join(new)}`" if old or new else mutant["name"]


def uncovered_survivors(
    mutants: Sequence[dict[str, Any]], missing_lines: dict[str, frozenset[int]]
) -> list[dict[str, Any]]:
    """Survivors on a line the whole suite never executed (coverage.json) become "not covered".

    mutmut maps tests to functions, so a mutant on an unexecuted line of an executed function is
    reported as surviving; G1's own coverage says no test reaches it.
    """
    why = "its line is not executed by the suite (coverage.json)"
    return [
        {**mutant, "status": NOT_COVERED, "why": why}
        if mutant["status"] == SURVIVED and mutant.get("line") in missing_lines.get(mutant["file"], frozenset())
        else mutant
        for mutant in mutants
    ]


def judge_mutation(
    reader: EvidenceReader,
    min_kill_pct: float,
    found: FindingsSink,
    missing_lines: dict[str, frozenset[int]] | None = None,
    *,
    exclusions: Sequence[EquivalentMutant] = (),
    max_exclusions: int = MAX_EQUIVALENT_MUTANTS,
    allow_fixed_seed: bool = False,
) -> None:
    """Test strength of the critical modules from mutation.json; nothing when the run was not attempted."""
    if not reader.exists(MUTATION):
        return
    record = reader.read_json(MUTATION)
    if not record.get("ran"):
        found.block(Status.INCONCLUSIVE, f"test strength not measured: {record.get('reason') or 'no reason recorded'}")
        return
    problem = seed_problem(record, allow_fixed_seed)
    if problem:
        found.block(Status.FAIL, f"test strength: the ci sample is not bound to the commit: {problem}")
    if record.get("configured_seed") is not None and record.get("seed_source") != "fixed":
        found.notes.append(
            f"[gates.G1] mutation_seed {record['configured_seed']} was not used: the policy does not allow a "
            f"target-chosen seed (allow_fixed_mutation_seed); the sample's seed came from: {record.get('seed_source')}"
        )
    groups = tally(uncovered_survivors(record["mutants"], missing_lines or {}))
    killed = len(groups[KILLED]) + len(groups[TIMEOUT])
    judged = killed + len(groups[SURVIVED])
    found.details["mutation"] = {
        "tool": record.get("tool"),
        "mode": record.get("mode"),
        "seed": record.get("seed"),
        "seed_source": record.get("seed_source"),
        "seed_commit": record.get("seed_commit"),
        "generated": record.get("generated"),
        "sampled": len(record["mutants"]),
        "counts": {name: len(rows) for name, rows in groups.items()},
        "survivors": groups[SURVIVED],
        "timeouts": [row["name"] for row in groups[TIMEOUT]],
    }
    _judge_exclusions(record, exclusions, max_exclusions, found)
    if record.get("no_mutate_pragmas"):
        found.notes.append(
            "`# pragma: no mutate` ignored (those lines were mutated like any other): "
            + ", ".join(record["no_mutate_pragmas"])
        )
    for name in (TIMEOUT, NOT_COVERED, "errors"):
        if groups[name]:
            rows = ", ".join(f"{row['name']} ({_where(row)}, {row['status']})" for row in groups[name][:10])
            found.notes.append(
                f"{len(groups[name])} mutant(s) {name}" + (" (counted killed)" if name == TIMEOUT else "") + f": {rows}"
            )
    if judged == 0:
        found.block(
            Status.INCONCLUSIVE,
            f"test strength not measured: of {record.get('generated', 0)} mutant(s) of the critical modules none "
            "was judged (killed or survived)",
        )
        return
    _judge_rate(killed, judged, min_kill_pct, survivors=groups[SURVIVED], record=record, found=found)


def _judge_exclusions(
    record: dict[str, Any], declared: Sequence[EquivalentMutant], max_exclusions: int, found: FindingsSink
) -> None:
    """Each reviewed equivalent mutant is listed with its reason; a void one, or too many, FAILs naming it."""
    standing, void = review_exclusions(declared, record.get("excluded", []))
    found.details["mutation"]["excluded"] = standing + void
    if len(declared) > max_exclusions:
        found.block(
            Status.FAIL,
            f"test strength: {len(declared)} equivalent mutants excluded in [gates.G1] equivalent_mutants, "
            f"the policy allows at most {max_exclusions}",
        )
    if standing:
        listed = "; ".join(f"{row['name']} ({_where(row)} {_change(row)}): {row['reason']}" for row in standing)
        found.notes.append(
            f"{len(standing)} reviewed equivalent mutant(s) excluded from the kill rate (each tested "
            f"this run and survived): {listed}"
        )
    for row in void:
        found.block(
            Status.FAIL,
            f"test strength: the equivalent-mutant exclusion {row['name']} is void: {row['void']} "
            "(remove it from [gates.G1] equivalent_mutants or review it again)",
        )


def _judge_rate(
    killed: int,
    judged: int,
    min_kill_pct: float,
    *,
    survivors: list[dict[str, Any]],
    record: dict[str, Any],
    found: FindingsSink,
) -> None:
    """The Wilson bound against the minimum: PASS, FAIL, or INCONCLUSIVE for too few mutants."""
    low, high = wilson_interval_pct(killed, judged)
    best_low, _ = wilson_interval_pct(judged, judged)
    rate = round(100 * killed / judged, 2)
    found.details["mutation"].update(kill_pct=rate, wilson_low_pct=low, wilson_high_pct=high, judged=judged)
    found.measurements.append(Measurement(name="mutants judged (killed or survived)", value=judged))
    found.measurements.append(Measurement(name="mutation kill rate (critical modules)", value=rate, unit="%"))
    measurement = Measurement.judged(KILL_RATE_MEASUREMENT, low, ">=", min_kill_pct, unit="%")
    listed = "; ".join(f"{_where(row)} {_change(row)}" for row in survivors[:SURVIVORS_IN_REASONS])
    more = f" and {len(survivors) - SURVIVORS_IN_REASONS} more" if len(survivors) > SURVIVORS_IN_REASONS else ""
    seed = record.get("seed")
    summary = f"{killed} of {judged} mutants killed ({rate} %, Wilson 95 % interval {low}-{high} %, seed {seed})"
    if measurement.passed:
        found.measurements.append(measurement)
        found.statuses.append(Status.PASS)
        found.notes.append(f"test strength: {summary}" + (f"; survivors: {listed}{more}" if survivors else ""))
    elif high < min_kill_pct or best_low >= min_kill_pct:
        found.measurements.append(measurement)
        found.block(Status.FAIL, f"test strength below {min_kill_pct:g} %: {summary}; survivors: {listed}{more}")
    else:
        found.measurements.append(Measurement(name=KILL_RATE_MEASUREMENT, value=low, unit="%", threshold=min_kill_pct))
        found.block(
            Status.INCONCLUSIVE,
            f"too few mutants for the bound to reach {min_kill_pct:g} %: {summary}; even {judged} of {judged} killed "
            f"gives a lower bound of {best_low} %" + (f"; survivors: {listed}{more}" if survivors else ""),
        )
