"""G1 test strength, the parts a target could bend: its reviewed equivalent mutants and the ci seed.

An equivalent mutant behaves exactly like the original (SQL keywords in another case, a
``typing.cast`` type string), so no test can kill it. A target names each one in
``[[gates.G1.equivalent_mutants]]`` with the mutation it expects and the reviewer's reason; every
run tests each named mutant as well as the sample, and an exclusion stands only while that mutant
is generated, still makes the declared change and survives the tests. One the tests kill, one
that is gone or changed, or one no test executes is void and FAILs G1 naming it: the list can only
hold mutants the tests demonstrably do not notice, and the policy caps its length.

The ci sample's seed is not the target's to choose: it derives from the target's commit, so the
same commit always draws the same sample (rerunning cannot shop for a lucky one). A fixed
``mutation_seed`` is honoured only where the policy allows it (``allow_fixed_mutation_seed``).
Pure: nothing here does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Where the ci seed came from, as mutation.json records it.
SEED_FROM_COMMIT, SEED_FIXED, SEED_RANDOM = "commit", "fixed", "random"
_SEED_SALT = "release-harness G1.strength sample"


class EquivalentMutant(BaseModel):
    """One reviewed exclusion: the mutant's name, the change it must make, and why it cannot be killed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mutant: str = Field(min_length=1, description="mutmut's name of the mutant, e.g. pkg.mod.x_func__mutmut_3.")
    mutation: str = Field(
        min_length=1,
        description="The mutated line as mutmut shows it (the diff's + line, stripped): a name that now "
        "points at another mutation voids the exclusion.",
    )
    reason: str = Field(min_length=12, description="The reviewer's reason no test can tell the mutant apart.")


def seed_from_commit(commit: str) -> int:
    """The ci sampling seed of a commit: the first 31 bits of a salted SHA-256 of its hash."""
    digest = hashlib.sha256(f"{_SEED_SALT} {commit}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def added_lines(diff: str) -> list[str]:
    """The mutant's new lines (the unified diff's + side, stripped, without the file header)."""
    return [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]


def _void_reason(declared: EquivalentMutant, row: Mapping[str, Any] | None) -> str | None:
    """Why a declared exclusion does not stand in this run; None when its mutant survived as declared."""
    if row is None or row.get("status") == "not generated":
        return "mutmut generated no mutant of that name (the code changed: review it again)"
    added = added_lines(str(row.get("diff", "")))
    if added and declared.mutation.strip() not in added:
        return f"the mutant now changes the line to `{' / '.join(added)}`, not `{declared.mutation.strip()}`"
    if row["status"] in ("killed", "timeout"):
        return f"the tests kill it ({row['status']}): it is not equivalent"
    if row["status"] != "survived":
        return f"it was {row['status']}, so no test run showed it indistinguishable"
    if not added:
        return "mutmut showed no diff for it to compare with the declared mutation"
    return None


def review_exclusions(
    declared: Sequence[EquivalentMutant], tested: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split the declared exclusions into those that stand and those that are void, each with its row.

    ``tested`` holds mutation.json's ``excluded`` rows (name, file, line, status, diff).
    """
    rows = {str(row["name"]): row for row in tested}
    standing: list[dict[str, Any]] = []
    void: list[dict[str, Any]] = []
    seen: set[str] = set()
    for entry in declared:
        row = rows.get(entry.mutant)
        why = "named twice in the list" if entry.mutant in seen else _void_reason(entry, row)
        seen.add(entry.mutant)
        item = {**(row or {"name": entry.mutant}), "declared_mutation": entry.mutation, "reason": entry.reason}
        if why is None:
            standing.append(item)
        else:
            void.append({**item, "void": why})
    return standing, void


def seed_problem(record: Mapping[str, Any], allow_fixed_seed: bool) -> str | None:
    """Why the recorded ci seed is not one the target was bound to; None when it is."""
    if record.get("mode") != "ci":
        return None
    source, seed = record.get("seed_source"), record.get("seed")
    if source == SEED_FROM_COMMIT:
        commit = str(record.get("seed_commit") or "")
        if not commit or seed != seed_from_commit(commit):
            return f"seed {seed} does not derive from the recorded commit {commit or '(none)'}"
        return None
    if source == SEED_FIXED and not allow_fixed_seed:
        return f"the sample was drawn with the target's fixed mutation_seed {seed}, which the policy does not allow"
    if source not in (SEED_FIXED, SEED_RANDOM):
        return f"mutation.json does not say where seed {seed} came from (seed_source {source!r})"
    return None
