"""S1 with mypy: the target's packages type-checked with the target's own mypy configuration.

mypy runs from the harness's environment (`python -m mypy`, a static checker that never imports
the code it reads) with the target directory as working directory and
`--python-executable <target venv python>`, so the target's installed dependencies and stubs
resolve. Its configuration is the target's own (mypy.ini, .mypy.ini, pyproject.toml [tool.mypy],
setup.cfg [mypy]); a target with none is checked with DEFAULT_CONFIG (mypy's defaults plus
check_untyped_defs, so unannotated functions are checked too). Each error is a low finding; more
errors than the policy's `mypy_max_errors` is one high finding. `--linecount-report` proves that
real files were analysed: none is INCONCLUSIVE. A target configuration that sets `ignore_errors`
(globally or for some modules) hides mypy's errors, so the check is INCONCLUSIVE, never PASS.
"""

from __future__ import annotations

import configparser
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from gates.security.policy import EvidenceReader, Finding, ScanResult, SecurityPolicy, Severity
from gates.security.sast import scan_targets
from gates.security.store import EvidenceStore, run_problem
from harness.model import Measurement, Status

NAME = "type check (mypy)"
REPORT = "mypy/mypy.json"
RUN = "mypy/run.json"
INPUTS = "mypy/inputs.json"
NOT_RUN = "mypy/not-run.json"
#: The configuration a target without its own is checked with (the README's G5 section states it).
DEFAULT_CONFIG = "[mypy]\ncheck_untyped_defs = True\n"


def target_config(target_dir: Path) -> str | None:
    """The name of the target's own mypy configuration file, in mypy's search order, or None."""
    for name in ("mypy.ini", ".mypy.ini"):
        if (target_dir / name).is_file():
            return name
    try:
        pyproject = tomllib.loads((target_dir / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        pyproject = {}
    if isinstance(pyproject.get("tool"), dict) and "mypy" in pyproject["tool"]:
        return "pyproject.toml"
    try:
        setup_cfg = (target_dir / "setup.cfg").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return "setup.cfg" if "[mypy]" in setup_cfg else None


def silenced(target_dir: Path, config: str | None) -> list[str]:
    """Modules (or `*` for all) the target's own mypy configuration hides every error of (`ignore_errors`)."""
    if config is None:
        return []
    path = target_dir / config
    if config == "pyproject.toml":
        try:
            mypy = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("mypy", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return []
        found = ["*"] if mypy.get("ignore_errors") is True else []
        for override in mypy.get("overrides", []) if isinstance(mypy.get("overrides"), list) else []:
            if isinstance(override, dict) and override.get("ignore_errors") is True:
                modules = override.get("module", [])
                found += [modules] if isinstance(modules, str) else [str(m) for m in modules]
        return found
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error):
        return []
    found = []
    for section in parser.sections():
        value = parser.get(section, "ignore_errors", fallback="").strip().lower()
        if (section == "mypy" or section.startswith("mypy-")) and value in ("true", "1", "yes", "on"):
            found.append("*" if section == "mypy" else section.removeprefix("mypy-"))
    return found


def _lines_analysed(report_dir: Path) -> tuple[int, int]:
    """(modules, lines) from mypy's linecount.txt; (0, 0) when it is missing."""
    try:
        rows = [line.split() for line in (report_dir / "linecount.txt").read_text(encoding="utf-8").splitlines()]
    except OSError:
        return 0, 0
    total = next((r for r in rows if r[-1:] == ["total"]), None)
    modules = sum(1 for r in rows if r and r[-1] != "total")
    return modules, int(total[0]) if total else 0


def collect(store: EvidenceStore, policy: SecurityPolicy) -> None:
    """Run mypy over the configured packages against the target's venv; keep its JSON errors and line count."""
    ctx = store.ctx
    targets = scan_targets(ctx.target_dir, ctx.config.target.source_root, ctx.config.target.packages)
    own = target_config(ctx.target_dir)
    argv = [sys.executable, "-m", "mypy", "--output", "json", "--no-error-summary", "--no-incremental"]
    if own is None:
        default = ctx.scratch / "mypy-default.ini"
        default.write_text(DEFAULT_CONFIG, encoding="utf-8")
        argv += ["--config-file", str(default)]
    report_dir = ctx.scratch / "mypy-linecount"
    python = ctx.target_python()
    argv += ["--python-executable", str(python), "--linecount-report", str(report_dir), *targets]
    run = ctx.run("mypy", argv, cwd=ctx.target_dir, timeout_s=policy.tool_timeout_s)
    store.record_run(RUN, run)
    modules, lines = _lines_analysed(report_dir)
    config = own or "the harness default (check_untyped_defs)"
    store.write_json(
        INPUTS,
        {
            "targets": targets,
            "config": config,
            "modules": modules,
            "lines": lines,
            "ignore_errors": silenced(ctx.target_dir, own),
        },
    )
    errors = []
    for line in run.stdout().splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            errors.append({k: item.get(k) for k in ("file", "line", "code", "severity", "message")})
    store.write_json(REPORT, errors)


def _finding(item: dict[str, Any]) -> Finding:
    """One mypy error as a low finding."""
    code, path, line = str(item.get("code") or "error"), str(item.get("file")), int(item.get("line") or 0)
    return Finding(
        scanner="mypy",
        rule=code,
        id=f"mypy:{code}:{path}:{line}",
        keys=(f"mypy:{code}:{path}", f"mypy:{code}"),
        severity=Severity.LOW,
        title=f"{path}:{line}: {item.get('message', '')} (mypy [{code}])",
        location=path,
        line=line,
        help_uri="https://mypy.readthedocs.io/en/stable/error_code_list.html",
    )


def assess(reader: EvidenceReader, policy: SecurityPolicy) -> ScanResult:
    """INCONCLUSIVE unless mypy analysed >0 lines and ended normally; errors over mypy_max_errors are high."""
    if reader.exists(NOT_RUN):
        return ScanResult(NAME, Status.NOT_RUN, "not run", reasons=(reader.read_json(NOT_RUN)["reason"],))
    if not reader.exists(INPUTS):
        return ScanResult(NAME, Status.INCONCLUSIVE, "not run", reasons=("mypy did not run",))
    inputs = reader.read_json(INPUTS)
    targets = ", ".join(inputs["targets"])
    problem = run_problem(reader.read_json(RUN), "mypy", ok_codes=(0, 1))
    if inputs["lines"] <= 0:
        reason = f"mypy analysed 0 lines in {targets} (empty or fully excluded): nothing was analysed"
        return ScanResult(NAME, Status.INCONCLUSIVE, "nothing analysed", reasons=(reason,))
    if problem:
        return ScanResult(NAME, Status.INCONCLUSIVE, "did not finish", reasons=(problem,))
    if inputs.get("ignore_errors"):
        reason = (
            f"the target's mypy configuration ({inputs['config']}) sets ignore_errors for "
            f"{', '.join(inputs['ignore_errors'])}: mypy's errors there are hidden, so its error count is no evidence"
        )
        return ScanResult(NAME, Status.INCONCLUSIVE, "errors silenced by the target", reasons=(reason,))
    errors = [e for e in reader.read_json(REPORT) if e.get("severity") == "error"]
    findings = [_finding(e) for e in errors]
    limit = policy.mypy_max_errors
    if len(errors) > limit:
        findings.append(
            Finding(
                scanner="mypy",
                rule="error-count",
                id="mypy:error-count",
                severity=Severity.HIGH,
                title=f"mypy reports {len(errors)} error(s) in {targets}, more than mypy_max_errors = {limit}",
            )
        )
    measurements = (
        Measurement.judged("lines type-checked by mypy", inputs["lines"], ">", 0, "lines"),
        Measurement.judged("mypy errors", len(errors), "<=", limit),
    )
    summary = (
        f"checked {inputs['lines']} lines in {inputs['modules']} module(s) of {targets} "
        f"with {inputs['config']}; {len(errors)} error(s) (limit {limit})"
    )
    facts = {"config": inputs["config"], "lines": inputs["lines"], "errors": len(errors)}
    return ScanResult(NAME, Status.PASS, summary, (), tuple(findings), measurements, facts)
