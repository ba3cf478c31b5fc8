"""Pure judging of G1's test strength (gates/mutation_judge.py) and the runner's pure parts."""

from __future__ import annotations

from typing import Any

from gates.coverage_judge import Findings
from gates.mutation import _line_of, _outcome, _setup_cfg
from gates.mutation_judge import KILL_RATE_MEASUREMENT, MUTATION, judge_mutation, wilson_interval_pct
from harness.model import Status

DIFF = """# covpass.x_fee__mutmut_2: survived
--- covpass/__init__.py
+++ covpass/__init__.py
@@ -1,5 +1,5 @@
 def fee(amount: int) -> int:
     \"\"\"The fee.\"\"\"
-    if amount > 100:
+    if amount > 101:
         return amount // 100
     return 5
"""
SOURCE = (
    '"""Fees."""\n\n\ndef fee(amount: int) -> int:\n    """The fee."""\n    if amount > 100:\n'
    "        return amount // 100\n    return 5\n\n\ndef fee(amount: int) -> int:\n    return 0\n"
)


class Reader:
    """An evidence reader holding one mutation.json."""

    def __init__(self, record: dict[str, Any] | None) -> None:
        """Hold the record (None: the file is absent)."""
        self.record = record

    def exists(self, name: str) -> bool:
        """Whether mutation.json is present."""
        return name == MUTATION and self.record is not None

    def read_json(self, name: str) -> Any:
        """The record."""
        del name
        return self.record


def record(killed: int, survived: int = 0, **extra: int) -> dict[str, Any]:
    """A mutation.json with so many killed and surviving mutants (and any other outcome counts)."""
    rows = [{"name": f"k{i}", "file": "m.py", "status": "killed", "line": None} for i in range(killed)]
    rows += [{"name": f"s{i}", "file": "m.py", "status": "survived", "line": 7, "diff": DIFF} for i in range(survived)]
    for status, count in extra.items():
        rows += [{"name": status, "file": "m.py", "status": status.replace("_", " "), "line": None}] * count
    base = {"ran": True, "tool": "mutmut==3.8.1", "mode": "ci", "seed": 7, "seed_source": "random"}
    return {**base, "generated": len(rows), "mutants": rows}


def judged(data: dict[str, Any] | None, min_pct: float = 70.0) -> Findings:
    """The findings of judging one record."""
    found = Findings()
    judge_mutation(Reader(data), min_pct, found)
    return found


def test_wilson_interval_matches_the_textbook_figures() -> None:
    """12 of 12 killed has a Wilson 95 % lower bound of 75.75 %, 0 of 5 an upper bound of 43.45 %."""
    assert wilson_interval_pct(12, 12)[0] == 75.75
    assert wilson_interval_pct(0, 5)[1] == 43.45


def test_strong_tests_pass() -> None:
    """38 of 40 killed: the lower bound (83.5 %) clears 70 %, PASS with the seed in the note."""
    found = judged(record(38, 2))
    assert found.statuses == [Status.PASS]
    bound = next(m for m in found.measurements if m.name == KILL_RATE_MEASUREMENT)
    assert bound.passed
    assert "seed 7" in found.notes[-1]
    assert "m.py:7 `if amount > 100:` -> `if amount > 101:`" in found.notes[-1]


def test_weak_tests_fail_listing_survivors() -> None:
    """20 of 40 killed fails, the reason listing each survivor's file:line and change."""
    found = judged(record(20, 20))
    assert found.statuses == [Status.FAIL]
    assert "20 of 40 mutants killed" in found.problems[0]
    assert "m.py:7 `if amount > 100:` -> `if amount > 101:`" in found.problems[0]
    assert "and 10 more" in found.problems[0]


def test_too_few_mutants_is_inconclusive_never_pass() -> None:
    """5 of 5 killed cannot bound the rate above 70 % (56.55 %): INCONCLUSIVE."""
    found = judged(record(5))
    assert found.statuses == [Status.INCONCLUSIVE]
    assert "too few mutants for the bound to reach 70 %" in found.problems[0]


def test_timeouts_count_killed_and_not_covered_stay_out() -> None:
    """Timeouts are counted killed and listed; not-covered mutants and errors are reported apart."""
    found = judged(record(12, timeout=2, not_covered=3, error_x=1))
    assert found.statuses == [Status.PASS]
    assert found.details["mutation"]["judged"] == 14
    assert found.details["mutation"]["counts"] == {
        "killed": 12,
        "survived": 0,
        "timeout": 2,
        "not covered": 3,
        "errors": 1,
    }
    assert any("(counted killed)" in note for note in found.notes)


def test_a_run_that_tested_nothing_is_inconclusive() -> None:
    """Only not-covered mutants, or a run that did not happen, is INCONCLUSIVE with the reason."""
    assert judged(record(0, not_covered=4)).statuses == [Status.INCONCLUSIVE]
    failed = judged({"ran": False, "reason": "mutmut generated no mutant (exit 1)"})
    assert failed.statuses == [Status.INCONCLUSIVE]
    assert "mutmut generated no mutant" in failed.problems[0]
    assert judged(None).statuses == []


def test_the_mutated_line_is_located_in_the_file() -> None:
    """mutmut's function-relative diff is mapped to the file line, even when the def line repeats."""
    assert _line_of(SOURCE, DIFF) == 6
    assert _outcome(1) == "killed"
    assert _outcome(36) == "timeout"
    assert _outcome(None) == "not tested (budget)"
    assert "only_mutate =\n    covpass/__init__.py" in _setup_cfg(["covpass"], ["covpass/__init__.py"], [])


def test_a_survivor_on_an_unexecuted_line_is_not_covered() -> None:
    """A survivor whose line coverage.json lists as missing counts as not covered, not survived."""
    found = Findings()
    judge_mutation(Reader(record(12, 1)), 70.0, found, {"m.py": frozenset({7})})
    assert found.statuses == [Status.PASS]
    assert found.details["mutation"]["counts"]["not covered"] == 1
    assert found.details["mutation"]["survivors"] == []
