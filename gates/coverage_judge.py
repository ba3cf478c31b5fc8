"""Pure judging for gate G1: coverage.json, the JUnit XML and the diff in, a verdict out.

Split from gates/coverage.py (collection and report) so each module reads on its own; nothing here
does I/O beyond the evidence reader it is given.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from pydantic import Field

from gates.mutation_judge import MAX_EQUIVALENT_MUTANTS, judge_mutation, line_ranges
from gates.mutation_review import EquivalentMutant
from harness.gate import Policy
from harness.model import Measurement, Status, Verdict, worst

CONTEXT = "context.json"
TEST_RUN = "test_run.json"
COVERAGE_JSON = "coverage.json"
#: The static scan of the target's test functions (gates/assert_scan.py).
ASSERT_SCAN = "test_asserts.json"
COVERAGE_XML = "coverage.xml"
JUNIT = "pytest-junit.xml"
DIFF_BASE = "diff_base.json"
DIFF = "changes.diff"
REPORT = "coverage_report.html"
WORST_FILES_SHOWN = 5
TAIL_CHARS = 1500
PYTEST_NO_TESTS = 5
#: pytest exit codes for an interrupted session, an internal error and a usage error: no usable coverage.
PYTEST_CRASHED = (2, 3, 4)
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


class CoveragePolicy(Policy):
    """Thresholds of the coverage gate (percentages, 0-100)."""

    min_overall_line_pct: float = Field(75.0, ge=0, le=100, description="Requirement G1: at least 75 % overall.")
    min_overall_branch_pct: float = Field(
        75.0, ge=0, le=100, description="Branch coverage overall; G1 names one overall figure, so 75 as well."
    )
    min_critical_pct: float = Field(
        90.0, ge=0, le=100, description="Requirement G1: line and branch coverage of every critical file."
    )
    module_min_pct: dict[str, Annotated[float, Field(ge=0, le=100)]] = Field(
        default_factory=dict,
        description="Path or glob -> minimum line and branch %; replaces min_critical_pct for files it matches.",
    )
    require_critical_modules: bool = Field(
        default=True, description="No [target] critical_modules declared: INCONCLUSIVE (G1 has a critical figure)."
    )
    diff_base: str = Field(
        "main",
        description="ci mode: diff coverage, and the changed lines whose mutants join the test-strength sample, "
        "against `git merge-base HEAD <diff_base>` (uncommitted changes included); empty: off.",
    )
    require_diff: bool = Field(
        default=False,
        description="ci mode: INCONCLUSIVE when diff coverage, and so the changed lines whose mutants join the "
        "test-strength sample, cannot be computed.",
    )
    min_diff_pct: float = Field(
        75.0, ge=0, le=100, description="ci mode: coverage of changed measurable lines (G1's overall figure)."
    )
    max_share_without_assert: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Largest share of the target's test functions that may assert nothing (coverage from tests "
        "that check nothing is not evidence); each such test is listed.",
    )
    test_strength: bool = Field(
        False,
        description="Measure test strength: mutants of the critical modules (mutmut) must be killed by the tests; "
        "off: not measured, and the G1.strength check of the matrix is NOT_RUN saying so.",
    )
    min_mutation_kill_pct: float = Field(
        70.0,
        ge=0,
        le=100,
        description="Test strength: the Wilson 95 % lower bound of the kill rate of mutants of the critical modules.",
    )
    mutation_sample: int = Field(40, ge=1, description="ci mode: how many mutants of the critical modules are sampled.")
    mutation_changed_cap: int = Field(
        60,
        ge=1,
        description="ci mode: the most mutants on the changed lines (since the diff_base merge base, uncommitted "
        "changes included) that join the sample; past it a subset seeded like the sample, judged by its Wilson bound.",
    )
    min_changed_mutation_kill_pct: float = Field(
        70.0,
        ge=0,
        le=100,
        description="ci mode: kill rate of the mutants on the changed lines, each counted (past the cap: the Wilson "
        "95 % lower bound); 100: every changed-line mutant a test executes is killed or declared equivalent.",
    )
    mutation_seed: int | None = Field(
        None,
        description="ci mode: a fixed sampling seed, used only where allow_fixed_mutation_seed is on; otherwise "
        "the seed derives from the target's commit (a fresh one outside git), recorded in mutation.json.",
    )
    allow_fixed_mutation_seed: bool = Field(
        False,
        description="Whether mutation_seed may choose the ci sample (off: a target could shop for a passing one).",
    )
    equivalent_mutants: list[EquivalentMutant] = Field(
        default_factory=list,
        description="Reviewed equivalent mutants ({mutant, mutation, reason} each), tested every run and left out "
        "of the kill rate while they survive as declared; a killed, changed or missing one FAILs.",
    )
    max_equivalent_mutants: int = Field(
        MAX_EQUIVALENT_MUTANTS, ge=0, description="The most equivalent_mutants a target may exclude."
    )
    mutation_budget_s: float = Field(
        170.0, gt=0, description="ci mode: time limit of each mutmut run (generation, then the sample)."
    )
    mutation_release_budget_s: float = Field(
        3600.0, gt=0, description="release mode: time limit of each mutmut run (every mutant is tested)."
    )
    mutation_test_paths: list[str] = Field(
        default_factory=list,
        description="Test files or directories mutmut may run (empty: the whole suite); fewer tests only make "
        "mutants harder to kill.",
    )


# ---------------------------------------------------------------- pure judging of the evidence


class EvidenceReader(Protocol):
    """What judging reads: `Evidence` in evaluate, the just-written files in collect."""

    def exists(self, name: str) -> bool:
        """Whether the file was recorded."""

    def read_text(self, name: str) -> str:
        """A file's text."""

    def read_json(self, name: str) -> Any:
        """A JSON file's content."""


def pct_floor(covered: int, total: int) -> float:
    """A percentage floored to two decimals, so a figure is never rounded up into a pass."""
    return math.floor(covered * 10000 / total) / 100 if total else 100.0


def branch_text(branches: Iterable[Sequence[int]]) -> str:
    """Missing branches as 'from->to', with negative targets shown as 'exit'."""
    return ", ".join(f"{a}->{b if b > 0 else 'exit'}" for a, b in sorted((a, b) for a, b in branches))


@dataclass(frozen=True)
class FileCoverage:
    """One measured file of coverage.json, keyed by its path relative to the target."""

    path: str
    executed: frozenset[int]
    missing: frozenset[int]
    branches: int
    covered_branches: int
    missing_branches: tuple[tuple[int, int], ...]

    @property
    def line_pct(self) -> float:
        """Statement coverage."""
        return pct_floor(len(self.executed), len(self.executed) + len(self.missing))

    @property
    def branch_pct(self) -> float:
        """Branch coverage (100 when there is no branch)."""
        return pct_floor(self.covered_branches, self.branches)


def load_files(data: dict[str, Any], target_dir: str) -> dict[str, FileCoverage]:
    """The files of a coverage.json, with absolute paths under the target made relative."""
    files: dict[str, FileCoverage] = {}
    prefix = target_dir.rstrip("/") + "/"
    for raw, entry in data.get("files", {}).items():
        path = raw.removeprefix(prefix) if raw.startswith(prefix) else raw
        summary = entry["summary"]
        files[path] = FileCoverage(
            path=path,
            executed=frozenset(entry["executed_lines"]),
            missing=frozenset(entry["missing_lines"]),
            branches=int(summary.get("num_branches", 0)),
            covered_branches=int(summary.get("covered_branches", 0)),
            missing_branches=tuple((int(a), int(b)) for a, b in entry.get("missing_branches", [])),
        )
    return files


@dataclass(frozen=True)
class JunitSummary:
    """Counts and failing test ids of a pytest JUnit XML report."""

    tests: int
    failures: int
    errors: int
    skipped: int
    failing: tuple[str, ...]


def parse_junit(text: str) -> JunitSummary:
    """Sum every <testsuite> and name every test case with a <failure> or <error>."""
    root = ET.fromstring(text)  # noqa: S314 - written by the target's own pytest run, in this run
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(suite.get(key, "0")) for suite in suites) for key in ("tests", "failures", "errors")}
    skipped = sum(int(suite.get("skipped", "0")) for suite in suites)
    failing = []
    for case in root.iter("testcase"):
        for problem in [*case.findall("failure"), *case.findall("error")]:
            message = ((problem.get("message") or problem.tag).splitlines() or [""])[0][:160]
            failing.append(f"{case.get('classname', '')}::{case.get('name', '')} ({problem.tag}: {message})")
    return JunitSummary(counts["tests"], counts["failures"], counts["errors"], skipped, tuple(failing))


def parse_diff(text: str) -> dict[str, set[int]]:
    """Changed (added or modified) line numbers per new-side path of a `git diff -U0` output."""
    changed: dict[str, set[int]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("+++ "):
            name = line[4:].strip().strip('"')
            current = None if name == "/dev/null" else name.removeprefix("b/")
            if current is not None:
                changed.setdefault(current, set())
        elif current is not None and (hunk := _HUNK.match(line)):
            start, count = int(hunk.group(1)), int(hunk.group(2) or "1")
            changed[current].update(range(start, start + count))
    return changed


@dataclass
class Findings:
    """Sub-verdicts collected while judging, folded into one Verdict at the end."""

    statuses: list[Status] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def judge(self, measurement: Measurement, reason: str) -> None:
        """Record a judged measurement; a miss is a FAIL with the reason."""
        self.measurements.append(measurement)
        self.statuses.append(Status.PASS if measurement.passed else Status.FAIL)
        if not measurement.passed:
            self.problems.append(reason)

    def block(self, status: Status, reason: str) -> None:
        """Record a finding that blocks a PASS by itself."""
        self.statuses.append(status)
        self.problems.append(reason)


def read_junit(reader: EvidenceReader) -> tuple[JunitSummary | None, str]:
    """The parsed JUnit report of the test run, or None and why there is none to judge."""
    run = reader.read_json(TEST_RUN)
    if run["timed_out"]:
        return None, f"the test command timed out after {run['timeout_s']:g} s"
    if not reader.exists(JUNIT):
        return None, f"the test command exited {run['returncode']} without writing a JUnit report: {run['output_tail']}"
    try:
        return parse_junit(reader.read_text(JUNIT)), ""
    except (ET.ParseError, ValueError) as exc:
        return None, f"the JUnit report of the test run is unreadable: {exc}"


def judge_tests(reader: EvidenceReader, found: Findings) -> bool:
    """Judge the test run from the JUnit XML and exit code; return whether coverage is worth judging."""
    run = reader.read_json(TEST_RUN)
    junit, why = read_junit(reader)
    if junit is None:
        found.block(Status.INCONCLUSIVE, why)
        return False
    ran = junit.tests - junit.skipped
    found.details["tests"] = {
        "tests": junit.tests,
        "failures": junit.failures,
        "errors": junit.errors,
        "skipped": junit.skipped,
        "returncode": run["returncode"],
        "failing": list(junit.failing),
    }
    found.measurements.append(Measurement(name="tests run (not skipped)", value=ran))
    if junit.failures + junit.errors:
        crashed = run["returncode"] in PYTEST_CRASHED
        found.judge(
            Measurement.judged("failing or erroring tests", junit.failures + junit.errors, "<=", 0),
            f"{junit.failures} failing and {junit.errors} erroring of {junit.tests} tests: "
            + "; ".join(junit.failing[:10])
            + (f"; and {len(junit.failing) - 10} more" if len(junit.failing) > 10 else "")
            + (f"; pytest exited {run['returncode']}: {run['output_tail'][-400:]}" if crashed else ""),
        )
        return not crashed
    if run["returncode"] == PYTEST_NO_TESTS or ran == 0:
        found.block(
            Status.INCONCLUSIVE,
            f"no test ran ({junit.tests} collected, {junit.skipped} skipped; exit code {run['returncode']}): "
            "coverage without tests proves nothing",
        )
        return False
    if run["returncode"] != 0:
        found.block(
            Status.INCONCLUSIVE,
            f"the test command exited {run['returncode']} although the JUnit report shows no failing test: "
            f"{run['output_tail']}",
        )
        return False
    found.measurements.append(Measurement.judged("failing or erroring tests", 0, "<=", 0))
    found.statuses.append(Status.PASS)
    return True


def judge_overall(
    files: dict[str, FileCoverage], totals: dict[str, Any], policy: CoveragePolicy, found: Findings
) -> None:
    """Overall line and branch coverage against their thresholds, and the worst-covered files."""
    statements, covered = int(totals["num_statements"]), int(totals["covered_lines"])
    branches, covered_branches = int(totals.get("num_branches", 0)), int(totals.get("covered_branches", 0))
    if statements == 0:
        found.block(Status.INCONCLUSIVE, "coverage measured no statement: check [target] packages and source_root")
        return
    line_pct, branch_pct = pct_floor(covered, statements), pct_floor(covered_branches, branches)
    found.judge(
        Measurement.judged("overall line coverage", line_pct, ">=", policy.min_overall_line_pct, "%"),
        f"overall line coverage {line_pct} % is below {policy.min_overall_line_pct:g} % "
        f"({statements - covered} of {statements} statements never ran)",
    )
    if branches:
        found.judge(
            Measurement.judged("overall branch coverage", branch_pct, ">=", policy.min_overall_branch_pct, "%"),
            f"overall branch coverage {branch_pct} % is below {policy.min_overall_branch_pct:g} % "
            f"({branches - covered_branches} of {branches} branches never taken)",
        )
    else:
        found.measurements.append(Measurement(name="overall branch coverage", value="no branch in the code"))
    ranked = sorted((f for f in files.values() if f.missing), key=lambda f: (f.line_pct, f.path))
    worst_files = [
        {"path": f.path, "line_pct": f.line_pct, "branch_pct": f.branch_pct, "missing_lines": line_ranges(f.missing)}
        for f in ranked[:WORST_FILES_SHOWN]
    ]
    found.details["overall"] = {
        "line_pct": line_pct,
        "branch_pct": branch_pct,
        "statements": statements,
        "covered_lines": covered,
        "branches": branches,
        "covered_branches": covered_branches,
        "files": len(files),
    }
    found.details["worst_files"] = worst_files
    if worst_files:
        found.notes.append(
            "lowest-covered files: " + ", ".join(f"{item['path']} {item['line_pct']} %" for item in worst_files)
        )


def file_thresholds(context: dict[str, Any], policy: CoveragePolicy) -> tuple[dict[str, float], set[str], list[str]]:
    """Per-file thresholds from critical_modules and module_min_pct, the critical files, and unmatched entries."""
    patterns: dict[str, Any] = context["patterns"]
    thresholds: dict[str, float] = {}
    overrides: dict[str, float] = {}
    unmatched = []
    for pattern in [*context["critical_modules"], *policy.module_min_pct]:
        resolved = patterns.get(pattern) or {"files": [], "error": "not resolved by collect"}
        if not resolved["files"]:
            unmatched.append(f"{pattern!r} ({resolved['error'] or 'matches no Python file in the target'})")
    for pattern in context["critical_modules"]:
        for path in (patterns.get(pattern) or {}).get("files", []):
            thresholds[path] = policy.min_critical_pct
    critical = set(thresholds)
    for pattern, pct in policy.module_min_pct.items():
        for path in (patterns.get(pattern) or {}).get("files", []):
            overrides[path] = max(overrides.get(path, 0.0), pct)
    return {**thresholds, **overrides}, critical, sorted(set(unmatched))


def judge_critical(
    files: dict[str, FileCoverage], context: dict[str, Any], policy: CoveragePolicy, found: Findings
) -> None:
    """Every critical (or per-module) file's line and branch coverage against its threshold."""
    thresholds, critical, unmatched = file_thresholds(context, policy)
    if not context["critical_modules"] and policy.require_critical_modules:
        found.block(
            Status.INCONCLUSIVE,
            "[target] critical_modules is empty: the critical-path figure of requirement G1 cannot be evidenced",
        )
    for entry in unmatched:
        found.block(Status.INCONCLUSIVE, f"critical/per-module entry {entry}: its coverage cannot be judged")
    rows = []
    for path, threshold in sorted(thresholds.items()):
        kind = "critical" if path in critical else "module_min_pct"
        cov = files.get(path)
        if cov is None:
            found.judge(
                Measurement.judged(f"line coverage of {path} ({kind})", 0.0, ">=", threshold, "%"),
                f"{kind} file {path} was not measured (outside the measured source or omitted by the target's "
                "coverage configuration): counted as 0 %",
            )
            rows.append({"path": path, "kind": kind, "threshold": threshold, "measured": False})
            continue
        if cov.executed or cov.missing:
            found.judge(
                Measurement.judged(f"line coverage of {path} ({kind})", cov.line_pct, ">=", threshold, "%"),
                f"{kind} file {path}: line coverage {cov.line_pct} % is below {threshold:g} %",
            )
        if cov.branches:
            found.judge(
                Measurement.judged(f"branch coverage of {path} ({kind})", cov.branch_pct, ">=", threshold, "%"),
                f"{kind} file {path}: branch coverage {cov.branch_pct} % is below {threshold:g} %",
            )
        if cov.missing:
            found.notes.append(f"uncovered {kind} lines in {path}: {line_ranges(cov.missing)}")
        if cov.missing_branches:
            found.notes.append(f"untaken {kind} branches in {path}: {branch_text(cov.missing_branches)}")
        rows.append(
            {
                "path": path,
                "kind": kind,
                "threshold": threshold,
                "measured": True,
                "line_pct": cov.line_pct,
                "branch_pct": cov.branch_pct,
                "uncovered_lines": line_ranges(cov.missing),
                "untaken_branches": branch_text(cov.missing_branches),
            }
        )
    found.details["critical"] = rows
    found.details["unmatched_patterns"] = unmatched


@dataclass
class DiffTally:
    """Changed measurable lines since the diff base, overall and in critical files."""

    changed: int = 0
    covered: int = 0
    critical_changed: int = 0
    critical_covered: int = 0
    critical_untaken: int = 0
    critical_untaken_text: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    unmeasured: list[str] = field(default_factory=list)


def tally_diff(changed_lines: dict[str, set[int]], files: dict[str, FileCoverage], critical: set[str]) -> DiffTally:
    """Intersect the changed lines with the executed and missing lines of coverage.json."""
    tally = DiffTally()
    for path, lines in sorted(changed_lines.items()):
        cov = files.get(path)
        if cov is None:
            if path.endswith(".py"):
                tally.unmeasured.append(path)
            continue
        changed = lines & (cov.executed | cov.missing)
        uncovered = lines & cov.missing
        tally.changed += len(changed)
        tally.covered += len(changed) - len(uncovered)
        untaken = [[a, b] for a, b in cov.missing_branches if a in lines] if path in critical else []
        if path in critical:
            tally.critical_changed += len(changed)
            tally.critical_covered += len(changed) - len(uncovered)
            tally.critical_untaken += len(untaken)
            if untaken:
                tally.critical_untaken_text.append(f"{path}: {branch_text(untaken)}")
        if uncovered or untaken:
            tally.files.append(
                {"path": path, "uncovered_lines": line_ranges(uncovered), "untaken_branches": branch_text(untaken)}
            )
    return tally


def judge_diff(
    reader: EvidenceReader, files: dict[str, FileCoverage], critical: set[str], policy: CoveragePolicy, found: Findings
) -> None:
    """In ci mode: coverage of the lines changed since the merge base, and no untaken changed critical branch."""
    if not reader.exists(DIFF_BASE):
        found.notes.append("diff coverage off (diff_base is empty)")
        return
    base = reader.read_json(DIFF_BASE)
    if not base["computed"]:
        why = f"diff coverage not computed: {base['reason']}"
        found.measurements.append(Measurement(name="changed-line coverage", value="not computed"))
        if policy.require_diff:
            found.block(Status.INCONCLUSIVE, why + " (require_diff is set)")
        else:
            found.notes.append(why)
        found.details["diff"] = {"computed": False, "reason": base["reason"]}
        return
    tally = tally_diff(parse_diff(reader.read_text(DIFF)), files, critical)
    since = f"since {base['base_commit'][:12]} (merge base with {base['requested']})"
    if tally.changed:
        pct = pct_floor(tally.covered, tally.changed)
        found.judge(
            Measurement.judged("changed-line coverage", pct, ">=", policy.min_diff_pct, "%"),
            f"changed-line coverage {since} is {pct} %, below {policy.min_diff_pct:g} % "
            f"({tally.changed - tally.covered} of {tally.changed} changed statements never ran)",
        )
    else:
        found.measurements.append(Measurement(name="changed-line coverage", value="no changed measurable line"))
    if tally.critical_changed:
        pct = pct_floor(tally.critical_covered, tally.critical_changed)
        found.judge(
            Measurement.judged("changed-line coverage in critical files", pct, ">=", policy.min_critical_pct, "%"),
            f"changed-line coverage in critical files {since} is {pct} %, below {policy.min_critical_pct:g} %",
        )
    found.judge(
        Measurement.judged("untaken branches on changed critical lines", tally.critical_untaken, "<=", 0),
        "untaken branches on changed lines of critical files: " + "; ".join(tally.critical_untaken_text),
    )
    for row in tally.files:
        if row["uncovered_lines"]:
            found.notes.append(f"uncovered changed lines in {row['path']}: {row['uncovered_lines']}")
    found.details["diff"] = {
        "computed": True,
        "base_commit": base["base_commit"],
        "base_ref": base["requested"],
        "changed_statements": tally.changed,
        "covered_changed_statements": tally.covered,
        "files": tally.files,
        "unmeasured_changed_files": tally.unmeasured,
    }


def judge_asserts(reader: EvidenceReader, policy: CoveragePolicy, found: Findings) -> None:
    """Test functions that assert nothing (gates/assert_scan.py): counted, listed, their share judged."""
    if not reader.exists(ASSERT_SCAN):
        return
    scanned = reader.read_json(ASSERT_SCAN)
    silent, tests = scanned["without_assertion"], scanned["tests"]
    found.details["asserts"] = {"files": scanned["files"], "tests": tests, "without_assertion": silent}
    if not tests:
        found.notes.append(f"no test function found in {scanned['files']} test file(s) to check for assertions")
        return
    found.measurements.append(Measurement(name="test functions asserting nothing", value=len(silent)))
    share = round(len(silent) / tests, 4)
    if silent and share <= policy.max_share_without_assert:
        found.notes.append(f"{len(silent)} of {tests} test functions assert nothing: " + ", ".join(silent[:10]))
    found.judge(
        Measurement.judged("share of test functions asserting nothing", share, "<=", policy.max_share_without_assert),
        f"{len(silent)} of {tests} test functions assert nothing (no assert, pytest.raises/warns or assert* call, "
        f"directly or through a helper): coverage from them is no evidence; "
        + ", ".join(silent[:10])
        + (f" and {len(silent) - 10} more" if len(silent) > 10 else ""),
    )


def _missing_lines(reader: EvidenceReader, context: dict[str, Any]) -> dict[str, frozenset[int]]:
    """Per file, the lines the suite never executed (coverage.json): a mutant there is not covered."""
    if not reader.exists(COVERAGE_JSON):
        return {}
    files = load_files(reader.read_json(COVERAGE_JSON), context["target_dir"])
    return {path: entry.missing for path, entry in files.items()}


def judge(reader: EvidenceReader, policy: CoveragePolicy) -> Verdict:
    """The G1 verdict from the stored evidence; pure."""
    context = reader.read_json(CONTEXT)
    found = Findings()
    judge_asserts(reader, policy, found)
    if policy.test_strength:
        judge_mutation(
            reader,
            policy.min_mutation_kill_pct,
            found,
            _missing_lines(reader, context),
            exclusions=policy.equivalent_mutants,
            max_exclusions=policy.max_equivalent_mutants,
            allow_fixed_seed=policy.allow_fixed_mutation_seed,
            min_changed_kill_pct=policy.min_changed_mutation_kill_pct,
            require_changed=policy.require_diff,
        )
    else:
        found.notes.append("test strength (mutation sampling) not measured: [gates.G1] test_strength is off")
    if judge_tests(reader, found):
        if not reader.exists(COVERAGE_JSON):
            found.block(Status.INCONCLUSIVE, "the test run wrote no coverage.json: nothing to judge coverage by")
        else:
            data = reader.read_json(COVERAGE_JSON)
            files = load_files(data, context["target_dir"])
            if not data.get("meta", {}).get("branch_coverage"):
                found.block(Status.INCONCLUSIVE, "coverage.json has no branch data although --cov-branch was given")
            judge_overall(files, data["totals"], policy, found)
            judge_critical(files, context, policy, found)
            if context["mode"] == "ci":
                judge_diff(reader, files, file_thresholds(context, policy)[1], policy, found)
    status = worst(found.statuses) if found.statuses else Status.INCONCLUSIVE
    summary = []
    if status is Status.PASS:
        overall = found.details["overall"]
        summary.append(
            f"{found.details['tests']['tests']} tests passed; line coverage {overall['line_pct']} %, "
            f"branch coverage {overall['branch_pct']} %; {len(found.details['critical'])} critical file(s) "
            "at or above their thresholds"
        )
    return Verdict(
        status=status,
        reasons=tuple(summary + found.problems + found.notes),
        measurements=tuple(found.measurements),
        details=found.details,
    )
