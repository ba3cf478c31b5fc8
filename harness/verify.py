"""`certify verify PACK`: re-hash every file, re-run every gate's evaluate, re-render the reports."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import CertifyConfigBase, canonical_digest, parse_config
from harness.decide import decide, not_implemented, not_selected, overall
from harness.deviations import DEVIATIONS_FILE, DeviationReport
from harness.errors import ConfigError, PackError
from harness.evidence import ATTESTATIONS, MANIFEST, RENDERED, sha256_file
from harness.gate import Evidence
from harness.model import GateResult
from harness.policy import POLICY_COPY, LoadedPolicy
from harness.policy_pack import (
    RUN_FORMAT_V1,
    judge,
    not_applicable_requirements,
    not_applicable_results,
    pack_policy,
    run_args_of,
)
from harness.registry import implemented
from harness.render import render_junit, render_reports, render_summary
from harness.render_index import INDEX
from harness.traceability import recheck_matrix

#: What a summary.md that belongs with an index.html says; packs written before the index lack it.
INDEX_LINK = f"]({INDEX})"


@dataclass
class VerifyReport:
    """Every discrepancy found, one human line each; an empty list means the pack checks out."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked_files: int = 0
    checked_gates: int = 0

    @property
    def ok(self) -> bool:
        """Whether nothing was found wrong."""
        return not self.problems


def _load_json(root: Path, name: str) -> Any:
    """A JSON file of the pack, or a PackError naming it."""
    path = root / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"{path}: missing; not an evidence pack?"
        raise PackError(msg) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{path}: unreadable: {exc}"
        raise PackError(msg) from None


def _check_files(root: Path, manifest: dict[str, Any], report: VerifyReport) -> None:
    """Re-hash every manifest entry and look for files the manifest does not list."""
    files: dict[str, dict[str, Any]] = manifest.get("files", {})
    for relpath, entry in sorted(files.items()):
        path = root / relpath
        if not path.is_file():
            report.problems.append(f"missing: {relpath}")
            continue
        report.checked_files += 1
        if path.stat().st_size != entry.get("size") or sha256_file(path) != entry.get("sha256"):
            report.problems.append(f"changed: {relpath} (sha256 differs from the manifest)")
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        relpath = path.relative_to(root).as_posix()
        if relpath not in files and relpath not in (MANIFEST, ATTESTATIONS) and relpath not in RENDERED:
            report.problems.append(f"added: {relpath} (not in the manifest)")


def _judged_config(
    root: Path, run: dict[str, Any], config: CertifyConfigBase, auditor: LoadedPolicy | None, report: VerifyReport
) -> tuple[CertifyConfigBase, list[str], DeviationReport | None]:
    """The config to re-judge against, the blocking deviation ids and the recomputed deviations (None: format 1)."""
    stored = pack_policy(root)
    if stored is None:
        report.notes.append("pack format 1: no policy copy; judged as before, under its own certify.toml alone")
        if auditor is not None:
            report.problems.append(f"policy: the pack carries no policy; it was not judged under {auditor.label()}")
        return config, [], None
    if (run.get("policy") or {}).get("sha256") != stored.sha256:
        report.problems.append(f"changed: {POLICY_COPY} (its sha256 is not the one run.json names)")
    if auditor is not None and auditor.sha256 != stored.sha256:
        report.problems.append(
            f"policy mismatch: the pack was judged under {stored.label()}, not under the given {auditor.label()}"
        )
    used = auditor or stored
    report.notes.append(f"judged under policy {used.label()}")
    deviations, judged = judge(used, config, run_args_of(run))
    recorded = _load_json(root, DEVIATIONS_FILE)
    recorded_ids = {(d.get("id"), d.get("waived_by") is None) for d in recorded.get("deviations", [])}
    now_ids = {(d.id, d.blocking) for d in deviations.deviations}
    if recorded_ids != now_ids or (auditor is None and recorded != deviations.model_dump(mode="json")):
        extra = sorted(f"+{i}" for i, _ in now_ids - recorded_ids) + sorted(f"-{i}" for i, _ in recorded_ids - now_ids)
        report.problems.append(
            f"{DEVIATIONS_FILE}: differs from the deviations recomputed under {used.label()} "
            f"({', '.join(extra) or 'details differ'})"
        )
    return judged, [d.id for d in deviations.blocking], deviations


def _check_verdicts(
    root: Path, manifest: dict[str, Any], run: dict[str, Any], report: VerifyReport, auditor: LoadedPolicy | None
) -> None:
    """Recompute every gate's verdict from the stored evidence, under the pack's (or the auditor's) policy."""
    stored_config = _load_json(root, "config.resolved.json")
    if canonical_digest(stored_config) != run.get("config_digest"):
        report.problems.append("changed: config.resolved.json (digest differs from run.json config_digest)")
    try:
        config = parse_config(stored_config, "config.resolved.json")
    except ConfigError as exc:
        report.problems.append(f"config.resolved.json: {exc.message}")
        return
    config, blocking_ids, deviations = _judged_config(root, run, config, auditor, report)
    na_gates = {r.gate: r.verdict for r in not_applicable_results([], deviations)} if deviations else {}
    judging = auditor or pack_policy(root)
    rules = judging.policy.regression if judging is not None else None
    selected = set(run.get("gates_selected") or ())
    results_doc = _load_json(root, "results.json")
    owners: dict[str, str] = {path: entry.get("gate", "") for path, entry in manifest.get("files", {}).items()}
    results = [GateResult.model_validate(item) for item in results_doc.get("results", [])]
    for result in results:
        report.checked_gates += 1
        gate = implemented(result.gate)
        if result.gate not in selected and result.gate in na_gates:
            expected = na_gates[result.gate]
        elif result.gate not in selected and run.get("format") != RUN_FORMAT_V1:
            expected = not_selected(result.gate)
        elif gate is None:
            expected = not_implemented(result.gate, str(run.get("harness_version")))
        else:
            files = tuple(sorted(path for path, owner in owners.items() if owner == result.gate))
            expected = decide(gate, Evidence(root, result.gate, files), gate.policy_for(config), rules)
        if expected != result.verdict:
            report.problems.append(
                f"verdict of {result.gate} differs: recorded {result.verdict.status.value}, "
                f"recomputed {expected.status.value} ({expected.difference(result.verdict)})"
            )
    complete = run.get("state") == "COMPLETE"
    na_requirements = not_applicable_requirements(deviations) if deviations else None
    matrix = recheck_matrix(
        root, results, manifest, auditor or pack_policy(root), report.problems, not_applicable=na_requirements
    )
    recomputed = overall(
        results, config.certificate.required_gates, str(run.get("mode")), complete, blocking_ids, traceability=matrix
    )
    if recomputed != results_doc.get("overall"):
        report.problems.append("results.json: overall decision differs from the one recomputed from the verdicts")
    deviations_doc = _load_json(root, DEVIATIONS_FILE) if (root / DEVIATIONS_FILE).is_file() else None
    for name, data in (
        ("junit.xml", render_junit(results_doc, run, deviations_doc)),
        (
            "summary.md",
            render_summary(results_doc, run, deviations_doc, index_link=_index_era(root)).encode("utf-8"),
        ),
    ):
        if (root / name).is_file() and (root / name).read_bytes() != data:
            report.problems.append(f"changed: {name} (differs from a re-render of results.json)")


def _index_era(root: Path) -> bool:
    """Whether the pack was written with an index.html: its (hashed) summary.md links one."""
    summary = root / "summary.md"
    return summary.is_file() and INDEX_LINK in summary.read_text(encoding="utf-8", errors="replace")


def _check_rendered(root: Path, report: VerifyReport) -> None:
    """Re-render certificate or merge report and index.html from the pack and compare bytes."""
    digest = hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()
    for name in RENDERED:
        path = root / name
        if path.is_file() and digest not in path.read_text(encoding="utf-8", errors="replace"):
            report.problems.append(f"changed: {MANIFEST} (its sha256 is not the one {name} quotes)")
    expected = render_reports(root, digest)
    if INDEX in expected and not (root / INDEX).is_file() and not _index_era(root):
        report.notes.append(
            f"pack predates {INDEX} (its summary.md links none); `certify report PACK --out DIR` renders one"
        )
        del expected[INDEX]
    for name in RENDERED:
        path = root / name
        if name in expected and not path.is_file():
            report.problems.append(f"missing: {name}")
        elif name in expected and path.read_bytes() != expected[name]:
            report.problems.append(f"changed: {name} (differs from a re-render of the pack)")
        elif name not in expected and path.exists():
            report.problems.append(f"added: {name} (this pack must not carry it)")


def verify_pack(root: Path, auditor: LoadedPolicy | None = None) -> VerifyReport:
    """Check a pack offline, under the auditor's policy if given (else the pack's copy); PackError when not a pack."""
    if not root.is_dir():
        msg = f"{root}: not a directory"
        raise PackError(msg)
    report = VerifyReport()
    manifest = _load_json(root, MANIFEST)
    run = _load_json(root, "run.json")
    _check_files(root, manifest, report)
    if run.get("state") != "COMPLETE":
        report.problems.append(f"run.json: pack is {run.get('state')} (the run was interrupted); it certifies nothing")
    try:
        _check_verdicts(root, manifest, run, report, auditor)
        _check_rendered(root, report)
    except (PackError, ValueError, KeyError, TypeError, ConfigError) as exc:
        report.problems.append(f"cannot re-evaluate: {getattr(exc, 'message', exc)}")
    return report
