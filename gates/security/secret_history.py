"""S2 over the whole history: detect-secrets on every blob reachable from any ref, each blob once.

collect runs gates/security/history_worker.py in its own process (argv list, time limit); assess
reads its JSON back. A secret that only history holds FAILs like one in the tree: deleting the file
does not revoke the key. A detected value audited is_secret=false anywhere in the baseline is a
false positive; a real one is accepted only by a policy waiver that records its rotation.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from gates.security.policy import EvidenceReader, Finding, ScanResult, SecurityPolicy, Severity
from gates.security.secret_scan import BASELINE, REPORT
from gates.security.store import EvidenceStore, run_problem
from harness.model import Measurement, Status

NAME = "secrets in history (detect-secrets)"
HISTORY = "secrets/history.json"
HISTORY_RUN = "secrets/history-run.json"
NOT_RUN = "secrets/not-run.json"


def collect(store: EvidenceStore, policy: SecurityPolicy) -> None:
    """Scan the target's git history with the worker; keep its facts, or why it could not run."""
    ctx = store.ctx
    argv = [sys.executable, "-m", "gates.security.history_worker", str(ctx.target_dir)]
    argv += ["--exclude", policy.secrets_baseline]
    run = ctx.run("secret-history", argv, timeout_s=policy.tool_timeout_s)
    store.record_run(HISTORY_RUN, run)
    if run.returncode != 0:
        return
    try:
        store.write_json(HISTORY, json.loads(run.stdout()))
    except json.JSONDecodeError:
        store.write_json(HISTORY, {"error": "the history worker's output is not JSON"})


def _audited_false_hashes(reader: EvidenceReader) -> set[str]:
    """Hashes the baseline audits is_secret=false (in any file: a path in history may no longer exist)."""
    if not reader.exists(BASELINE):
        return set()
    baseline = reader.read_json(BASELINE)
    return {e["hashed_secret"] for e in baseline.get("entries", []) if e.get("is_secret") is False}


def _in_tree(reader: EvidenceReader) -> set[tuple[str, str]]:
    """(file, hash) the tree scan already reports; the history scan does not report them twice."""
    if not reader.exists(REPORT):
        return set()
    return {(e["filename"], e["hashed_secret"]) for e in reader.read_json(REPORT)["results"]}


def _finding(entry: dict[str, Any]) -> Finding:
    """One secret in history: commit, path and line, the value never known here."""
    path, line, digest = str(entry["filename"]), int(entry["line_number"] or 0), str(entry["hashed_secret"])
    commit = str(entry.get("commit") or entry["blob"])
    return Finding(
        scanner="detect-secrets",
        rule=str(entry["type"]),
        id=f"secret-history:{commit[:12]}:{path}:{digest[:12]}",
        keys=(f"secret:{digest}", f"secret-history:{digest}"),
        severity=Severity.HIGH,
        title=(
            f"commit {commit[:12]} {path}:{line}: possible {entry['type']} in the history "
            f"(value withheld; sha1 {digest[:12]}); removing the file does not revoke it"
        ),
        location=path,
        line=line,
        needs_rotation=True,
        commit=commit,
    )


def assess(reader: EvidenceReader, policy: SecurityPolicy) -> ScanResult:
    """Each history secret not in the tree scan nor audited false is a high finding; no blob: INCONCLUSIVE."""
    del policy
    if reader.exists(NOT_RUN):
        return ScanResult(NAME, Status.NOT_RUN, "not run", reasons=(reader.read_json(NOT_RUN)["reason"],))
    if not reader.exists(HISTORY_RUN):
        return ScanResult(NAME, Status.INCONCLUSIVE, "not run", reasons=("the history scan did not run",))
    run = reader.read_json(HISTORY_RUN)
    problem = run_problem(run, "the history scan")
    if problem or not reader.exists(HISTORY):
        reason = f"{problem or 'no output'}: the target must be in a git repository with at least one commit"
        return ScanResult(NAME, Status.INCONCLUSIVE, "history unknown", reasons=(reason,))
    history = reader.read_json(HISTORY)
    if history.get("error"):
        return ScanResult(NAME, Status.INCONCLUSIVE, "no report", reasons=(history["error"],))
    blobs = int(history["blobs"])
    reasons = [] if blobs else ["no blob is reachable from any ref under the target: nothing to scan"]
    false_positive, in_tree = _audited_false_hashes(reader), _in_tree(reader)
    entries = history["results"]
    kept = [
        e
        for e in entries
        if e["hashed_secret"] not in false_positive and (e["filename"], e["hashed_secret"]) not in in_tree
    ]
    findings = tuple(_finding(e) for e in kept)
    measurements = (
        Measurement.judged("blobs reachable from any ref scanned for secrets", blobs, ">", 0, "blobs"),
        Measurement(name="history secrets audited false in the baseline", value=len(entries) - len(kept)),
    )
    summary = (
        f"{blobs} blob(s) from every ref ({history['in_tree']} of the current tree, "
        f"{history['lines_scanned']} further distinct lines scanned, {history['binary']} binary); "
        f"{len(findings)} possible secret(s) only in history"
    )
    status = Status.INCONCLUSIVE if reasons else Status.PASS
    facts = {k: history[k] for k in ("blobs", "bytes", "binary", "too_large", "in_tree", "lines_scanned", "elapsed_s")}
    return ScanResult(NAME, status, summary, tuple(reasons), findings, measurements, facts)
