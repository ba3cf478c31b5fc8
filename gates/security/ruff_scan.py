"""S1 with ruff: its security rules (`S`, the flake8-bandit port) on top of the target's own ruff configuration.

ruff runs from the harness's environment (`python -m ruff`, a static binary that never imports
the code it reads) with the target directory as working directory, so the target's pyproject.toml
/ ruff.toml (excludes, per-file ignores, target version) apply, and `--extend-select S` adds the
security rules to whatever it selects (a CLI selection wins over the target's `ignore`, so an `S`
rule the target ignores is still reported). Only `S` results become G5 findings; ruff rates
nothing itself, so an `Snnn` result takes the severity bandit gave its check `Bnnn` at the same
line in this run, else medium. The target's other rules are counted only.
A first `--show-files` run lists the files ruff really checks: none is INCONCLUSIVE.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gates.security.policy import EvidenceReader, Finding, ScanResult, SecurityPolicy, Severity, severity_of
from gates.security.sast import REPORT as BANDIT_REPORT
from gates.security.sast import scan_targets
from gates.security.store import EvidenceStore, run_problem
from harness.model import Measurement, Status

NAME = "SAST (ruff)"
FILES = "ruff/files.json"
REPORT = "ruff/ruff.json"
RUN = "ruff/run.json"
NOT_RUN = "ruff/not-run.json"
SECURITY_PREFIX = "S"


def _argv(targets: list[str], policy: SecurityPolicy) -> list[str]:
    """The ruff check command shared by the file listing and the check."""
    argv = [sys.executable, "-m", "ruff", "check", "--no-fix", "--no-cache", "--extend-select", SECURITY_PREFIX]
    for pattern in policy.sast_exclude:
        argv += ["--extend-exclude", pattern]
    return [*argv, *targets]


def collect(store: EvidenceStore, policy: SecurityPolicy) -> None:
    """List the files ruff checks, then run it with JSON output; keep both."""
    ctx = store.ctx
    targets = scan_targets(ctx.target_dir, ctx.config.target.source_root, ctx.config.target.packages)
    argv = _argv(targets, policy)
    listing = ctx.run("ruff-files", [*argv[:4], "--show-files", *argv[4:]], cwd=ctx.target_dir, timeout_s=120)
    root = ctx.target_dir.resolve()
    files = [_relative(line, root) for line in listing.stdout().splitlines() if line.strip()]
    store.write_json(FILES, {"targets": targets, "files": files, "returncode": listing.returncode})
    if listing.returncode != 0 or not files:
        return
    run = ctx.run("ruff", [*argv, "--output-format", "json"], cwd=ctx.target_dir, timeout_s=policy.tool_timeout_s)
    store.record_run(RUN, run)
    try:
        results = json.loads(run.stdout())
    except json.JSONDecodeError:
        return
    store.write_json(REPORT, [_kept(item, root) for item in results])


def _relative(name: str, root: Path) -> str:
    """A path ruff printed, relative to the target when it lies inside it."""
    path = Path(name.strip())
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _kept(item: dict[str, Any], root: Path) -> dict[str, Any]:
    """Rule, location, message and URL of one result (the fix and source are dropped)."""
    return {
        "code": item.get("code"),
        "filename": _relative(str(item.get("filename", "")), root),
        "row": (item.get("location") or {}).get("row"),
        "message": item.get("message"),
        "url": item.get("url"),
    }


def bandit_ratings(reader: EvidenceReader) -> dict[tuple[str, str, int], Severity]:
    """(bandit test id, file, line) -> the severity bandit gave it in this run."""
    if not reader.exists(BANDIT_REPORT):
        return {}
    return {
        (str(r["test_id"]), str(r["filename"]), int(r["line_number"])): severity_of(
            r.get("issue_severity"), Severity.MEDIUM
        )
        for r in reader.read_json(BANDIT_REPORT).get("results", [])
    }


def _finding(item: dict[str, Any], ratings: dict[tuple[str, str, int], Severity]) -> Finding:
    """One ruff S result; its severity is bandit's for the same check and line, else medium."""
    code, path, line = str(item["code"]), str(item["filename"]), int(item.get("row") or 0)
    severity = ratings.get((f"B{code[1:]}", path, line), Severity.MEDIUM)
    return Finding(
        scanner="ruff",
        rule=code,
        id=f"ruff:{code}:{path}:{line}",
        keys=(f"ruff:{code}:{path}", f"ruff:{code}"),
        severity=severity,
        title=f"{path}:{line}: {item.get('message', '')} (ruff {code})",
        location=path,
        line=line,
        help_uri=item.get("url"),
    )


def assess(reader: EvidenceReader, policy: SecurityPolicy) -> ScanResult:
    """INCONCLUSIVE unless ruff checked >0 files and wrote its JSON; its S results become findings."""
    del policy
    if reader.exists(NOT_RUN):
        return ScanResult(NAME, Status.NOT_RUN, "not run", reasons=(reader.read_json(NOT_RUN)["reason"],))
    if not reader.exists(FILES):
        return ScanResult(NAME, Status.INCONCLUSIVE, "not run", reasons=("ruff did not run",))
    listing = reader.read_json(FILES)
    files, targets = listing["files"], ", ".join(listing["targets"])
    if listing["returncode"] != 0:
        reason = f"ruff --show-files exited {listing['returncode']} (the target's ruff configuration may be invalid)"
        return ScanResult(NAME, Status.INCONCLUSIVE, "no file list", reasons=(reason,))
    if not files:
        reason = f"ruff checks no file in {targets} (empty or fully excluded): nothing was analysed"
        return ScanResult(NAME, Status.INCONCLUSIVE, "nothing analysed", reasons=(reason,))
    problem = run_problem(reader.read_json(RUN), "ruff", ok_codes=(0, 1))
    if problem or not reader.exists(REPORT):
        return ScanResult(NAME, Status.INCONCLUSIVE, "no report", reasons=(problem or "ruff wrote no JSON",))
    results = reader.read_json(REPORT)
    security = [r for r in results if str(r.get("code") or "").startswith(SECURITY_PREFIX)]
    ratings = bandit_ratings(reader)
    findings = tuple(_finding(r, ratings) for r in security)
    measurements = (Measurement.judged("files checked by ruff", len(files), ">", 0, "files"),)
    other = len(results) - len(security)
    summary = (
        f"checked {len(files)} file(s) of {targets} with the S rules and the target's config; "
        f"{len(findings)} S result(s), {other} other result(s) of the target's own rules (not security, counted only)"
    )
    facts = {"files": len(files), "security_results": len(findings), "other_results": other}
    return ScanResult(NAME, Status.PASS, summary, (), findings, measurements, facts)
