"""S8 known-vulnerability audit: pip-audit over the target venv's site-packages, online or against a local OSV db.

pip-audit prints "No known vulnerabilities found" and exits 0 when it audited nothing (every
dependency skipped, e.g. when PyPI's JSON API answers 404). So the verdict never trusts the exit
code: every installed distribution must appear as audited, and none may carry a skip_reason.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path
from typing import Any

from gates.security.advisory_cache import current_copy
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
from harness.failures import where_output_is
from harness.model import Measurement, Status

NAME = "known vulnerabilities (pip-audit)"
REPORT = "deps/pip-audit.json"
RUN = "deps/run.json"
DATABASE = "deps/advisory-db.json"
QUERIES = "deps/osv-queries.json"
NOT_RUN = "deps/not-run.json"
#: Classes of a pip-audit run that could not talk to its vulnerability service, each with the words
#: (from requests/urllib3 exceptions and pip-audit's own messages) that mark it; checked in this order.
NETWORK_FAILURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "dns",
        (
            "NameResolutionError",
            "Failed to resolve",
            "Name or service not known",
            "Temporary failure in name resolution",
            "nodename nor servname",
            "getaddrinfo failed",
            "gaierror",
        ),
    ),
    ("timeout", ("ConnectTimeout", "ReadTimeout", "timed out", "Could not connect to")),
    (
        "unreachable",
        (
            "Connection refused",
            "Network is unreachable",
            "No route to host",
            "NewConnectionError",
            "Max retries exceeded",
            "ProxyError",
            "RemoteDisconnected",
            "Connection reset",
            "ConnectionError",
        ),
    ),
)
NETWORK_WHAT = {
    "dns": "the host name {host} did not resolve",
    "timeout": "the connection to {host} timed out",
    "unreachable": "the connection to {host} was refused or found no route",
}
OFFLINE_ADVICE = (
    "Point `[gates.G5] advisory_db` at a local copy of the PyPA advisory database, "
    "or run `certify advisory-db update` where the network allows"
)


def database_root(target_dir: Path, configured: str) -> Path:
    """The advisory database directory: absolute, or relative to the target."""
    path = Path(configured).expanduser()
    return path if path.is_absolute() else (target_dir / path).resolve()


def local_database(target_dir: Path, policy: SecurityPolicy) -> tuple[Path, str] | None:
    """The database pip-audit is pointed at and where it came from: advisory_db, else the cached copy, else None."""
    if policy.advisory_db:
        return database_root(target_dir, policy.advisory_db), "advisory_db"
    cached = current_copy()
    return (cached, "cache") if cached else None


def collect(store: EvidenceStore, policy: SecurityPolicy, site_packages: list[str]) -> None:
    """Run pip-audit on the target's site-packages, against a local database on loopback when there is one."""
    ctx = store.ctx
    out = ctx.scratch / "pip-audit.json"
    argv = [sys.executable, "-m", "pip_audit", *(arg for path in site_packages for arg in ("--path", path))]
    argv += ["-f", "json", "-o", str(out), "--progress-spinner", "off", "--desc", "on", "--aliases", "on"]
    argv += ["--cache-dir", str(ctx.scratch / "pip-audit-cache"), "--timeout", "30"]
    local = local_database(ctx.target_dir, policy)
    if local is None:
        store.record_run(RUN, ctx.run("pip-audit", argv, timeout_s=policy.tool_timeout_s))
        store.copy_json(REPORT, out)
        return
    from gates.security import osv  # noqa: PLC0415 - needs PyYAML and packaging, checked before collect

    root, source = local
    if not root.is_dir():
        store.write_json(DATABASE, {"path": str(root), "source": source, "error": "not a directory"})
        return
    ctx.progress(f"loading the advisory database {root}")
    database = osv.AdvisoryDatabase.load(root)
    store.write_json(DATABASE, {**database.describe(), "source": source})
    log = osv.QueryLog()
    with osv.serve(database, log) as url:
        ctx.progress(f"pip-audit against the local advisory service {url}")
        run = ctx.run("pip-audit", [*argv, "-s", "osv", "--osv-url", url], timeout_s=policy.tool_timeout_s)
    store.record_run(RUN, run)
    store.write_json(QUERIES, log.entries)
    store.copy_json(REPORT, out)


def pip_audit_failure(run: dict[str, Any]) -> tuple[str, str]:
    """The class of a failed pip-audit run (dns, timeout, unreachable, tool) and the failing host, from its stderr."""
    output = str(run.get("stderr_tail") or "")
    host = re.search(r"host='([^']+)'", output) or re.search(r"Failed to resolve '([^']+)'", output)
    feed = re.search(r"Could not connect to (\S+) vulnerability feed", output)
    name = host.group(1) if host else (f"{feed.group(1)} vulnerability feed" if feed else "the vulnerability service")
    if not run.get("timed_out") and not run.get("cancelled"):
        for kind, markers in NETWORK_FAILURES:
            if any(marker in output for marker in markers):
                return kind, name
    return "tool", name


def _no_report_reason(run: dict[str, Any], local: str | None) -> tuple[str, str]:
    """Why pip-audit wrote no report, as a readable sentence (never its raw output), and the failure class."""
    kind, host = pip_audit_failure(run)
    where = where_output_is(run.get("stderr_file"))
    if kind == "tool":
        ended = run_problem(run, "pip-audit", ok_codes=()) or "pip-audit wrote no JSON report"
        return f"{ended}; it wrote no report, so no dependency was audited", kind
    what = NETWORK_WHAT[kind].format(host=host)
    if local is None:
        return (
            f"pip-audit could not reach its vulnerability service ({what}), so no dependency was audited. "
            f"{OFFLINE_ADVICE} ({where})."
        ), kind
    return (
        f"pip-audit could not reach the harness's own advisory service on 127.0.0.1 ({what}), so no dependency "
        f"was audited. That service runs inside the harness, so this is a harness fault, not the target's ({where})."
    ), kind


def _database_name(db: dict[str, Any]) -> str:
    """How reasons name the local database: the cached copy with its fetch, or the configured directory."""
    fetched = f" (fetched {db['fetched_at']} from {db['fetched_from']})" if db.get("fetched_at") else ""
    if db.get("source") == "cache":
        return f"the cached advisory database copy {db['path']}{fetched}"
    return f"the advisory database {db['path']}{fetched}"


def _database_check(
    reader: EvidenceReader, policy: SecurityPolicy, run_date: dt.date
) -> tuple[list[str], list[Measurement], dict[str, Any]]:
    """Reasons, measurements and facts about the local advisory database (its age above all)."""
    if not reader.exists(DATABASE):
        return [f"the advisory database {policy.advisory_db!r} was not loaded"], [], {}
    db = reader.read_json(DATABASE)
    if db.get("error"):
        return [f"advisory_db {db['path']}: {db['error']}"], [], {"advisory_db": db}
    keys = ("path", "source", "records", "packages", "sha256", "commit", "date", "date_source")
    facts = {k: db.get(k) for k in (*keys, "fetched_at", "fetched_from") if k in keys or db.get(k)}
    name = _database_name(db)
    if not db.get("date") or db.get("records", 0) == 0:
        return [f"{name} has no dated records"], [], {"advisory_db": facts}
    age_days = (run_date - dt.date.fromisoformat(db["date"])).days
    facts["age_days"] = age_days
    measurement = Measurement.judged("advisory database age", age_days, "<=", policy.max_advisory_age_days, "days")
    reasons = []
    if age_days > policy.max_advisory_age_days:
        commit = f", commit {db['commit'][:12]}" if db.get("commit") else ""
        refresh = "; run `certify advisory-db update` to refresh it" if db.get("source") == "cache" else ""
        reasons.append(
            f"{name} is dated {db['date']}{commit} ({db['date_source']}): "
            f"{age_days} days old on {run_date}, older than max_advisory_age_days={policy.max_advisory_age_days}; "
            f"advisories published since are missing{refresh}"
        )
    return reasons, [measurement], {"advisory_db": facts}


def _service(reader: EvidenceReader, policy: SecurityPolicy) -> tuple[str | None, str]:
    """Which database pip-audit asked (advisory_db, cache or None for its default service), and its description."""
    db = reader.read_json(DATABASE) if reader.exists(DATABASE) else None
    source = str(db.get("source") or "advisory_db") if db else ("advisory_db" if policy.advisory_db else None)
    if source is None:
        return None, "pip-audit's default service (PyPI)"
    if source == "cache" and db:
        return source, f"{_database_name(db)}, dated {db.get('date')}"
    return source, "local OSV database"


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
            hint = (
                "; PyPI's JSON API did not answer for them: set advisory_db for an offline audit, "
                "or run `certify advisory-db update` where the network allows"
            )
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
    local, service = _service(reader, policy)
    facts: dict[str, Any] = {"service": service}
    if local:
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
        why, facts["failure"] = _no_report_reason(run, local)
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
