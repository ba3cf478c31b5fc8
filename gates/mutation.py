"""G1 test strength: mutmut runs the target's own tests against mutants of its critical modules.

mutmut (pinned below) runs in the target's venv on a copy of the target in the gate's scratch
directory, so neither the target's tree nor the harness's interpreter sees a mutant. Its stats run
maps every mutated function to the tests that execute it, and each mutant runs only those tests.
Two runs: the first generates the mutants and that mapping (it is given a name matching no mutant,
so it stops before testing any); the second tests the chosen mutants — in ci mode a seeded random
sample within a time budget, in release mode every mutant. In ci mode the mutants on the lines the
change touched (gates/mutation_changed.py) join the sample: a third run tests those the random draw
left out. The result is mutation.json, which gates/mutation_judge.py judges; this module only
collects.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gates.mutation_changed import capped, locate_mutants, on_changed_lines
from gates.mutation_judge import KILLED, NOT_COVERED, SURVIVED, TIMEOUT
from gates.mutation_review import SEED_FIXED, SEED_FROM_COMMIT, SEED_RANDOM, seed_from_commit
from harness.context import GateContext
from harness.lifecycle import target_env

#: The mutmut release whose files (mutants/*.meta, `mutmut show`) this module reads.
MUTMUT = "mutmut==3.8.1"
MUTMUT_VERSION = MUTMUT.split("==")[1]
#: A mutant name no function can have: the generating run stops after the stats run.
GENERATE_ONLY = "zz-release-harness-generate-only*"
#: mutmut exit codes per mutant (mutmut.stats.status_by_exit_code) folded into the judge's outcomes.
OUTCOME_BY_EXIT_CODE = {1: KILLED, 3: KILLED, 0: SURVIVED, 5: NOT_COVERED, 33: NOT_COVERED}
OUTCOME_BY_EXIT_CODE.update(dict.fromkeys((36, 24, -24, 152, 255), TIMEOUT))
COPY_IGNORED = shutil.ignore_patterns(".git", ".venv*", "venv", "mutants", "__pycache__", ".pytest_cache", "*.pyc")
_HUNK = re.compile(r"^@@ -(\d+)")


def _disarm_no_mutate(work: Path, critical_files: list[str]) -> list[str]:
    """Make mutmut ignore the target's ``# pragma: no mutate`` lines in the copy; their file:line.

    The pragma would drop mutants silently; the harness mutates those lines like any other and
    lists where the target asked it not to.
    """
    found: list[str] = []
    for path in critical_files:
        source = work / path
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
        hits = [n for n, line in enumerate(lines) if "pragma:" in line and "no mutate" in line]
        for n in hits:
            lines[n] = lines[n].replace("no mutate", "mutate (harness: pragma ignored)")
            found.append(f"{path}:{n + 1}")
        if hits:
            source.write_text("".join(lines), encoding="utf-8")
    return found


def _outcome(code: int | None) -> str:
    """The judge's name for a mutmut exit code (None: not tested within the budget)."""
    if code is None:
        return "not tested (budget)"
    return OUTCOME_BY_EXIT_CODE.get(code, f"error (mutmut exit code {code})")


def _configures_mutmut(pyproject: Path) -> bool:
    """Whether the target's pyproject.toml has a [tool.mutmut] table (mutmut reads it before setup.cfg)."""
    if not pyproject.is_file():
        return False
    try:
        return "mutmut" in tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
    except tomllib.TOMLDecodeError:
        return False


def _setup_cfg(packages: list[str], critical: list[str], test_paths: list[str]) -> str:
    """mutmut's [mutmut] section: mutate only the critical files, pytest without the target's xdist options."""
    lines = ["[mutmut]", "source_paths =", *(f"    {p}" for p in packages), "only_mutate ="]
    lines += [f"    {p}" for p in critical]
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -p", "    no:xdist"]
    if test_paths:
        lines += ["pytest_add_cli_args_test_selection =", *(f"    {p}" for p in test_paths)]
    return "\n".join(lines) + "\n"


def _ensure_mutmut(ctx: GateContext, python: Path, env: dict[str, str]) -> str | None:
    """Install the pinned mutmut into the target's venv when missing; the reason when that failed."""
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('mutmut'))"]
    run = ctx.run("mutmut-version", probe, env=env, timeout_s=60)
    if run.returncode == 0 and run.stdout().strip() == MUTMUT_VERSION:
        ctx.record_tool("mutmut", MUTMUT_VERSION)
        return None
    ctx.progress(f"installing {MUTMUT} into the target's venv")
    pip = ctx.run("pip-install-mutmut", [str(python), "-m", "pip", "install", "-q", MUTMUT], env=env, timeout_s=600)
    if pip.returncode != 0:
        return f"{MUTMUT} could not be installed into the target's venv: {(pip.stdout() + pip.stderr())[-300:]}"
    ctx.record_tool("mutmut", MUTMUT_VERSION)
    return None


def _generated(work: Path, critical_files: list[str]) -> dict[str, dict[str, Any]]:
    """Every mutant name mutmut generated for the critical files, with its file and last exit code."""
    found: dict[str, dict[str, Any]] = {}
    for path in critical_files:
        meta = work / "mutants" / f"{path}.meta"
        if meta.is_file():
            for name, code in json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"].items():
                found[name] = {"file": path, "code": code}
    return found


def _line_of(source: str, diff: str) -> int | None:
    """The file line of a mutant's first changed line: mutmut's diff is relative to the function.

    The diff's original side (context and removed lines) is searched for in the file as a block of
    consecutive lines, compared stripped; None when it is not found exactly once.
    """
    lines = diff.splitlines()
    hunk = next((i for i, line in enumerate(lines) if _HUNK.match(line)), None)
    if hunk is None:
        return None
    original = [line[1:] for line in lines[hunk + 1 :] if line[:1] in (" ", "-")]
    first_removed = next(
        (n for n, line in enumerate(x for x in lines[hunk + 1 :] if x[:1] in (" ", "-")) if line.startswith("-")), None
    )
    if first_removed is None or not original:
        return None
    file_lines = [line.strip() for line in source.splitlines()]
    wanted = [line.strip() for line in original]
    starts = [i for i in range(len(file_lines) - len(wanted) + 1) if file_lines[i : i + len(wanted)] == wanted]
    return starts[0] + 1 + first_removed if len(starts) == 1 else None


def _sample_seed(ctx: GateContext, settings: dict[str, Any]) -> dict[str, Any]:
    """The ci sample's seed and where it came from: the target's commit unless the policy allows a fixed one."""
    configured = settings["seed"]
    if configured is not None and settings["allow_fixed_seed"]:
        return {"seed": configured, "seed_source": SEED_FIXED, "configured_seed": configured}
    head = ctx.run("git-head", ["git", "rev-parse", "--verify", "HEAD^{commit}"], timeout_s=30)
    commit = head.stdout().strip() if head.returncode == 0 else ""
    if commit:
        seed = {"seed": seed_from_commit(commit), "seed_source": SEED_FROM_COMMIT, "seed_commit": commit}
    else:
        seed = {"seed": secrets.randbelow(2**31), "seed_source": SEED_RANDOM}
    return {**seed, "configured_seed": configured}


def _excluded_rows(
    ctx: GateContext, mutmut: str, work: Path, names: list[str], *, results: dict[str, Any], env: dict[str, str]
) -> list[dict[str, Any]]:
    """The declared equivalent mutants as tested this run: status, and diff and line where generated."""
    rows = []
    for name in names:
        if name not in results:
            rows.append({"name": name, "file": None, "status": "not generated", "line": None})
            continue
        row = {"name": name, "file": results[name]["file"], "status": _outcome(results[name]["code"])}
        row["diff"] = ctx.run("mutmut-show", [mutmut, "show", name], cwd=work, env=env, timeout_s=60).stdout()
        row["line"] = _line_of((work / row["file"]).read_text(encoding="utf-8"), row["diff"])
        rows.append(row)
    return rows


def _changed_mutants(
    work: Path,
    universe: dict[str, dict[str, Any]],
    excluded: list[str],
    changed: dict[str, Any] | None,
    seed: int,
) -> tuple[list[str], dict[str, list[int] | None]]:
    """The changed-line mutants to test (at most the cap) and the located lines; fills the changed record."""
    if not changed or not changed.get("determined") or not changed.get("lines"):
        return [], {}
    located: dict[str, list[int] | None] = {}
    for path in changed["lines"]:
        mutated = work / "mutants" / path
        in_file = [name for name, entry in universe.items() if entry["file"] == path]
        if in_file and mutated.is_file():
            source = (work / path).read_text(encoding="utf-8")
            located.update(locate_mutants(mutated.read_text(encoding="utf-8"), source, in_file))
        else:
            located.update(dict.fromkeys(in_file))
    hits, not_located = on_changed_lines(located, {n: universe[n]["file"] for n in located}, changed["lines"])
    declared = set(excluded)
    eligible = [name for name in hits if name not in declared]
    tested = capped(eligible, changed["cap"], seed)
    changed.update(
        mutants_on_changed_lines=len(eligible),
        capped=len(eligible) > changed["cap"],
        tested=tested,
        declared_equivalent=[name for name in hits if name in declared],
        not_located=not_located,
        mutant_lines={name: located[name] for name in hits},
    )
    return tested, located


@dataclass(frozen=True)
class _TestedMutants:
    """What the runs tested: every generated mutant, mutmut's results, the random sample and the changed-line set."""

    universe: dict[str, dict[str, Any]]
    results: dict[str, dict[str, Any]]
    sampled: set[str]
    changed: set[str]


def _mutant_rows(
    ctx: GateContext,
    mutmut: str,
    work: Path,
    tested: _TestedMutants,
    *,
    located: dict[str, list[int] | None],
    env: dict[str, str],
) -> list[dict[str, Any]]:
    """mutation.json's rows: outcome, whether drawn and whether on a changed line; diff and line where needed."""
    rows = []
    for name in sorted(tested.sampled | tested.changed):
        file = tested.universe[name]["file"]
        row = {"name": name, "file": file, "status": _outcome(tested.results[name]["code"]), "line": None}
        row.update(sampled=name in tested.sampled, changed_line=name in tested.changed)
        if row["status"] in (SURVIVED, TIMEOUT):
            row["diff"] = ctx.run("mutmut-show", [mutmut, "show", name], cwd=work, env=env, timeout_s=60).stdout()
            row["line"] = _line_of((work / file).read_text(encoding="utf-8"), row["diff"])
        where = located.get(name)
        if row["line"] is None and where:
            row["line"] = where[0]
        rows.append(row)
    return rows


def _run_changed(
    ctx: GateContext, mutmut: str, names: list[str], work: Path, *, env: dict[str, str], budget_s: float
) -> dict[str, Any]:
    """Test the changed-line mutants the random draw left out; how that run went."""
    ctx.progress(f"test strength: {len(names)} more mutants on the changed lines")
    argv = [mutmut, "run", "--max-children", "2", *names]
    more = ctx.run("mutmut-run-changed", argv, cwd=work, env=env, timeout_s=budget_s)
    run: dict[str, Any] = {"mutants": len(names), "returncode": more.returncode, "timed_out": more.timed_out}
    run["duration_s"] = round(more.duration_s, 1)
    if more.returncode != 0 and not more.timed_out:
        run["output_tail"] = (more.stdout() + more.stderr())[-400:]
    return run


def measure_strength(
    ctx: GateContext, python: Path, critical_files: list[str], settings: dict[str, Any]
) -> dict[str, Any]:
    """Run mutmut on the critical files and return mutation.json's content (ran false with a reason)."""
    seed_record = _sample_seed(ctx, settings)
    seed = seed_record["seed"]
    record: dict[str, Any] = {"tool": MUTMUT, "mode": ctx.mode, **seed_record, "ran": False, "mutants": []}
    record.update(critical_files=critical_files, sample_size=settings["sample"], budget_s=settings["budget_s"])
    if ctx.mode == "ci" and settings.get("changed") is not None:
        record["changed"] = {**settings["changed"], "cap": settings["changed_cap"]}
    if not critical_files:
        record["reason"] = "no critical module file to mutate"
        return record
    work = ctx.scratch / "mutation" / "target"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(ctx.target_dir, work, ignore=COPY_IGNORED, symlinks=True)
    if _configures_mutmut(work / "pyproject.toml"):
        record["reason"] = (
            "the target's pyproject.toml configures [tool.mutmut], which would replace the harness's settings"
        )
        return record
    record["no_mutate_pragmas"] = _disarm_no_mutate(work, critical_files)
    packages = [p.replace(".", "/") for p in ctx.config.target.packages]
    (work / "setup.cfg").write_text(_setup_cfg(packages, critical_files, settings["test_paths"]), encoding="utf-8")
    env = target_env({"PYTHONDONTWRITEBYTECODE": "1"}, venv=python.parent.parent)
    missing = _ensure_mutmut(ctx, python, env)
    if missing:
        record["reason"] = missing
        return record
    mutmut = str(python.parent / "mutmut")
    ctx.progress("test strength: generating mutants of the critical modules and mapping tests to them")
    gen = ctx.run(
        "mutmut-generate",
        [mutmut, "run", "--max-children", "2", GENERATE_ONLY],
        cwd=work,
        env=env,
        timeout_s=settings["budget_s"],
    )
    universe = _generated(work, critical_files)
    record["generated"] = len(universe)
    if not universe:
        record["reason"] = f"mutmut generated no mutant (exit {gen.returncode}): {(gen.stdout() + gen.stderr())[-400:]}"
        return record
    excluded = list(dict.fromkeys(settings["excluded"]))
    names = sorted(set(universe) - set(excluded))
    chosen = (
        names
        if ctx.mode == "release"
        else sorted(
            random.Random(seed).sample(  # noqa: S311 - a reproducible sample, not a secret
                names, min(settings["sample"], len(names))
            )
        )
    )
    changed, located = _changed_mutants(work, universe, excluded, record.get("changed"), seed)
    also = [name for name in excluded if name in universe]
    ctx.progress(
        f"test strength: {len(chosen)} of {len(names)} mutants (seed {seed}) and {len(also)} declared equivalent"
    )
    run = ctx.run(
        "mutmut-run",
        [mutmut, "run", "--max-children", "2", *chosen, *also],
        cwd=work,
        env=env,
        timeout_s=settings["budget_s"],
    )
    record.update(run_returncode=run.returncode, run_timed_out=run.timed_out, run_duration_s=round(run.duration_s, 1))
    if run.returncode != 0 and not run.timed_out and "Failed to run clean test" in run.stdout():
        record["reason"] = f"mutmut could not run the target's tests unmutated: {(run.stdout() + run.stderr())[-400:]}"
        return record
    extra = [name for name in changed if name not in set(chosen)]
    if extra:
        record["changed"]["run"] = _run_changed(ctx, mutmut, extra, work, env=env, budget_s=settings["budget_s"])
    results = _generated(work, critical_files)
    tested = _TestedMutants(universe=universe, results=results, sampled=set(chosen), changed=set(changed))
    record["mutants"] = _mutant_rows(ctx, mutmut, work, tested, located=located, env=env)
    record["excluded"] = _excluded_rows(ctx, mutmut, work, excluded, results=results, env=env)
    record["ran"] = True
    return record
