"""S2 secret scan: detect-secrets over the target's git-tracked files; evidence keeps hashes, never values."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gates.security.policy import EvidenceReader, Finding, ScanResult, SecurityPolicy, Severity
from gates.security.store import EvidenceStore, run_problem
from harness.model import Measurement, Status

NAME = "secrets (detect-secrets)"
FILES = "secrets/files.json"
REPORT = "secrets/detect-secrets.json"
RUNS = "secrets/runs.json"
BASELINE = "secrets/baseline.json"
NOT_RUN = "secrets/not-run.json"
BATCH = 400
KEPT = ("type", "filename", "line_number", "hashed_secret", "is_verified", "is_secret")


def _strip(entry: dict[str, Any]) -> dict[str, Any]:
    """Only the fields that identify a finding (detect-secrets has no value field; keep it that way)."""
    return {key: entry[key] for key in KEPT if key in entry}


def _tracked(store: EvidenceStore, baseline: str) -> list[str] | None:
    """The regular files git tracks in the target (the baseline itself excluded); None outside a work tree."""
    ctx = store.ctx
    run = ctx.run("git-ls-files", ["git", "ls-files", "-z"], cwd=ctx.target_dir, timeout_s=120)
    if run.returncode != 0:
        facts = {"returncode": run.returncode, "stderr_tail": run.stderr(), "stderr_file": store.stderr_file(run)}
        store.write_json(FILES, {"error": run_problem(facts, "git ls-files")})
        return None
    tracked = [name for name in run.stdout().split("\0") if name]
    scanned = [
        n for n in tracked if n != baseline and (ctx.target_dir / n).is_file() and not (ctx.target_dir / n).is_symlink()
    ]
    store.write_json(FILES, {"tracked": len(tracked), "scanned": scanned})
    return scanned


def _baseline(store: EvidenceStore, path: Path) -> None:
    """Keep the target's detect-secrets baseline entries (hashes and audit marks only)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = [_strip(e) for items in data.get("results", {}).values() for e in items]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        store.write_json(BASELINE, {"path": path.name, "error": f"unreadable: {exc}"})
        return
    store.write_json(BASELINE, {"path": path.name, "entries": entries})


def collect(store: EvidenceStore, policy: SecurityPolicy) -> None:
    """Scan the tracked files in batches and merge the results."""
    ctx = store.ctx
    files = _tracked(store, policy.secrets_baseline)
    if (ctx.target_dir / policy.secrets_baseline).is_file():
        _baseline(store, ctx.target_dir / policy.secrets_baseline)
    if not files:
        return
    results: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    plugins: list[Any] = []
    for start in range(0, len(files), BATCH):
        if ctx.cancel.is_set():
            break
        argv = [sys.executable, "-m", "detect_secrets", "scan", *files[start : start + BATCH]]
        run = ctx.run("detect-secrets", argv, timeout_s=policy.tool_timeout_s)
        record = {
            "returncode": run.returncode,
            "timed_out": run.timed_out,
            "cancelled": run.cancelled,
            "stderr_tail": run.stderr()[-1500:],
            "stderr_file": store.stderr_file(run),
            "files": len(files[start : start + BATCH]),
        }
        try:
            output = json.loads(run.stdout())
            results += [_strip(e) for items in output.get("results", {}).values() for e in items]
            plugins = output.get("plugins_used", plugins)
        except (json.JSONDecodeError, AttributeError):
            record["error"] = "output is not JSON"
        runs.append(record)
    store.write_json(RUNS, runs)
    store.write_json(REPORT, {"results": results, "plugins_used": plugins})


def _audited_false(reader: EvidenceReader) -> tuple[set[tuple[str, str]], list[str]]:
    """(file, hash) pairs the baseline marks is_secret=false, and problems with the baseline."""
    if not reader.exists(BASELINE):
        return set(), []
    baseline = reader.read_json(BASELINE)
    if baseline.get("error"):
        return set(), [f"{baseline['path']}: {baseline['error']}"]
    return {(e["filename"], e["hashed_secret"]) for e in baseline["entries"] if e.get("is_secret") is False}, []


def _finding(entry: dict[str, Any]) -> Finding:
    """One detected secret: type, file, line and hash; the value is never known here."""
    path, line, digest = str(entry["filename"]), int(entry["line_number"]), str(entry["hashed_secret"])
    return Finding(
        scanner="detect-secrets",
        rule=str(entry["type"]),
        id=f"secret:{path}:{digest}",
        keys=(f"secret:{digest}",),
        severity=Severity.HIGH,
        title=f"{path}:{line}: possible {entry['type']} committed (value withheld; sha1 {digest[:12]})",
        location=path,
        line=line,
        needs_rotation=True,
    )


def assess(reader: EvidenceReader, policy: SecurityPolicy) -> ScanResult:
    """Every detected secret not audited as false in the baseline is a high finding; no files is INCONCLUSIVE."""
    del policy
    if reader.exists(NOT_RUN):
        return ScanResult(NAME, Status.NOT_RUN, "not run", reasons=(reader.read_json(NOT_RUN)["reason"],))
    if not reader.exists(FILES):
        return ScanResult(NAME, Status.INCONCLUSIVE, "not run", reasons=("detect-secrets did not run",))
    files = reader.read_json(FILES)
    if files.get("error"):
        reason = f"the tracked files are unknown ({files['error']}): the target must be a git work tree"
        return ScanResult(NAME, Status.INCONCLUSIVE, "no file list", reasons=(reason,))
    scanned = len(files["scanned"])
    reasons = [] if scanned else ["git tracks no file in the target: nothing to scan"]
    runs = reader.read_json(RUNS) if reader.exists(RUNS) else []
    for run in runs:
        problem = run_problem(run, "detect-secrets") or run.get("error")
        reasons += [f"a detect-secrets batch of {run['files']} files failed: {problem}"] if problem else []
    if scanned and not reader.exists(REPORT):
        reasons.append("detect-secrets produced no report")
    false_positives, baseline_problems = _audited_false(reader)
    reasons += baseline_problems
    entries = reader.read_json(REPORT)["results"] if reader.exists(REPORT) else []
    kept = [e for e in entries if (e["filename"], e["hashed_secret"]) not in false_positives]
    findings = tuple(_finding(e) for e in kept)
    measurements = (
        Measurement.judged("tracked files scanned for secrets", scanned, ">", 0, "files"),
        Measurement(name="detected secrets audited false in the baseline", value=len(entries) - len(kept)),
    )
    audited = len(entries) - len(kept)
    summary = (
        f"scanned {scanned} tracked file(s); {len(findings)} possible secret(s), {audited} audited false positive(s)"
    )
    status = Status.INCONCLUSIVE if reasons else Status.PASS
    facts = {"files": scanned, "detected": len(entries), "audited_false": audited}
    return ScanResult(NAME, status, summary, tuple(reasons), findings, measurements, facts)
