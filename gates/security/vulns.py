"""S8 known-vulnerability audit: pip-audit over the target venv's site-packages, online or against a local OSV db.

pip-audit prints "No known vulnerabilities found" and exits 0 when it audited nothing (every
dependency skipped, e.g. when PyPI's JSON API answers 404). So the verdict never trusts the exit
code: every installed distribution must appear as audited, and none may carry a skip_reason.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

from gates.security.cvss import cvss3_base_score
from gates.security.inventory import INVENTORY, installed_names, inventory_problem
from gates.security.policy import (
    EvidenceReader,
    Finding,
    ScanResult,
    SecurityPolicy,
    Severity,
    canonical_name,
    severity_of_score,
)
from gates.security.store import EvidenceStore, run_problem
from harness.model import Measurement, Status

NAME = "known vulnerabilities (pip-audit)"
REPORT = "deps/pip-audit.json"
RUN = "deps/run.json"
DATABASE = "deps/advisory-db.json"
QUERIES = "deps/osv-queries.json"
NOT_RUN = "deps/not-run.json"
UNREACHABLE_MARKERS = ("ConnectionError", "Failed to resolve", "Max retries exceeded", "Could not connect", "timed out")


def database_root(target_dir: Path, configured: str) -> Path:
    """The advisory database directory: absolute, or relative to the target."""
    path = Path(configured).expanduser()
    return path if path.is_absolute() else (target_dir / path).resolve()


def collect(store: EvidenceStore, policy: SecurityPolicy, site_packages: list[str]) -> None:
    """Run pip-audit on the target's site-packages; with advisory_db, against that database on loopback."""
    ctx = store.ctx
    out = ctx.scratch / "pip-audit.json"
    argv = [sys.executable, "-m", "pip_audit", *(arg for path in site_packages for arg in ("--path", path))]
    argv += ["-f", "json", "-o", str(out), "--progress-spinner", "off", "--desc", "on", "--aliases", "on"]
    argv += ["--cache-dir", str(ctx.scratch / "pip-audit-cache"), "--timeout", "30"]
    if policy.advisory_db is None:
        store.record_run(RUN, ctx.run("pip-audit", argv, timeout_s=policy.tool_timeout_s))
        store.copy_json(REPORT, out)
        return
    from gates.security import osv  # noqa: PLC0415 - needs PyYAML and packaging, checked before collect

    root = database_root(ctx.target_dir, policy.advisory_db)
    if not root.is_dir():
        store.write_json(DATABASE, {"path": str(root), "error": "not a directory"})
        return
    ctx.progress(f"loading the advisory database {root}")
    database = osv.AdvisoryDatabase.load(root)
    store.write_json(DATABASE, database.describe())
    log = osv.QueryLog()
    with osv.serve(database, log) as url:
        ctx.progress(f"pip-audit against the local advisory service {url}")
        run = ctx.run("pip-audit", [*argv, "-s", "osv", "--osv-url", url], timeout_s=policy.tool_timeout_s)
    store.record_run(RUN, run)
    store.write_json(QUERIES, log.entries)
    store.copy_json(REPORT, out)


def _database_check(
    reader: EvidenceReader, policy: SecurityPolicy, run_date: dt.date
) -> tuple[list[str], list[Measurement], dict[str, Any]]:
    """Reasons, measurements and facts about the configured advisory database (its age above all)."""
    if not reader.exists(DATABASE):
        return [f"the advisory database {policy.advisory_db!r} was not loaded"], [], {}
    db = reader.read_json(DATABASE)
    if db.get("error"):
        return [f"advisory_db {db['path']}: {db['error']}"], [], {"advisory_db": db}
    facts = {k: db.get(k) for k in ("path", "records", "packages", "sha256", "commit", "date", "date_source")}
    if not db.get("date") or db.get("records", 0) == 0:
        return [f"the advisory database {db['path']} has no dated records"], [], {"advisory_db": facts}
    age_days = (run_date - dt.date.fromisoformat(db["date"])).days
    facts["age_days"] = age_days
    measurement = Measurement.judged("advisory database age", age_days, "<=", policy.max_advisory_age_days, "days")
    reasons = []
    if age_days > policy.max_advisory_age_days:
        commit = f", commit {db['commit'][:12]}" if db.get("commit") else ""
        reasons.append(
            f"the advisory database {db['path']} is dated {db['date']}{commit} ({db['date_source']}): "
            f"{age_days} days old on {run_date}, older than max_advisory_age_days={policy.max_advisory_age_days}; "
            "advisories published since are missing"
        )
    return reasons, [measurement], {"advisory_db": facts}


def _scores(reader: EvidenceReader) -> dict[str, float]:
    """CVSS v3 base score of every advisory id (and alias) the local service returned."""
    scores: dict[str, float] = {}
    for entry in reader.read_json(QUERIES) if reader.exists(QUERIES) else []:
        for vuln in entry.get("vulns", []):
            score = cvss3_base_score(vuln["cvss3"]) if vuln.get("cvss3") else None
            if score is not None:
                for key in (vuln["id"], *vuln.get("aliases", [])):
                    scores[key] = score
    return scores


def _findings(
    audited: list[dict[str, Any]], scores: dict[str, float], policy: SecurityPolicy, where: str | None
) -> tuple[Finding, ...]:
    """One finding per (package, advisory)."""
    findings = []
    for dep in audited:
        name, version = str(dep["name"]), str(dep["version"])
        for vuln in dep.get("vulns", []):
            vid, aliases = str(vuln["id"]), [str(a) for a in vuln.get("aliases", [])]
            score = next((scores[k] for k in (vid, *aliases) if k in scores), None)
            severity: Severity = (
                severity_of_score(score) if score is not None else Severity(policy.vuln_default_severity)
            )
            rated = f"CVSS {score}" if score is not None else "no CVSS score in the advisory"
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version"
            also = f" ({', '.join(aliases)})" if aliases else ""
            findings.append(
                Finding(
                    scanner="pip-audit",
                    rule=vid,
                    id=f"vuln:{canonical_name(name)}:{vid}",
                    keys=(vid, *aliases, *(f"vuln:{canonical_name(name)}:{a}" for a in aliases)),
                    severity=severity,
                    title=f"{name} {version} has known vulnerability {vid}{also}, {rated}; fixed in {fixed}",
                    location=where,
                    line=1 if where else None,
                    help_uri=f"https://osv.dev/vulnerability/{vid}",
                )
            )
    return tuple(findings)


def _report_problems(
    reader: EvidenceReader, report: dict[str, Any], target: str | None
) -> tuple[list[str], list[dict[str, Any]], int]:
    """Coverage problems (skipped, unlisted or unqueried dependencies), the audited entries, and the skip count."""
    reasons: list[str] = []
    deps = report.get("dependencies", [])
    own = canonical_name(target) if target else None
    audited = [d for d in deps if "skip_reason" not in d]
    skipped = [d for d in deps if "skip_reason" in d and canonical_name(d["name"]) != own]
    if skipped:
        sample = "; ".join(f"{d['name']}: {d['skip_reason']}" for d in skipped[:3])
        hint = ""
        if all("not found on PyPI" in str(d["skip_reason"]) for d in skipped):
            hint = "; PyPI's JSON API did not answer for them: set advisory_db for an offline audit"
        reasons.append(f"{len(skipped)} of {len(deps)} dependencies were not audited ({sample}){hint}")
    if not audited:
        reasons.append("pip-audit audited no dependency, so its 'no known vulnerabilities' means nothing")
    if reader.exists(INVENTORY):
        covered = {canonical_name(d["name"]) for d in deps}
        unlisted = sorted(set(installed_names(reader.read_json(INVENTORY), target)) - covered)
        if unlisted:
            reasons.append(
                f"{len(unlisted)} installed distribution(s) missing from the audit: {', '.join(unlisted[:10])}"
            )
    if reader.exists(QUERIES):
        asked = {(canonical_name(e["name"]), e["version"]) for e in reader.read_json(QUERIES) if "error" not in e}
        unasked = sorted(
            f"{d['name']} {d['version']}" for d in audited if (canonical_name(d["name"]), d["version"]) not in asked
        )
        if unasked:
            reasons.append(
                f"pip-audit reported {len(unasked)} dependencies as audited that it never asked about: "
                + ", ".join(unasked[:5])
            )
    return reasons, audited, len(skipped)


def assess(reader: EvidenceReader, policy: SecurityPolicy, context: dict[str, Any]) -> ScanResult:
    """INCONCLUSIVE unless every installed distribution was audited against a fresh enough database."""
    if reader.exists(NOT_RUN):
        return ScanResult(NAME, Status.NOT_RUN, "not run", reasons=(reader.read_json(NOT_RUN)["reason"],))
    run_date = dt.date.fromisoformat(context["run_date"])
    reasons: list[str] = []
    measurements: list[Measurement] = []
    facts: dict[str, Any] = {
        "service": "local OSV database" if policy.advisory_db else "pip-audit's default service (PyPI)"
    }
    if policy.advisory_db:
        db_reasons, db_measurements, db_facts = _database_check(reader, policy, run_date)
        reasons += db_reasons
        measurements += db_measurements
        facts.update(db_facts)
    if not reader.exists(RUN):
        reasons.append(f"pip-audit did not run: {inventory_problem(reader) or 'the advisory database is unusable'}")
        return ScanResult(
            NAME, Status.INCONCLUSIVE, "not run", tuple(reasons), measurements=tuple(measurements), facts=facts
        )
    run = reader.read_json(RUN)
    if not reader.exists(REPORT):
        why = run_problem(run, "pip-audit") or "pip-audit wrote no JSON report"
        if not policy.advisory_db and any(marker in str(run.get("stderr_tail")) for marker in UNREACHABLE_MARKERS):
            why = f"the vulnerability service could not be reached and no advisory_db is configured ({why})"
        reasons.append(why)
        return ScanResult(
            NAME, Status.INCONCLUSIVE, "no report", tuple(reasons), measurements=tuple(measurements), facts=facts
        )
    problem = run_problem(run, "pip-audit", ok_codes=(0, 1))
    reasons += [problem] if problem else []
    missing_inventory = inventory_problem(reader)
    reasons += [missing_inventory] if missing_inventory else []
    coverage, audited, skipped = _report_problems(reader, reader.read_json(REPORT), context.get("target_project"))
    reasons += coverage
    findings = _findings(audited, _scores(reader), policy, context.get("dependency_file"))
    measurements += [
        Measurement.judged("dependencies audited", len(audited), ">", 0),
        Measurement.judged("dependencies not audited (skipped)", skipped, "<=", 0),
    ]
    facts.update({"audited": len(audited), "skipped": skipped, "vulnerabilities": len(findings)})
    summary = (
        f"{len(audited)} installed distributions audited against {facts['service']}; "
        f"{len(findings)} known vulnerabilities"
    )
    status = Status.INCONCLUSIVE if reasons else Status.PASS
    return ScanResult(NAME, status, summary, tuple(reasons), findings, tuple(measurements), facts)
