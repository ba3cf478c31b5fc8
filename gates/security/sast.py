"""S1 static analysis with bandit: JSON report over the target's packages; it must have parsed real code."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gates.security.policy import EvidenceReader, Finding, ScanResult, SecurityPolicy, Severity, severity_of
from gates.security.store import EvidenceStore, run_problem
from harness.model import Measurement, Status

NAME = "SAST (bandit)"
REPORT = "sast/bandit.json"
RUN = "sast/run.json"
TARGETS = "sast/targets.json"
NOT_RUN = "sast/not-run.json"
#: Tests whose issue_text quotes the suspected password itself.
QUOTES_VALUE = frozenset({"B105", "B106", "B107"})


def scan_targets(target_dir: Path, source_root: str, packages: tuple[str, ...]) -> list[str]:
    """Paths (relative to the target) bandit scans: each package's directory or module, else the source root."""
    root = Path(source_root)
    if not packages:
        return [root.as_posix()]
    found = []
    for package in packages:
        directory = root / package.replace(".", "/")
        module = directory.with_suffix(".py")
        found.append((module if (target_dir / module).is_file() else directory).as_posix())
    return found


def sanitise(report: dict[str, Any]) -> dict[str, Any]:
    """The bandit JSON report without source snippets, and with quoted password values withheld."""
    results = []
    for item in report.get("results", []):
        kept = {key: value for key, value in item.items() if key != "code"}
        kept["filename"] = str(kept.get("filename", "")).removeprefix("./")
        if kept.get("test_id") in QUOTES_VALUE:
            kept["issue_text"] = str(kept.get("issue_text", "")).split(":", 1)[0] + " (value withheld)"
        results.append(kept)
    errors = [{**e, "filename": str(e.get("filename", "")).removeprefix("./")} for e in report.get("errors", [])]
    return {**report, "results": results, "errors": errors}


def collect(store: EvidenceStore, policy: SecurityPolicy) -> None:
    """Run bandit over the configured packages with the target's own bandit settings neutralised."""
    ctx = store.ctx
    targets = scan_targets(ctx.target_dir, ctx.config.target.source_root, ctx.config.target.packages)
    store.write_json(TARGETS, {"targets": targets, "exclude": list(policy.sast_exclude)})
    # An empty INI stops bandit from picking up a project-level .bandit that could skip tests silently.
    empty_ini = ctx.scratch / "empty.bandit"
    empty_ini.write_text("[bandit]\n", encoding="utf-8")
    out = ctx.scratch / "bandit.json"
    argv = [sys.executable, "-m", "bandit", "-r", *targets, "--ini", str(empty_ini), "-f", "json", "-o", str(out)]
    if policy.sast_exclude:
        argv += ["-x", ",".join(policy.sast_exclude)]
    run = ctx.run("bandit", argv, cwd=ctx.target_dir, timeout_s=policy.tool_timeout_s)
    store.record_run(RUN, run)
    if out.is_file():
        try:
            report = json.loads(out.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return
        store.write_json(REPORT, sanitise(report))


def _finding(item: dict[str, Any]) -> Finding:
    """One bandit result as a normalised finding."""
    test_id, path, line = str(item["test_id"]), str(item["filename"]), int(item["line_number"])
    return Finding(
        scanner="bandit",
        rule=test_id,
        id=f"bandit:{test_id}:{path}:{line}",
        keys=(f"bandit:{test_id}:{path}", f"bandit:{test_id}"),
        severity=severity_of(item.get("issue_severity"), Severity.HIGH),
        title=(
            f"{path}:{line}: {item.get('issue_text', '')} ({test_id} {item.get('test_name', '')}, "
            f"confidence {str(item.get('issue_confidence', '?')).lower()})"
        ),
        location=path,
        line=line,
        help_uri=item.get("more_info"),
    )


def assess(reader: EvidenceReader, policy: SecurityPolicy) -> ScanResult:
    """INCONCLUSIVE unless bandit ran, parsed every file and scanned >0 lines; its results become findings."""
    del policy
    if reader.exists(NOT_RUN):
        return ScanResult(NAME, Status.NOT_RUN, "not run", reasons=(reader.read_json(NOT_RUN)["reason"],))
    if not reader.exists(TARGETS):
        return ScanResult(NAME, Status.INCONCLUSIVE, "not run", reasons=("bandit did not run",))
    targets = reader.read_json(TARGETS)["targets"]
    run = reader.read_json(RUN)
    problem = run_problem(run, "bandit", ok_codes=(0, 1))
    if not reader.exists(REPORT):
        why = problem or "it wrote no JSON report"
        return ScanResult(NAME, Status.INCONCLUSIVE, "no report", reasons=(f"no bandit report: {why}",))
    report = reader.read_json(REPORT)
    totals = report.get("metrics", {}).get("_totals", {})
    loc, nosec = int(totals.get("loc", 0)), int(totals.get("nosec", 0))
    errors = report.get("errors", [])
    reasons = [problem] if problem else []
    if errors:
        shown = "; ".join(f"{e.get('filename')}: {e.get('reason')}" for e in errors[:5])
        reasons.append(f"bandit could not scan {len(errors)} file(s): {shown}")
    if loc <= 0:
        reasons.append(f"bandit scanned 0 lines of code in {', '.join(targets)}: nothing was analysed")
    findings = tuple(_finding(item) for item in report.get("results", []))
    files = len([key for key in report.get("metrics", {}) if key != "_totals"])
    measurements = (
        Measurement.judged("lines scanned by bandit", loc, ">", 0, "lines"),
        Measurement.judged("files bandit could not scan", len(errors), "<=", 0, "files"),
        Measurement(name="bandit nosec suppressions", value=nosec),
    )
    summary = (
        f"scanned {loc} lines in {files} file(s) of {', '.join(targets)}; {len(findings)} result(s), {nosec} nosec"
    )
    status = Status.INCONCLUSIVE if reasons else Status.PASS
    facts = {"targets": targets, "loc": loc, "files": files, "nosec": nosec, "results": len(findings)}
    return ScanResult(NAME, status, summary, tuple(reasons), findings, measurements, facts)
