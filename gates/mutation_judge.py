"""Pure judging of G1's test strength: mutation.json (written by gates/mutation.py) in, findings out.

A mutant the target's tests fail on is killed; a timed-out mutant counts as killed and is listed; a
mutant no test executes is "not covered" and errors are counted apart, neither enters the kill rate.
The kill rate's Wilson 95 % lower bound is judged against the policy minimum. Too few mutants for a
bound that could reach the minimum is INCONCLUSIVE, unless even the upper bound is below it (then the
tests are weak beyond doubt: FAIL). Only the random draw enters that rate: in ci mode the mutants on
the changed lines (gates/mutation_changed.py) are judged on their own, every one of them up to the
cap, so their kill rate is counted, not estimated: it must reach the changed-line minimum itself,
and their survivors are listed first. Past the cap they are a seeded subset, judged by its Wilson
bound like the sample. Nothing here does I/O beyond the evidence reader it is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
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
#: ci mode: the kill rate of the mutants on the changed lines (counted; past the cap, a Wilson lower bound).
CHANGED_KILL_MEASUREMENT = "mutation kill rate on the changed lines (critical modules)"
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


def _survivor(mutant: dict[str, Any]) -> str:
    """A survivor as listed in reasons: file:line and change, marked when on a changed line."""
    return f"{_where(mutant)} {_change(mutant)}" + (" (changed line)" if mutant.get("changed_line") else "")


def line_ranges(lines: Iterable[int]) -> str:
    """Compress line numbers into ranges: [1, 2, 3, 7] -> '1-3, 7' (G1's coverage and mutation reports)."""
    spans: list[list[int]] = []
    for line in sorted(set(lines)):
        if spans and spans[-1][1] == line - 1:
            spans[-1][1] = line
        else:
            spans.append([line, line])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


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
    min_changed_kill_pct: float = 70.0,
    require_changed: bool = False,
) -> None:
    """Test strength of the critical modules from mutation.json; nothing when the run was not attempted.

    ``require_changed``: changed lines that could not be determined (ci) are INCONCLUSIVE, not a note.
    """
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
    tested = uncovered_survivors(record["mutants"], missing_lines or {})
    groups = tally([row for row in tested if row.get("sampled", True)])
    groups[SURVIVED].sort(key=lambda row: not row.get("changed_line"))
    killed = len(groups[KILLED]) + len(groups[TIMEOUT])
    judged = killed + len(groups[SURVIVED])
    found.details["mutation"] = {
        "tool": record.get("tool"),
        "mode": record.get("mode"),
        "seed": record.get("seed"),
        "seed_source": record.get("seed_source"),
        "seed_commit": record.get("seed_commit"),
        "generated": record.get("generated"),
        "sampled": sum(1 for row in tested if row.get("sampled", True)),
        "tested": len(tested),
        "counts": {name: len(group) for name, group in groups.items()},
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
    if record.get("mode") == "ci" and record.get("changed") is not None:
        changed_rows = [row for row in tested if row.get("changed_line")]
        judge_changed(record["changed"], changed_rows, min_changed_kill_pct, found, require=require_changed)
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
    listed = "; ".join(_survivor(row) for row in survivors[:SURVIVORS_IN_REASONS])
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


def judge_changed(
    changed: Mapping[str, Any],
    rows: Sequence[dict[str, Any]],
    min_pct: float,
    found: FindingsSink,
    *,
    require: bool = False,
) -> None:
    """ci mode: the mutants on the changed lines, their survivors first; not determined said so, never passed."""
    details = {key: changed.get(key) for key in ("determined", "reason", "base_ref", "base_commit", "lines")}
    details.update({key: changed.get(key) for key in ("untracked_files", "cap", "capped", "not_located", "run")})
    found.details["mutation"]["changed"] = details
    if not changed.get("determined"):
        why = (
            f"changed lines: not determined ({changed.get('reason') or 'no reason recorded'}); the sample stays random"
        )
        found.measurements.append(Measurement(name=CHANGED_KILL_MEASUREMENT, value="not determined"))
        if require:
            found.block(Status.INCONCLUSIVE, why + " (require_diff is set)")
        else:
            found.notes.append(why)
        return
    base = f"{str(changed.get('base_commit'))[:12]} (merge base with {changed.get('base_ref')}"
    since = f"since {base}, uncommitted changes included)"
    lines = {path: numbers for path, numbers in (changed.get("lines") or {}).items() if numbers}
    if not lines:
        found.measurements.append(Measurement(name=CHANGED_KILL_MEASUREMENT, value="no changed line"))
        found.notes.append(f"test strength: no changed lines in critical modules {since}")
        return
    where = "; ".join(f"{path}: {line_ranges(numbers)}" for path, numbers in sorted(lines.items()))
    if changed.get("not_located"):
        found.notes.append(
            f"{len(changed['not_located'])} mutant(s) of files with changed lines could not be placed on a line, "
            "so the changed-line set may miss some of them: " + ", ".join(changed["not_located"][:10])
        )
    groups = tally(rows)
    survivors = groups[SURVIVED]
    details.update(
        mutants=changed.get("mutants_on_changed_lines", len(rows)),
        tested=len(rows),
        counts={name: len(group) for name, group in groups.items()},
        survivors=survivors,
        outcomes={row["name"]: row["status"] for row in rows},
    )
    if not rows:
        found.measurements.append(Measurement(name=CHANGED_KILL_MEASUREMENT, value="no mutant on the changed lines"))
        found.notes.append(f"test strength: changed lines in critical modules {since} ({where}) have no mutant")
        return
    _judge_changed_rate(groups, min_pct, found, changed=changed, context=(since, where))


def _judge_changed_rate(
    groups: dict[str, list[dict[str, Any]]],
    min_pct: float,
    found: FindingsSink,
    *,
    changed: Mapping[str, Any],
    context: tuple[str, str],
) -> None:
    """Every changed-line mutant counted (unknown outcomes bound the rate both ways), or the capped subset's bound."""
    since, where = context
    killed, survived = len(groups[KILLED]) + len(groups[TIMEOUT]), len(groups[SURVIVED])
    unknown = len(groups["errors"])
    judged = killed + survived
    listed = "; ".join(_survivor(row) for row in groups[SURVIVED][:SURVIVORS_IN_REASONS])
    more = f" and {survived - SURVIVORS_IN_REASONS} more" if survived > SURVIVORS_IN_REASONS else ""
    to_do = (
        f"; surviving on the changed lines (the reviewer's to-do for this change): {listed}{more}" if survived else ""
    )
    if judged + unknown == 0:
        found.measurements.append(Measurement(name=CHANGED_KILL_MEASUREMENT, value="no changed-line mutant judged"))
        found.notes.append(
            f"test strength: the {len(groups[NOT_COVERED])} mutant(s) on the changed lines {since} are executed by no "
            "test (changed-line coverage judges those lines)"
        )
        return
    if changed.get("capped"):
        low, high = wilson_interval_pct(killed, judged) if judged else (0.0, 100.0)
        # A subset large enough for the bound to reach the minimum that still misses it is a FAIL.
        best = -1.0 if judged and wilson_interval_pct(judged, judged)[0] >= min_pct else high
        value = low
        how = (
            f"{changed.get('cap')} of {changed.get('mutants_on_changed_lines')} mutants (the cap, a seeded subset): "
            f"{killed} of {judged} killed, Wilson 95 % interval {low}-{high} %"
        )
    else:
        value = math.floor(killed * 10000 / (judged + unknown)) / 100
        best = math.floor((killed + unknown) * 10000 / (judged + unknown)) / 100
        how = f"{killed} of {judged + unknown} mutants killed ({value} %)" + (
            f"; {unknown} not tested or in error, so between {value} and {best} %" if unknown else ""
        )
    summary = f"test strength on the lines changed {since} ({where}): {how}"
    measurement = Measurement.judged(CHANGED_KILL_MEASUREMENT, value, ">=", min_pct, unit="%")
    found.measurements.append(measurement)
    if measurement.passed:
        found.statuses.append(Status.PASS)
        found.notes.append(summary + to_do)
    elif best < min_pct:
        found.block(Status.FAIL, f"{summary}: below {min_pct:g} %{to_do}")
    else:
        found.block(Status.INCONCLUSIVE, f"{summary}: too little known to reach {min_pct:g} %{to_do}")
