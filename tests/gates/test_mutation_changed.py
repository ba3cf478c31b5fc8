"""G1 test strength on the changed lines: the lines git reports, the mutants on them, and their judging."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from gates.coverage import CoverageGate, _Written
from gates.mutation_changed import capped, changed_lines, function_of, locate_mutants, on_changed_lines
from gates.mutation_judge import CHANGED_KILL_MEASUREMENT, KILL_RATE_MEASUREMENT
from harness.model import Status, Verdict
from tests.conftest import GIT_TIMEOUT_S, commit_all, copy_target, git
from tests.gates.test_coverage_unit import evidence, judge, measured_value

CRITICAL = ["covpass/__init__.py", "covpass/extra.py"]
MODULE = "covpass/__init__.py"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BASE = "0123456789abcdef0123456789abcdef01234567"

SOURCE = '''"""Ledger."""


def fee(amount: int) -> int:
    """The fee."""
    if amount > 100:
        return amount // 100
    return 5


class Ledger:
    """Totals."""

    def total(self, amounts: list[int]) -> int:
        """The sum of the fees."""
        return sum(fee(a) for a in amounts)
'''

# The shape mutmut 3.8.1 writes to mutants/<file> (tests/fixtures/mutmut/ holds a real one): the
# trampoline under the original name, the unmutated copy (__mutmut_orig) and the numbered mutants;
# methods stay in their class.
MUTATED = '''"""Ledger."""
from mutmut.mutation.trampoline import wrap_in_trampoline as _mutmut_mutated, MutantDict
mutants_x_fee__mutmut: MutantDict = {}  # type: ignore


@_mutmut_mutated(mutants_x_fee__mutmut)
def fee(amount: int) -> int:
    """The fee."""
    if amount > 100:
        return amount // 100
    return 5


def x_fee__mutmut_orig(amount: int) -> int:
    """The fee."""
    if amount > 100:
        return amount // 100
    return 5


def x_fee__mutmut_1(amount: int) -> int:
    """The fee."""
    if amount >= 100:
        return amount // 100
    return 5


def x_fee__mutmut_2(amount: int) -> int:
    """The fee."""
    if amount > 100:
        return amount // 100
    return 6

mutants_x_fee__mutmut['_mutmut_orig'] = x_fee__mutmut_orig  # type: ignore
mutants_x_fee__mutmut['x_fee__mutmut_1'] = x_fee__mutmut_1  # type: ignore
mutants_x_fee__mutmut['x_fee__mutmut_2'] = x_fee__mutmut_2  # type: ignore
mutants_xǁLedgerǁtotal__mutmut: MutantDict = {}  # type: ignore


class Ledger:
    """Totals."""

    @_mutmut_mutated(mutants_xǁLedgerǁtotal__mutmut)
    def total(self, amounts: list[int]) -> int:
        """The sum of the fees."""
        return sum(fee(a) for a in amounts)

    def xǁLedgerǁtotal__mutmut_orig(self, amounts: list[int]) -> int:
        """The sum of the fees."""
        return sum(fee(a) for a in amounts)

    def xǁLedgerǁtotal__mutmut_1(self, amounts: list[int]) -> int:
        """The sum of the fees."""
        return sum(fee(None) for a in amounts)

mutants_xǁLedgerǁtotal__mutmut['_mutmut_orig'] = Ledger.xǁLedgerǁtotal__mutmut_orig  # type: ignore
mutants_xǁLedgerǁtotal__mutmut['xǁLedgerǁtotal__mutmut_1'] = Ledger.xǁLedgerǁtotal__mutmut_1  # type: ignore
'''


class _Finished:
    """A finished git run, read like harness.procs.ToolRun."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        """Keep the completed process."""
        self.returncode = proc.returncode
        self._out, self._err = proc.stdout, proc.stderr

    def stdout(self) -> str:
        """What git printed."""
        return self._out

    def stderr(self) -> str:
        """What git complained."""
        return self._err


class GitContext:
    """The part of GateContext the changed-line collection uses: git, run in the target directory."""

    mode = "ci"

    def __init__(self, target_dir: Path) -> None:
        """Run in this target directory."""
        self.target_dir = target_dir

    def progress(self, message: str) -> None:
        """Progress is not looked at here."""
        del message

    def run(self, label: str, argv: list[str], *, timeout_s: float = GIT_TIMEOUT_S, **_: Any) -> _Finished:
        """Run one git command (argv list) in the target directory."""
        del label
        proc = subprocess.run(argv, cwd=self.target_dir, capture_output=True, text=True, timeout=timeout_s, check=False)
        return _Finished(proc)


def collected(target: Path, diff_base: str = "main") -> dict[str, Any]:
    """changed_lines() after G1's own diff step, as collect runs them in ci mode."""
    ctx: Any = GitContext(target)
    written = _Written()
    if diff_base:
        CoverageGate._diff(ctx, diff_base, written.texts.__setitem__)
    return changed_lines(ctx, written, CRITICAL, diff_base)


def test_a_mutants_line_is_read_from_mutmuts_mutated_file() -> None:
    """Each mutant is placed on the original file's line it changes, methods included; an unknown one is None."""
    names = ["covpass.x_fee__mutmut_1", "covpass.x_fee__mutmut_2", "covpass.xǁLedgerǁtotal__mutmut_1", "covpass.x_no"]
    located = locate_mutants(MUTATED, SOURCE, names)
    assert located == {
        "covpass.x_fee__mutmut_1": [6],
        "covpass.x_fee__mutmut_2": [8],
        "covpass.xǁLedgerǁtotal__mutmut_1": [16],
        "covpass.x_no": None,
    }
    assert function_of("xǁLedgerǁtotal__mutmut_1") == ("Ledger", "total")
    assert function_of("x__limits_clause__mutmut_3") == (None, "_limits_clause")


def test_every_mutant_of_a_real_mutmut_file_is_placed_where_mutmut_shows_it() -> None:
    """mutmut 3.8.1's mutants/ copy of cov-pass: each of its 12 mutants on the line its `mutmut show` diff names."""
    mutated = (FIXTURES / "mutmut" / "cov-pass-mutants.py.txt").read_text(encoding="utf-8")
    source = (FIXTURES / "targets" / "cov-pass" / MODULE).read_text(encoding="utf-8")
    names = [f"covpass.x_fee__mutmut_{i}" for i in range(1, 6)] + [f"covpass.x_net__mutmut_{i}" for i in range(1, 8)]
    located = locate_mutants(mutated, source, names)
    assert {name: lines[0] if lines else None for name, lines in located.items()} == {
        **dict(zip(names[:5], [6, 6, 7, 7, 8], strict=True)),
        **dict.fromkeys(names[5:], 13),
    }


def test_a_mutant_whose_function_changed_since_generation_is_not_placed() -> None:
    """When the unmutated copy no longer matches the file's function, the mutant is not located (never guessed)."""
    edited = SOURCE.replace("return 5", "return 7")
    assert locate_mutants(MUTATED, edited, ["covpass.x_fee__mutmut_2"]) == {"covpass.x_fee__mutmut_2": None}
    assert locate_mutants("def (", SOURCE, ["covpass.x_fee__mutmut_2"]) == {"covpass.x_fee__mutmut_2": None}


def test_mutants_on_changed_lines_are_selected_and_capped_reproducibly() -> None:
    """Mutants touching a changed line are picked; past the cap the same seed draws the same subset."""
    located = {"m.a": [6], "m.b": [8], "m.c": [7, 8], "m.d": None}
    files = dict.fromkeys(located, MODULE)
    assert on_changed_lines(located, files, {MODULE: [8]}) == (["m.b", "m.c"], ["m.d"])
    names = [f"m.x_{i}" for i in range(100)]
    subset = capped(names, 60, seed=7)
    assert len(subset) == 60
    assert subset == capped(list(reversed(names)), 60, seed=7)
    assert subset != capped(names, 60, seed=8)
    assert capped(names[:5], 60, seed=7) == names[:5]


def test_changed_lines_cover_commits_since_the_merge_base_uncommitted_edits_and_new_files(tmp_path: Path) -> None:
    """A commit on a branch, an uncommitted edit and an untracked critical file are all changed lines."""
    target = copy_target(tmp_path, "cov-pass")
    git(target, "branch", "-M", "main")
    git(target, "checkout", "-q", "-b", "feature")
    module = target / MODULE
    module.write_text(module.read_text(encoding="utf-8").replace("return 5\n", "return 5 if amount else 0\n"))
    commit_all(target, "fee: nothing on nothing")
    module.write_text(module.read_text(encoding="utf-8").replace("fee(amount), 0)", "fee(amount), 1)"))
    (target / "covpass" / "extra.py").write_text('"""New."""\n\nLIMIT = 3\n', encoding="utf-8")
    record = collected(target)
    assert record["determined"] is True
    assert record["base_ref"] == "main"
    assert record["base_commit"] == git(target, "rev-parse", "main").stdout.strip()
    assert record["lines"] == {MODULE: [8, 13], "covpass/extra.py": [1, 2, 3]}
    assert record["untracked_files"] == ["covpass/extra.py"]
    assert record["includes_uncommitted"] is True


def test_nothing_changed_is_determined_with_no_lines(tmp_path: Path) -> None:
    """On the base itself with a clean tree the changed lines are determined and empty."""
    target = copy_target(tmp_path, "cov-pass")
    git(target, "branch", "-M", "main")
    record = collected(target)
    assert (record["determined"], record["lines"]) == (True, {})


def test_an_unresolvable_base_is_not_determined_with_its_reason(tmp_path: Path) -> None:
    """No such ref, not a git repository, or diff_base empty: not determined, each with its reason."""
    no_ref = copy_target(tmp_path / "a", "cov-pass")
    git(no_ref, "branch", "-M", "trunk")
    missing = collected(no_ref)
    assert missing["determined"] is False
    assert missing["reason"] == "ref 'main' does not exist in the target's git repository"
    plain = copy_target(tmp_path / "b", "cov-pass", init_git=False)
    assert collected(plain)["reason"].startswith("the target is not in a git repository")
    off = collected(no_ref, diff_base="")
    assert (off["determined"], off["reason"]) == (
        False,
        "[gates.G1] diff_base is empty, so there is no base to compare with",
    )


def test_a_shallow_clone_without_the_merge_base_is_not_determined(tmp_path: Path) -> None:
    """A depth-1 clone has both branch tips but not their merge base: not determined, saying so."""
    origin = copy_target(tmp_path, "cov-pass")
    git(origin, "branch", "-M", "main")
    git(origin, "checkout", "-q", "-b", "feature")
    (origin / "feature.txt").write_text("feature\n", encoding="utf-8")
    commit_all(origin, "feature")
    git(origin, "checkout", "-q", "main")
    (origin / "main.txt").write_text("main\n", encoding="utf-8")
    commit_all(origin, "main moves on")
    git(origin, "checkout", "-q", "feature")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", "--no-single-branch", origin.as_uri(), str(clone))
    record = collected(clone, diff_base="origin/main")
    assert record["determined"] is False
    assert record["reason"].startswith("HEAD and 'origin/main' have no merge base")


# ---------------------------------------------------------------- the pure judge on evidence files


def row(name: str, status: str, *, sampled: bool = True, changed: bool = False, line: int = 5) -> dict[str, Any]:
    """One mutation.json row; a survivor carries the diff the reasons quote."""
    out = {"name": name, "file": MODULE, "status": status, "line": line, "sampled": sampled, "changed_line": changed}
    if status == "survived":
        out["diff"] = f"@@ -1,2 +1,2 @@\n def f():\n-    return {line}\n+    return {line + 1}\n"
    return out


def changed_record(**extra: Any) -> dict[str, Any]:
    """mutation.json's changed block: line 8 of the module changed since BASE."""
    base = {"determined": True, "reason": None, "base_ref": "main", "base_commit": BASE, "lines": {MODULE: [8]}}
    return {**base, "cap": 60, "capped": False, "untracked_files": [], "not_located": [], **extra}


def strength_verdict(tmp_path: Path, rows: list[dict[str, Any]], changed: dict[str, Any], **policy: Any) -> Verdict:
    """G1's evaluate on ci evidence whose mutation.json holds `rows` and the `changed` block."""
    record = {"ran": True, "tool": "mutmut==3.8.1", "mode": "ci", "seed": 7, "seed_source": "random"}
    record.update(generated=len(rows), mutants=rows, changed=changed)
    base = {"requested": "main", "computed": False, "reason": "not judged here", "base_commit": None}
    ev = evidence(tmp_path, mode="ci", extra={"mutation.json": record, "diff_base.json": base})
    return judge(ev, test_strength=True, **policy)


def sample_of(killed: int, survived: int = 0) -> list[dict[str, Any]]:
    """A random draw of so many killed and surviving mutants, off the changed lines."""
    return [row(f"k{i}", "killed") for i in range(killed)] + [row(f"s{i}", "survived") for i in range(survived)]


def test_a_surviving_changed_line_mutant_fails_and_is_listed_first(tmp_path: Path) -> None:
    """2 of 3 changed-line mutants killed (66.66 %) FAILs the 70 % bar, the survivor first; the sample alone PASSes."""
    changed_rows = [row(f"c{i}", "killed", sampled=False, changed=True, line=8) for i in range(2)]
    changed_rows.append(row("c2", "survived", sampled=False, changed=True, line=8))
    verdict = strength_verdict(tmp_path, sample_of(38, 2) + changed_rows, changed_record(mutants_on_changed_lines=3))
    assert verdict.status is Status.FAIL
    assert measured_value(verdict, CHANGED_KILL_MEASUREMENT) == 66.66
    assert measured_value(verdict, KILL_RATE_MEASUREMENT) == 83.5  # 38 of 40: the extras stay out of the sample
    (problem,) = [r for r in verdict.reasons if r.startswith("test strength on the lines changed")]
    assert f"since {BASE[:12]} (merge base with main, uncommitted changes included) ({MODULE}: 8)" in problem
    assert "2 of 3 mutants killed (66.66 %): below 70 %" in problem
    assert f"the reviewer's to-do for this change): {MODULE}:8 `return 8` -> `return 9` (changed line)" in problem
    assert verdict.reasons.index(problem) < next(i for i, r in enumerate(verdict.reasons) if "38 of 40" in r)
    details = verdict.details["mutation"]["changed"]
    assert (details["base_commit"], details["tested"], details["counts"]["survived"]) == (BASE, 3, 1)
    assert details["outcomes"]["c2"] == "survived"


def test_changed_line_mutants_all_killed_pass(tmp_path: Path) -> None:
    """Every changed-line mutant killed: the changed-line rate is 100 % and G1.strength PASSes."""
    changed_rows = [row(f"c{i}", "killed", sampled=i == 0, changed=True, line=8) for i in range(4)]
    verdict = strength_verdict(tmp_path, sample_of(38, 2) + changed_rows, changed_record(mutants_on_changed_lines=4))
    assert verdict.status is Status.PASS, verdict.reasons
    assert measured_value(verdict, CHANGED_KILL_MEASUREMENT) == 100.0
    assert any("4 of 4 mutants killed (100.0 %)" in r for r in verdict.reasons)


def test_the_policy_may_ask_for_every_changed_line_mutant_killed(tmp_path: Path) -> None:
    """min_changed_mutation_kill_pct = 100: one survivor in 20 (95 %) is a FAIL."""
    changed_rows = [row(f"c{i}", "killed", sampled=False, changed=True, line=8) for i in range(19)]
    changed_rows.append(row("c19", "survived", sampled=False, changed=True, line=8))
    changed = changed_record(mutants_on_changed_lines=20)
    assert strength_verdict(tmp_path / "a", sample_of(40) + changed_rows, changed).status is Status.PASS
    strict = strength_verdict(tmp_path / "b", sample_of(40) + changed_rows, changed, min_changed_mutation_kill_pct=100)
    assert strict.status is Status.FAIL


def test_untested_changed_line_mutants_leave_it_open(tmp_path: Path) -> None:
    """2 killed, 1 survived and 2 not tested within the budget: 40-80 % straddles 70 %, INCONCLUSIVE."""
    changed_rows = [row(f"c{i}", "killed", sampled=False, changed=True, line=8) for i in range(2)]
    changed_rows.append(row("c2", "survived", sampled=False, changed=True, line=8))
    changed_rows += [row(f"u{i}", "not tested (budget)", sampled=False, changed=True, line=8) for i in range(2)]
    verdict = strength_verdict(tmp_path, sample_of(40) + changed_rows, changed_record(mutants_on_changed_lines=5))
    assert verdict.status is Status.INCONCLUSIVE
    assert any("2 not tested or in error, so between 40.0 and 80.0 %" in r for r in verdict.reasons)


def test_past_the_cap_the_subset_is_judged_by_its_wilson_bound(tmp_path: Path) -> None:
    """60 of 200 changed-line mutants (the cap), 50 killed: Wilson lower bound 71.97 %, PASS, the cap stated."""
    changed_rows = [row(f"c{i}", "killed" if i < 50 else "survived", sampled=False, changed=True) for i in range(60)]
    changed = changed_record(mutants_on_changed_lines=200, capped=True)
    verdict = strength_verdict(tmp_path, sample_of(40) + changed_rows, changed)
    assert verdict.status is Status.PASS, verdict.reasons
    assert measured_value(verdict, CHANGED_KILL_MEASUREMENT) == 71.97
    assert any("60 of 200 mutants (the cap, a seeded subset): 50 of 60 killed" in r for r in verdict.reasons)


def test_changed_lines_not_determined_are_said_never_claimed(tmp_path: Path) -> None:
    """Not determined: a note with the reason and the random sample judged alone; require_diff makes it INCONCLUSIVE."""
    changed = {"determined": False, "reason": "ref 'main' does not exist in the target's git repository"}
    verdict = strength_verdict(tmp_path / "a", sample_of(40), changed)
    assert verdict.status is Status.PASS, verdict.reasons
    assert measured_value(verdict, CHANGED_KILL_MEASUREMENT) == "not determined"
    why = "changed lines: not determined (ref 'main' does not exist in the target's git repository)"
    assert any(r.startswith(why) for r in verdict.reasons)
    strict = strength_verdict(tmp_path / "b", sample_of(40), changed, require_diff=True)
    assert strict.status is Status.INCONCLUSIVE


def test_no_changed_line_in_a_critical_module_says_so(tmp_path: Path) -> None:
    """Determined and empty: "no changed lines in critical modules", nothing judged beyond the sample."""
    verdict = strength_verdict(tmp_path, sample_of(40), changed_record(lines={}))
    assert verdict.status is Status.PASS
    assert measured_value(verdict, CHANGED_KILL_MEASUREMENT) == "no changed line"
    assert any("no changed lines in critical modules since 0123456789ab" in r for r in verdict.reasons)


def test_release_evidence_without_a_changed_block_judges_as_before(tmp_path: Path) -> None:
    """Rows without sampled/changed_line fields (older packs, release mode) are all the sample."""
    rows = [{k: v for k, v in r.items() if k not in ("sampled", "changed_line")} for r in sample_of(38, 2)]
    record = {"ran": True, "tool": "mutmut==3.8.1", "mode": "release", "seed": 7, "seed_source": "random"}
    record.update(generated=40, mutants=rows)
    verdict = judge(evidence(tmp_path, extra={"mutation.json": record}), test_strength=True)
    assert verdict.status is Status.PASS
    assert measured_value(verdict, KILL_RATE_MEASUREMENT) == 83.5
    assert not [m for m in verdict.measurements if m.name == CHANGED_KILL_MEASUREMENT]


def test_mutants_that_could_not_be_placed_are_named(tmp_path: Path) -> None:
    """Mutants of a changed file whose line could not be read are named: the changed-line set may miss them."""
    changed_rows = [row(f"c{i}", "killed", sampled=False, changed=True, line=8) for i in range(3)]
    changed = changed_record(mutants_on_changed_lines=3, not_located=["covpass.x_odd__mutmut_1"])
    verdict = strength_verdict(tmp_path, sample_of(40) + changed_rows, changed)
    assert verdict.status is Status.PASS
    (note,) = [r for r in verdict.reasons if "could not be placed" in r]
    assert note.endswith("so the changed-line set may miss some of them: covpass.x_odd__mutmut_1")
