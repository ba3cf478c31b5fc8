"""G1.strength's reviewed equivalent mutants and commit-bound ci seed (gates/mutation_review.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gates.coverage_judge import CoveragePolicy, Findings
from gates.mutation import _disarm_no_mutate
from gates.mutation_judge import judge_mutation
from gates.mutation_review import EquivalentMutant, review_exclusions, seed_from_commit, seed_problem
from harness.model import Status
from tests.gates.test_mutation_judge import Reader, record

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CAST_DIFF = """# m.x_f__mutmut_8: survived
--- m.py
+++ m.py
@@ -1,3 +1,3 @@
 def f():
-    return cast("tuple[Any, ...]", ())
+    return cast("tuple[any, ...]", ())
"""
CAST = EquivalentMutant(
    mutant="m.x_f__mutmut_8",
    mutation='return cast("tuple[any, ...]", ())',
    reason="typing.cast never evaluates its type string at run time",
)


def excluded_row(status: str = "survived", diff: str = CAST_DIFF) -> dict[str, Any]:
    """mutation.json's row of the declared mutant as tested."""
    return {"name": CAST.mutant, "file": "m.py", "line": 2, "status": status, "diff": diff}


def judged_with(rows: list[dict[str, Any]], declared: list[EquivalentMutant], **kwargs: Any) -> Findings:
    """The findings of a 38-of-40 record whose excluded rows are `rows`, judged with `declared`."""
    data = {**record(38, 2), "seed_source": "commit", "seed_commit": COMMIT, "excluded": rows}
    data["seed"] = seed_from_commit(COMMIT)
    found = Findings()
    judge_mutation(Reader(data), 70.0, found, exclusions=declared, **kwargs)
    return found


def test_a_surviving_declared_mutant_is_excluded_and_shown_with_its_reason() -> None:
    """An exclusion whose mutant survived as declared stands: PASS, listed in a note and the details."""
    found = judged_with([excluded_row()], [CAST])
    assert found.statuses == [Status.PASS]
    note = next(n for n in found.notes if "reviewed equivalent mutant" in n)
    assert "m.x_f__mutmut_8 (m.py:2" in note
    assert "never evaluates its type string" in note
    assert found.details["mutation"]["excluded"][0]["reason"] == CAST.reason


@pytest.mark.parametrize(
    ("row", "why"),
    [
        (excluded_row("killed"), "the tests kill it (killed)"),
        (excluded_row("timeout"), "the tests kill it (timeout)"),
        (excluded_row("not covered"), "it was not covered"),
        ({"name": CAST.mutant, "file": None, "status": "not generated", "line": None}, "generated no mutant"),
        (excluded_row(diff=CAST_DIFF.replace("any, ...", "Any, ..]")), "now changes the line to"),
    ],
)
def test_a_declared_mutant_the_tests_kill_or_that_changed_is_void(row: dict[str, Any], why: str) -> None:
    """A killed, uncovered, missing or different mutant voids its exclusion: FAIL naming it and why."""
    found = judged_with([row], [CAST])
    assert Status.FAIL in found.statuses
    (problem,) = [p for p in found.problems if "is void" in p]
    assert CAST.mutant in problem
    assert why in problem


def test_more_exclusions_than_the_policy_allows_fail() -> None:
    """Eleven exclusions against a limit of ten FAIL with both numbers; a duplicate entry is void."""
    declared = [CAST.model_copy(update={"mutant": f"m.x_f__mutmut_{i}"}) for i in range(11)]
    found = judged_with([], declared, max_exclusions=10)
    assert any("11 equivalent mutants excluded" in p and "at most 10" in p for p in found.problems)
    standing, void = review_exclusions([CAST, CAST], [excluded_row()])
    assert len(standing) == 1
    assert void[0]["void"] == "named twice in the list"


def test_the_ci_seed_is_bound_to_the_commit() -> None:
    """A seed that is not the commit's, or a fixed seed the policy does not allow, FAILs the check."""
    good = {"mode": "ci", "seed_source": "commit", "seed_commit": COMMIT, "seed": seed_from_commit(COMMIT)}
    assert seed_problem(good, allow_fixed_seed=False) is None
    assert "does not derive from the recorded commit" in str(seed_problem({**good, "seed": 7}, False))
    fixed = {"mode": "ci", "seed_source": "fixed", "seed": 7}
    assert "the policy does not allow" in str(seed_problem(fixed, allow_fixed_seed=False))
    assert seed_problem(fixed, allow_fixed_seed=True) is None
    ignored = Findings()
    judge_mutation(Reader({**record(38, 2), "configured_seed": 7}), 70.0, ignored)
    assert any("mutation_seed 7 was not used" in note for note in ignored.notes)
    assert seed_problem({"mode": "release", "seed": 1}, allow_fixed_seed=False) is None
    assert seed_from_commit(COMMIT) == seed_from_commit(COMMIT) != seed_from_commit(COMMIT[::-1])
    found = Findings()
    judge_mutation(Reader({**record(38, 2), "seed_source": "fixed"}), 70.0, found)
    assert found.statuses[0] is Status.FAIL
    assert "not bound to the commit" in found.problems[0]


def test_an_exclusion_needs_its_mutation_and_a_reason() -> None:
    """[gates.G1] equivalent_mutants entries without a mutation or with a token reason are refused."""
    with pytest.raises(ValidationError):
        CoveragePolicy.model_validate({"equivalent_mutants": [{"mutant": "m.x", "reason": "equivalent, trust me"}]})
    with pytest.raises(ValidationError):
        CoveragePolicy.model_validate({"equivalent_mutants": [{"mutant": "m.x", "mutation": "x", "reason": "eq"}]})
    assert CoveragePolicy().max_equivalent_mutants == 10
    assert CoveragePolicy().allow_fixed_mutation_seed is False


def test_no_mutate_pragmas_are_disarmed_and_listed(tmp_path: Path) -> None:
    """A `# pragma: no mutate` in a critical file is neutralised in the copy and named in a note."""
    (tmp_path / "m.py").write_text("x = 1\ny = 2  # pragma: no mutate\n", encoding="utf-8")
    assert _disarm_no_mutate(tmp_path, ["m.py"]) == ["m.py:2"]
    assert "no mutate" not in (tmp_path / "m.py").read_text(encoding="utf-8")
    found = Findings()
    judge_mutation(Reader({**record(38, 2), "no_mutate_pragmas": ["m.py:2"]}), 70.0, found)
    assert any("`# pragma: no mutate` ignored" in note and "m.py:2" in note for note in found.notes)
