"""Gate G1's pure evaluate on hand-written evidence: thresholds, globs, test outcomes and diff coverage."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gates.coverage import (
    CoverageGate,
    CoveragePolicy,
    line_ranges,
    parse_diff,
    parse_junit,
    pct_floor,
    resolve_patterns,
)
from harness.gate import Evidence
from harness.model import Status, Verdict

TARGET = "/srv/target"
JUNIT_OK = '<testsuites><testsuite name="pytest" tests="3" failures="0" errors="0" skipped="0">'
JUNIT_OK += '<testcase classname="t" name="a"/></testsuite></testsuites>'


@dataclass
class FileSpec:
    """One measured file: executed and missing lines, branch counts and untaken branches."""

    executed: list[int]
    missing: list[int] = field(default_factory=list)
    branches: int = 0
    covered_branches: int = 0
    missing_branches: list[list[int]] = field(default_factory=list)


def coverage_json(files: dict[str, FileSpec]) -> dict[str, Any]:
    """A coverage.json (format 3, branch coverage on) for the given files, totals included."""
    out: dict[str, Any] = {"meta": {"format": 3, "version": "7.17.3", "branch_coverage": True}, "files": {}}
    totals = {"covered_lines": 0, "num_statements": 0, "num_branches": 0, "covered_branches": 0}
    for path, spec in files.items():
        summary = {
            "covered_lines": len(spec.executed),
            "num_statements": len(spec.executed) + len(spec.missing),
            "num_branches": spec.branches,
            "covered_branches": spec.covered_branches,
        }
        out["files"][path] = {
            "executed_lines": spec.executed,
            "missing_lines": spec.missing,
            "missing_branches": spec.missing_branches,
            "summary": summary,
        }
        for key in totals:
            totals[key] += summary[key]
    out["totals"] = totals
    return out


def write_pack(root: Path, files: dict[str, Any]) -> Evidence:
    """Write gate-relative evidence files under root/gates/G1 and return the Evidence view."""
    names = []
    for name, content in files.items():
        path = root / "gates" / "G1" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        names.append(f"gates/G1/{name}")
    return Evidence(root, "G1", tuple(sorted(names)))


def evidence(
    root: Path,
    *,
    measured: dict[str, FileSpec] | None = None,
    critical: list[str] | None = None,
    matches: dict[str, list[str]] | None = None,
    junit: str | None = JUNIT_OK,
    returncode: int = 0,
    mode: str = "release",
    extra: dict[str, Any] | None = None,
) -> Evidence:
    """Evidence of one G1 run; by default a well-covered module `app/core.py` declared critical."""
    measured = measured if measured is not None else {"app/core.py": FileSpec([1, 2, 3, 4], [], 2, 2)}
    critical = critical if critical is not None else ["app/*.py"]
    matches = matches if matches is not None else {"app/*.py": ["app/core.py"]}
    files: dict[str, Any] = {
        "context.json": {
            "mode": mode,
            "target_dir": TARGET,
            "critical_modules": critical,
            "patterns": {pattern: {"files": found, "error": None} for pattern, found in matches.items()},
        },
        "test_run.json": {
            "returncode": returncode,
            "timed_out": False,
            "timeout_s": 1200.0,
            "output_tail": "E   ImportError: no module named app",
        },
        "coverage.json": coverage_json(measured),
        **(extra or {}),
    }
    if junit is not None:
        files["pytest-junit.xml"] = junit
    return write_pack(root, files)


def judge(ev: Evidence, **policy: Any) -> Verdict:
    """Run the gate's evaluate with a policy built from keyword overrides."""
    return CoverageGate().evaluate(ev, CoveragePolicy(**policy))


def measured_value(verdict: Verdict, name: str) -> Any:
    """The value of the named measurement."""
    (found,) = [m for m in verdict.measurements if m.name == name]
    return found.value


def test_line_ranges_compress_runs() -> None:
    """Line numbers are compressed into sorted, de-duplicated ranges."""
    assert line_ranges([10, 9, 1, 2, 3, 7, 3]) == "1-3, 7, 9-10"
    assert line_ranges([]) == ""


def test_percentages_are_floored_never_rounded_up() -> None:
    """74.999 % stays below a 75 % bar: figures are floored to two decimals."""
    assert pct_floor(74999, 100000) == 74.99
    assert pct_floor(2, 3) == 66.66
    assert pct_floor(0, 0) == 100.0


def test_parse_diff_takes_new_side_lines_only() -> None:
    """Added/modified lines per new path; deletions-only hunks and deleted files add nothing."""
    text = "\n".join(
        [
            "diff --git a/app/core.py b/app/core.py",
            "--- a/app/core.py",
            "+++ b/app/core.py",
            "@@ -3 +3 @@ def f():",
            "@@ -10,2 +10,0 @@",
            "@@ -20,0 +21,3 @@",
            "diff --git a/old.py b/old.py",
            "--- a/old.py",
            "+++ /dev/null",
            "@@ -1,4 +0,0 @@",
        ]
    )
    assert parse_diff(text) == {"app/core.py": {3, 21, 22, 23}}


def test_parse_junit_counts_and_names_failures() -> None:
    """Counts are summed over suites and every failing or erroring case is named with its message."""
    text = (
        '<testsuites><testsuite tests="3" failures="1" errors="1" skipped="0">'
        '<testcase classname="t" name="ok"/>'
        '<testcase classname="t" name="bad"><failure message="assert 1 == 2&#10;more">x</failure></testcase>'
        '<testcase classname="t" name="boom"><error message="fixture broke">x</error></testcase>'
        "</testsuite></testsuites>"
    )
    summary = parse_junit(text)
    assert (summary.tests, summary.failures, summary.errors) == (3, 1, 1)
    assert summary.failing == ("t::bad (failure: assert 1 == 2)", "t::boom (error: fixture broke)")


def test_well_covered_evidence_passes_and_survives_a_json_round_trip(tmp_path: Path) -> None:
    """Full coverage PASSes, and the verdict equals itself after results.json's JSON round trip (verify)."""
    verdict = judge(evidence(tmp_path))
    assert verdict.status is Status.PASS
    again = Verdict.model_validate(json.loads(json.dumps(verdict.model_dump(mode="json"))))
    assert again == verdict


@pytest.mark.parametrize(("executed", "status"), [(75, Status.PASS), (74, Status.FAIL)])
def test_overall_line_threshold_is_inclusive(tmp_path: Path, executed: int, status: Status) -> None:
    """75 of 100 statements meets the 75 % default; 74 of 100 FAILs with the count in the reason."""
    measured = {
        "app/core.py": FileSpec([1, 2], [], 2, 2),
        "app/other.py": FileSpec(list(range(1, executed - 1)), list(range(executed - 1, 99))),
    }
    verdict = judge(evidence(tmp_path, measured=measured, matches={"app/*.py": ["app/core.py"]}))
    assert verdict.status is status
    assert measured_value(verdict, "overall line coverage") == float(executed)
    if status is Status.FAIL:
        assert verdict.reasons[0] == "overall line coverage 74.0 % is below 75 % (26 of 100 statements never ran)"
    assert "lowest-covered files: app/other.py" in " ".join(verdict.reasons)


def test_overall_branch_coverage_is_judged(tmp_path: Path) -> None:
    """Branch coverage below min_overall_branch_pct FAILs even when every line ran."""
    measured = {"app/core.py": FileSpec([1, 2, 3], [], 10, 9), "app/x.py": FileSpec([1], [], 10, 5)}
    verdict = judge(evidence(tmp_path, measured=measured), min_critical_pct=80)
    assert verdict.status is Status.FAIL
    assert "overall branch coverage 70.0 % is below 75 % (6 of 20 branches never taken)" in verdict.reasons


def test_critical_file_below_its_bar_fails_with_every_uncovered_line(tmp_path: Path) -> None:
    """A critical file at 80 % FAILs the 90 % bar and its uncovered lines and branches are listed as ranges."""
    spec = FileSpec([1, 2, 3, 4, 5, 6, 7, 8], [9, 10], 4, 3, [[6, 9]])
    verdict = judge(evidence(tmp_path, measured={"app/core.py": spec}))
    assert verdict.status is Status.FAIL
    assert "critical file app/core.py: line coverage 80.0 % is below 90 %" in verdict.reasons
    assert "uncovered critical lines in app/core.py: 9-10" in verdict.reasons
    assert "untaken critical branches in app/core.py: 6->9" in verdict.reasons
    assert verdict.details["critical"][0]["uncovered_lines"] == "9-10"


def test_glob_matching_no_file_is_never_skipped(tmp_path: Path) -> None:
    """A critical_modules glob that matches nothing makes G1 INCONCLUSIVE, naming the glob."""
    ev = evidence(
        tmp_path, critical=["app/*.py", "billing/**/*.py"], matches={"app/*.py": ["app/core.py"], "billing/**/*.py": []}
    )
    verdict = judge(ev)
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.reasons[0].startswith("critical/per-module entry 'billing/**/*.py' (matches no Python file")


def test_no_critical_modules_declared_is_inconclusive_unless_allowed(tmp_path: Path) -> None:
    """G1's critical figure cannot be evidenced without critical modules; require_critical_modules=false allows it."""
    assert judge(evidence(tmp_path, critical=[], matches={})).status is Status.INCONCLUSIVE
    assert judge(evidence(tmp_path, critical=[], matches={}), require_critical_modules=False).status is Status.PASS


def test_unmeasured_critical_file_counts_as_zero(tmp_path: Path) -> None:
    """A critical file on disk that coverage never measured FAILs as 0 %, not silently skipped."""
    verdict = judge(evidence(tmp_path, matches={"app/*.py": ["app/core.py", "app/hidden.py"]}))
    assert verdict.status is Status.FAIL
    assert measured_value(verdict, "line coverage of app/hidden.py (critical)") == 0.0
    assert "critical file app/hidden.py was not measured" in verdict.reasons[0]


def test_module_override_replaces_the_critical_bar_and_adds_modules(tmp_path: Path) -> None:
    """module_min_pct lowers one critical file's bar to 80 % and holds a non-critical file to 96 %."""
    measured = {"app/core.py": FileSpec(list(range(1, 9)), [9, 10]), "lib/util.py": FileSpec(list(range(1, 20)), [20])}
    matches = {"app/*.py": ["app/core.py"], "app/core.py": ["app/core.py"], "lib/util.py": ["lib/util.py"]}
    verdict = judge(
        evidence(tmp_path, measured=measured, matches=matches), module_min_pct={"app/core.py": 80, "lib/util.py": 96}
    )
    (core,) = [m for m in verdict.measurements if m.name == "line coverage of app/core.py (critical)"]
    assert (core.value, core.threshold, core.passed) == (80.0, 80.0, True)
    assert verdict.status is Status.FAIL
    assert verdict.reasons[0] == "module_min_pct file lib/util.py: line coverage 95.0 % is below 96 %"


def test_failing_test_fails_even_at_full_coverage(tmp_path: Path) -> None:
    """A failing test case is FAIL whatever the coverage, and the test is named."""
    junit = (
        '<testsuite tests="2" failures="1" errors="0" skipped="0"><testcase classname="t" name="ok"/>'
        '<testcase classname="t" name="bad"><failure message="boom"/></testcase></testsuite>'
    )
    verdict = judge(evidence(tmp_path, junit=junit, returncode=1))
    assert verdict.status is Status.FAIL
    assert verdict.reasons[0] == "1 failing and 0 erroring of 2 tests: t::bad (failure: boom)"
    assert measured_value(verdict, "overall line coverage") == 100.0


@pytest.mark.parametrize(
    ("junit", "returncode", "start"),
    [
        ('<testsuite tests="0" failures="0" errors="0" skipped="0"/>', 5, "no test ran (0 collected"),
        ('<testsuite tests="2" failures="0" errors="0" skipped="2"/>', 0, "no test ran (2 collected, 2 skipped"),
        (None, 4, "the test command exited 4 without writing a JUnit report: E   ImportError"),
        ("<testsuite", 1, "the JUnit report of the test run is unreadable"),
        (JUNIT_OK, 3, "the test command exited 3 although the JUnit report shows no failing test"),
    ],
)
def test_tests_that_did_not_really_run_are_inconclusive(
    tmp_path: Path, junit: str | None, returncode: int, start: str
) -> None:
    """No test collected, all skipped, no or broken JUnit, or an odd exit code: INCONCLUSIVE, never PASS or FAIL."""
    verdict = judge(evidence(tmp_path, junit=junit, returncode=returncode))
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.reasons[0].startswith(start)


def _ci(tmp_path: Path, diff: str | None, measured: dict[str, FileSpec] | None = None) -> Evidence:
    """ci-mode evidence with a computed diff (or, for None, a missing base ref)."""
    if diff is None:
        base = {"requested": "main", "computed": False, "reason": "ref 'main' does not exist", "base_commit": None}
        return evidence(tmp_path, mode="ci", measured=measured, extra={"diff_base.json": base})
    base = {"requested": "main", "computed": True, "reason": None, "base_commit": "a" * 40}
    return evidence(tmp_path, mode="ci", measured=measured, extra={"diff_base.json": base, "changes.diff": diff})


def test_missing_base_ref_is_a_note_unless_diff_is_required(tmp_path: Path) -> None:
    """Without the base ref diff coverage is 'not computed': a note by default, INCONCLUSIVE with require_diff."""
    verdict = judge(_ci(tmp_path, None))
    assert verdict.status is Status.PASS
    assert "diff coverage not computed: ref 'main' does not exist" in verdict.reasons
    assert judge(_ci(tmp_path, None), require_diff=True).status is Status.INCONCLUSIVE


def test_uncovered_changed_branch_in_a_critical_file_fails(tmp_path: Path) -> None:
    """A changed critical line whose branch never ran FAILs, with the branch and the changed lines named."""
    measured = {
        "app/core.py": FileSpec(list(range(1, 20)), [20], 4, 3, [[19, 20]]),
        "lib/util.py": FileSpec(list(range(1, 30)), [30]),
    }
    diff = (
        "+++ b/app/core.py\n@@ -18,0 +19,2 @@\n+++ b/lib/util.py\n@@ -29 +29,2 @@\n+++ b/tests/test_x.py\n@@ -1 +1 @@\n"
    )
    verdict = judge(_ci(tmp_path, diff, measured), min_critical_pct=50)
    assert verdict.status is Status.FAIL
    assert measured_value(verdict, "changed-line coverage") == 50.0
    assert measured_value(verdict, "untaken branches on changed critical lines") == 1
    assert "untaken branches on changed lines of critical files: app/core.py: 19->20" in verdict.reasons
    assert "uncovered changed lines in lib/util.py: 30" in verdict.reasons
    assert verdict.details["diff"]["unmeasured_changed_files"] == ["tests/test_x.py"]


def test_release_mode_ignores_diff_evidence(tmp_path: Path) -> None:
    """Diff coverage is a ci-mode check: the same evidence in release mode judges no changed line."""
    base = {"requested": "main", "computed": False, "reason": "x", "base_commit": None}
    verdict = judge(evidence(tmp_path, extra={"diff_base.json": base}), require_diff=True)
    assert verdict.status is Status.PASS
    assert all("changed" not in m.name for m in verdict.measurements)


def test_absolute_coverage_paths_are_made_relative(tmp_path: Path) -> None:
    """coverage.json keys that are absolute paths under the target match the relative critical globs."""
    verdict = judge(evidence(tmp_path, measured={f"{TARGET}/app/core.py": FileSpec([1, 2], [3])}))
    assert measured_value(verdict, "line coverage of app/core.py (critical)") == 66.66


def test_resolve_patterns_handles_files_directories_and_bad_globs(tmp_path: Path) -> None:
    """Globs, plain directories (every .py below) and absolute patterns resolve to target-relative .py files."""
    (tmp_path / "app" / "sub").mkdir(parents=True)
    for name in ("app/a.py", "app/sub/b.py", "app/notes.txt"):
        (tmp_path / name).write_text("", encoding="utf-8")
    resolved = resolve_patterns(tmp_path, ["app/*.py", "app", "nothing/*.py", "/etc/*.py"])
    assert resolved["app/*.py"] == {"files": ["app/a.py"], "error": None}
    assert resolved["app"]["files"] == ["app/a.py", "app/sub/b.py"]
    assert resolved["nothing/*.py"]["files"] == []
    assert resolved["/etc/*.py"]["error"] is not None


def test_the_assert_scan_follows_helpers_and_pytest_raises(tmp_path: Path) -> None:
    """A test asserting through a helper or a conftest helper, or via pytest.raises, asserts; a bare call does not."""
    from gates.assert_scan import scan  # noqa: PLC0415

    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text("def check_ok(x):\n    assert x\n", encoding="utf-8")
    (tests / "test_a.py").write_text(
        "import pytest\n\n"
        "def _helper(x):\n    return _deeper(x)\n\n"
        "def _deeper(x):\n    assert x == 1\n\n"
        "def test_direct():\n    assert 1\n\n"
        "def test_via_helper():\n    _helper(1)\n\n"
        "def test_via_conftest():\n    check_ok(1)\n\n"
        "def test_raises():\n    with pytest.raises(ValueError):\n        int('x')\n\n"
        "class TestMock:\n    def test_mock(self, m):\n        m.assert_called_once()\n\n"
        "def test_silent():\n    int('1')\n",
        encoding="utf-8",
    )
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n', encoding="utf-8")
    found = scan(tmp_path)
    assert (found["files"], found["tests"]) == (1, 6)
    assert found["without_assertion"] == ["tests/test_a.py::test_silent"]
