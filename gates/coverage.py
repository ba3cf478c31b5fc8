"""Gate G1: the target's own tests under pytest-cov — they pass, and coverage meets its thresholds.

Requirement G1 asks for at least 90 % on critical paths and 75 % overall. `collect` runs the
target's [tests] command in its venv with branch coverage and keeps coverage.json, coverage.xml,
the JUnit XML and (in ci mode) the raw `git diff -U0` against the merge base; `evaluate` reads
only those files. Reads top to bottom: policy, pure judging, then collection and the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import jinja2

from gates.assert_scan import scan as scan_asserts
from gates.coverage_judge import (
    ASSERT_SCAN,
    CONTEXT,
    COVERAGE_JSON,
    COVERAGE_XML,
    DIFF,
    DIFF_BASE,
    JUNIT,
    REPORT,
    TAIL_CHARS,
    TEST_RUN,
    CoveragePolicy,
    FileCoverage,
    branch_text,
    judge,
    load_files,
    parse_diff,
    parse_junit,
    pct_floor,
)
from gates.mutation import measure_strength
from gates.mutation_changed import changed_lines
from gates.mutation_judge import MUTATION, line_ranges
from harness.checks import CheckSpec
from harness.context import GateContext
from harness.errors import ToolMissingError
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.lifecycle import fill, target_env
from harness.model import Verdict
from harness.procs import ToolRun

TOOL_PROBE = (
    "import importlib.metadata as m, json\n"
    "def v(n):\n"
    "    try:\n        return m.version(n)\n"
    "    except m.PackageNotFoundError:\n        return None\n"
    "print(json.dumps({n: v(n) for n in ('pytest', 'pytest-cov', 'coverage')}))\n"
)

__all__ = [
    "CoverageGate",
    "CoveragePolicy",
    "line_ranges",
    "parse_diff",
    "parse_junit",
    "pct_floor",
    "resolve_patterns",
]


# ---------------------------------------------------------------- collection


def resolve_patterns(target_dir: Path, patterns: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The Python files (relative to the target) each path, directory or glob names."""
    resolved: dict[str, dict[str, Any]] = {}
    root = target_dir.resolve()
    for pattern in patterns:
        error, matches = None, set()
        try:
            for hit in root.glob(pattern.rstrip("/")):
                hits = hit.rglob("*.py") if hit.is_dir() else [hit]
                matches |= {p.resolve() for p in hits if p.suffix == ".py" and p.is_file()}
        except (ValueError, NotImplementedError) as exc:
            error = f"not a relative path or glob: {exc}"
        inside = sorted(p.relative_to(root).as_posix() for p in matches if p.is_relative_to(root))
        resolved[pattern] = {"files": inside, "error": error}
    return resolved


def _tail(run: ToolRun) -> str:
    """The end of a run's combined output, for reasons."""
    return (run.stdout() + run.stderr()).strip()[-TAIL_CHARS:]


class _Written:
    """The evidence collect has just written, readable like `Evidence` (for rendering the report)."""

    def __init__(self) -> None:
        """Start empty."""
        self.texts: dict[str, str] = {}

    def exists(self, name: str) -> bool:
        """Whether collect wrote the file."""
        return name in self.texts

    def read_text(self, name: str) -> str:
        """A written file's text."""
        return self.texts[name]

    def read_json(self, name: str) -> Any:
        """A written JSON file's content."""
        return json.loads(self.texts[name])


#: What this gate evidences (the traceability matrix). Changed-line coverage (ci mode only, and only
#: where a diff base exists) is no check of its own: the catalogue's G1 figure is overall and critical.
CHECKS = (
    CheckSpec(
        id="G1.overall",
        title="the target's tests pass; overall line and branch coverage",
        requirements=("G1",),
        measurements=("tests run*", "failing or erroring tests", "overall * coverage"),
        evidence=("gates/G1/coverage.json", "gates/G1/pytest-junit.xml", "coverage_report.html"),
    ),
    CheckSpec(
        id="G1.asserting",
        title="the target's test functions assert something (coverage from tests that check nothing is no evidence)",
        requirements=("G1",),
        measurements=("share of test functions asserting nothing",),
        evidence=("gates/G1/test_asserts.json",),
    ),
    CheckSpec(
        id="G1.strength",
        title="mutants of the critical modules are killed by the target's tests (mutmut; ci: a seeded sample, "
        "and the mutants on the changed lines)",
        requirements=("G1",),
        measurements=(
            "mutation kill rate, Wilson 95 % lower bound (critical modules)",
            "mutation kill rate on the changed lines (critical modules)",
        ),
        evidence=("gates/G1/mutation.json",),
    ),
    CheckSpec(
        id="G1.critical",
        title="line and branch coverage of every critical-path module",
        requirements=("G1",),
        measurements=("* coverage of * (critical)",),
        evidence=("gates/G1/coverage.json",),
    ),
)


class CoverageGate(Gate):
    """Runs the target's tests under pytest-cov and judges results, overall, critical and diff coverage."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="G1", title="Test coverage", requirements=("G1",), timeout_s=3600, documents=(REPORT,), checks=CHECKS
    )
    policy_model: ClassVar[type[Policy]] = CoveragePolicy

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """The target's test suite once, plus installing pytest-cov when missing."""
        del policy, mode
        return 120.0

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Run the tests with coverage, resolve the critical globs, take the diff (ci), render the report."""
        assert isinstance(policy, CoveragePolicy)  # noqa: S101 - the registry pairs gate and policy
        written = _Written()

        def keep(name: str, text: str) -> None:
            written.texts[name] = text
            ctx.write_text(name, text)

        python = ctx.target_python()
        tools = self._ensure_pytest_cov(ctx, python)
        argv, sources = self._test_argv(ctx)
        critical = list(ctx.config.target.critical_modules)
        keep(
            CONTEXT,
            _dump(
                {
                    "mode": ctx.mode,
                    "target_dir": str(ctx.target_dir.resolve()),
                    "critical_modules": critical,
                    "patterns": resolve_patterns(ctx.target_dir, [*critical, *policy.module_min_pct]),
                    "cov_sources": sources,
                    "tools": tools,
                    "test_argv": argv,
                }
            ),
        )
        keep(ASSERT_SCAN, _dump(scan_asserts(ctx.target_dir)))
        ctx.progress("running the test suite under pytest-cov")
        env = target_env(
            {"COVERAGE_FILE": str(ctx.scratch / ".coverage"), "PYTHONDONTWRITEBYTECODE": "1"}, venv=python.parent.parent
        )
        timeout_s = ctx.config.tests.timeout_s
        with ctx.test_dependencies() as values:  # [tests] dependencies, e.g. a throwaway PostgreSQL
            env.update({key: fill(value, values) for key, value in ctx.config.tests.env.items()})
            run = ctx.run("tests", argv, env=env, timeout_s=timeout_s)
        keep(
            TEST_RUN,
            _dump(
                {
                    "argv": argv,
                    "returncode": run.returncode,
                    "timed_out": run.timed_out,
                    "timeout_s": timeout_s,
                    "duration_s": round(run.duration_s, 3),
                    "output_tail": _tail(run),
                }
            ),
        )
        for name in (JUNIT, COVERAGE_JSON, COVERAGE_XML):
            if (ctx.scratch / name).is_file():
                keep(name, (ctx.scratch / name).read_text(encoding="utf-8", errors="replace"))
        if ctx.mode == "ci" and policy.diff_base:
            self._diff(ctx, policy.diff_base, keep)
        if policy.test_strength and run.returncode == 0 and not run.timed_out:
            critical_files, settings = _critical_files(written), _mutation_settings(ctx, policy)
            if ctx.mode == "ci":  # the changed lines' mutants join the sample (gates/mutation_changed.py)
                settings["changed"] = changed_lines(ctx, written, critical_files, policy.diff_base)
            keep(MUTATION, _dump(measure_strength(ctx, python, critical_files, settings)))
        verdict = judge(written, policy)
        ctx.write_document(REPORT, render_report(verdict, written, ctx.config.target.name).encode("utf-8"))

    @staticmethod
    def _ensure_pytest_cov(ctx: GateContext, python: Path) -> dict[str, str | None]:
        """Versions of pytest, pytest-cov and coverage in the venv, installing pytest-cov when missing."""
        env = target_env(venv=python.parent.parent)
        probe = ctx.run("probe-tools", [str(python), "-c", TOOL_PROBE], env=env, timeout_s=60)
        versions: dict[str, str | None] = json.loads(probe.stdout()) if probe.returncode == 0 else {}
        if not versions.get("pytest-cov") or not versions.get("pytest"):
            ctx.progress("installing pytest-cov into the target's venv")
            pip = ctx.run("pip-install-pytest-cov", [str(python), "-m", "pip", "install", "pytest-cov"], env=env)
            if pip.returncode != 0:
                msg = f"pytest-cov is not in the target's venv and could not be installed: {_tail(pip)[-400:]}"
                raise ToolMissingError(msg, hint="add pytest-cov (and pytest) to the target's [install] command")
            probe = ctx.run("probe-tools-again", [str(python), "-c", TOOL_PROBE], env=env, timeout_s=60)
            versions = json.loads(probe.stdout()) if probe.returncode == 0 else {}
        for name, version in versions.items():
            if version:
                ctx.record_tool(name, version)
        return versions

    @staticmethod
    def _test_argv(ctx: GateContext) -> tuple[list[str], list[str]]:
        """The [tests] command with the coverage, report and JUnit options appended."""
        argv = ctx.command(ctx.config.tests.command)
        if not any(Path(part).name in ("pytest", "py.test") for part in argv):
            msg = f"the [tests] command {ctx.config.tests.command} does not run pytest; G1 measures through pytest-cov"
            raise ToolMissingError(msg, hint='set [tests] command = ["{python}", "-m", "pytest"]')
        root = ctx.target_dir / ctx.config.target.source_root
        sources = []
        for package in ctx.config.target.packages:
            folder = root / package.replace(".", "/")
            sources.append(str(folder) if folder.is_dir() else package)
        out = ctx.scratch
        extra = [f"--cov={source}" for source in sources] or ["--cov"]
        extra += [
            "--cov-branch",
            "--cov-fail-under=0",
            "--cov-report=term-missing",
            f"--cov-report=json:{out / COVERAGE_JSON}",
            f"--cov-report=xml:{out / COVERAGE_XML}",
            f"--junitxml={out / JUNIT}",
        ]
        if "no:cacheprovider" not in argv:
            # Keep pytest's cache out of the target's tree (an unknown ini option when the plugin is off).
            extra += ["-o", f"cache_dir={out / 'pytest-cache'}"]
        return argv + extra, sources

    @staticmethod
    def _diff(ctx: GateContext, ref: str, keep: Any) -> None:
        """Find the merge base with `ref` and keep `git diff -U0 BASE` of the target directory."""
        record: dict[str, Any] = {"requested": ref, "computed": False, "reason": None, "base_commit": None}
        ctx.progress(f"diff coverage: changes since the merge base with {ref}")
        commit = _merge_base(ctx, ref, record)
        if commit is not None:
            argv = ["git", "-c", "core.quotePath=false", "diff", "-U0", "--no-color", "--no-ext-diff", "-M"]
            argv += ["--relative", "--src-prefix=a/", "--dst-prefix=b/", commit]
            diff = ctx.run("git-diff", argv, timeout_s=120)
            if diff.returncode != 0:
                record["reason"] = f"git diff against {commit[:12]} failed: {_tail(diff)[-300:]}"
            else:
                keep(DIFF, diff.stdout())
                record.update(computed=True, base_commit=commit)
        keep(DIFF_BASE, _dump(record))

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """Tests pass, overall, critical and (ci) changed-line coverage meet their thresholds."""
        assert isinstance(policy, CoveragePolicy)  # noqa: S101 - the registry pairs gate and policy
        return judge(evidence, policy)


def _critical_files(written: _Written) -> list[str]:
    """The files the critical_modules patterns resolved to (context.json), in order, once each."""
    context = written.read_json(CONTEXT)
    files: list[str] = []
    for pattern in context["critical_modules"]:
        files += [f for f in context["patterns"][pattern]["files"] if f not in files]
    return files


def _mutation_settings(ctx: GateContext, policy: CoveragePolicy) -> dict[str, Any]:
    """Sample size, seed, budget, test paths and changed-line cap of the test-strength run for this mode."""
    budget_s = policy.mutation_budget_s if ctx.mode == "ci" else policy.mutation_release_budget_s
    return {
        "sample": policy.mutation_sample,
        "seed": policy.mutation_seed,
        "allow_fixed_seed": policy.allow_fixed_mutation_seed,
        "excluded": [entry.mutant for entry in policy.equivalent_mutants],
        "budget_s": budget_s,
        "test_paths": policy.mutation_test_paths,
        "changed_cap": policy.mutation_changed_cap,
    }


def _merge_base(ctx: GateContext, ref: str, record: dict[str, Any]) -> str | None:
    """The merge base of HEAD and `ref`, or None with the reason written into `record`."""
    inside = ctx.run("git-toplevel", ["git", "rev-parse", "--show-toplevel"], timeout_s=30)
    if inside.returncode != 0:
        record["reason"] = f"the target is not in a git repository: {_tail(inside)[-300:]}"
        return None
    exists = ctx.run("git-ref", ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], timeout_s=30)
    if exists.returncode != 0:
        record["reason"] = f"ref {ref!r} does not exist in the target's git repository"
        return None
    base = ctx.run("git-merge-base", ["git", "merge-base", "HEAD", ref], timeout_s=30)
    if base.returncode != 0:
        record["reason"] = f"HEAD and {ref!r} have no merge base: {_tail(base)[-300:] or 'unrelated histories'}"
        return None
    return base.stdout().strip()


def _dump(data: Any) -> str:
    """Stable JSON text, as the pack writes it."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def render_report(verdict: Verdict, written: _Written, target_name: str) -> str:
    """coverage_report.html: verdict, thresholds, critical files, diff and every measured file."""
    context = written.read_json(CONTEXT)
    files: list[FileCoverage] = []
    meta: dict[str, Any] = {}
    if written.exists(COVERAGE_JSON):
        data = written.read_json(COVERAGE_JSON)
        meta = data.get("meta", {})
        files = sorted(
            load_files(data, context["target_dir"]).values(), key=lambda f: (f.line_pct, f.branch_pct, f.path)
        )
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("release", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("coverage_report.html.j2").render(
        target=target_name,
        verdict=verdict,
        context=context,
        files=files,
        meta=meta,
        run=written.read_json(TEST_RUN),
        line_ranges=line_ranges,
        branch_text=branch_text,
    )
