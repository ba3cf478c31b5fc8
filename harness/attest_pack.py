"""A pack's attestations: a signed test-result statement per gate and a signed SLSA verification summary.

`sign_pack` runs after the manifest and the certificate (or merge-gate report) are written, since
the summary names both by sha256; `check_pack` holds every statement against the pack as it is
now. Both read the pack's JSON files only, so what is signed is what `certify verify` re-checks.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement
from securesystemslib.signer import CryptoSigner, Key

from harness import __version__
from harness.attestation import AttestationError, SignedStatement, read_envelopes, sign_statement
from harness.errors import PackError
from harness.evidence import ATTESTATIONS, MANIFEST, RENDERED, atomic_write, sha256_file
from harness.runrecord import utc_now

TEST_RESULT = "https://in-toto.io/attestation/test-result/v0.1"
VERIFICATION_SUMMARY = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID = "urn:release-harness:certify"
CONFIG_FILE = "config.resolved.json"
POLICY_FILE = "policy.toml"
DEVIATIONS_FILE = "deviations.json"


@dataclass
class PackAttestation:
    """What checking a pack's attestations found: problems (one line each) and, when sound, what they say."""

    problems: list[str] = field(default_factory=list)
    keyids: tuple[str, ...] = ()
    policy_sha256: str = ""
    verification_result: str = ""
    mode: str = ""
    statements: int = 0


def _json(root: Path, name: str) -> Any:
    """A JSON file of the pack (the caller has already checked the pack reads)."""
    return json.loads((root / name).read_text(encoding="utf-8"))


def _target(run: dict[str, Any]) -> ResourceDescriptor:
    """The target at its commit, as a resource descriptor."""
    target = run.get("target") or {}
    return ResourceDescriptor(
        name=str(target.get("name", "target")),
        uri=f"git+file://{target.get('dir', '')}",
        digest={"gitCommit": str(target.get("commit", "unknown"))},
        annotations={"dirty": bool(target.get("dirty", True)), "version": str(target.get("version", "unknown"))},
    )


def _resource_uri(run: dict[str, Any]) -> str:
    """The target's resourceUri at its commit."""
    target = run.get("target") or {}
    return f"git+file://{target.get('dir', '')}@{target.get('commit', 'unknown')}"


def _file(root: Path, relpath: str, files: dict[str, Any]) -> ResourceDescriptor:
    """A pack file as a resource descriptor, with the sha256 the manifest (or the disk, if unlisted) gives."""
    digest = (files.get(relpath) or {}).get("sha256") or sha256_file(root / relpath)
    return ResourceDescriptor(name=relpath, digest={"sha256": str(digest)})


def _gate_statement(root: Path, result: dict[str, Any], run: dict[str, Any], files: dict[str, Any]) -> Statement:
    """The test-result statement of one gate: its status, checks, configuration and evidence files."""
    verdict = result.get("verdict") or {}
    status = str(verdict.get("status"))
    measurements = verdict.get("measurements") or []
    evidence = sorted(path for path, entry in files.items() if entry.get("gate") == result.get("gate"))
    configuration = [_file(root, CONFIG_FILE, files).pb]
    if POLICY_FILE in files:
        configuration.append(_file(root, POLICY_FILE, files).pb)
    predicate = {
        # Anything short of PASS is FAILED: a consumer must never read INCONCLUSIVE as a warning that passes.
        "result": "PASSED" if status == "PASS" else "FAILED",
        "configuration": [json_format.MessageToDict(rd) for rd in configuration],
        "passedTests": [m["name"] for m in measurements if m.get("passed") is True],
        "failedTests": [m["name"] for m in measurements if m.get("passed") is False],
        "warnedTests": [],
        "gate": str(result.get("gate")),
        "status": status,
        "required": bool(result.get("required")),
        "reasons": [str(reason) for reason in verdict.get("reasons") or []],
    }
    subjects = [_target(run).pb, *(_file(root, path, files).pb for path in evidence)]
    return Statement(subjects, TEST_RESULT, predicate)


def _summary_statement(root: Path, gate_digests: list[tuple[str, str]]) -> Statement:
    """The verification summary: the decision, the policy, the mode, deviations and waivers, and its inputs."""
    run, results = _json(root, "run.json"), _json(root, "results.json")
    policy = run.get("policy") or {}
    deviations = _json(root, DEVIATIONS_FILE).get("deviations", []) if (root / DEVIATIONS_FILE).is_file() else []
    decision = results.get("overall") or {}
    subjects = [_target(run).pb, ResourceDescriptor(name=MANIFEST, digest={"sha256": sha256_file(root / MANIFEST)}).pb]
    subjects += [
        ResourceDescriptor(name=name, digest={"sha256": sha256_file(root / name)}).pb
        for name in RENDERED
        if (root / name).is_file()
    ]
    predicate = {
        "verifier": {"id": VERIFIER_ID, "version": {"release-harness": __version__}},
        "timeVerified": utc_now(),
        "resourceUri": _resource_uri(run),
        "policy": {
            "uri": f"{POLICY_FILE}#{policy.get('name', 'none')}@{policy.get('version', 'none')}",
            "digest": {"sha256": str(policy.get("sha256", ""))},
        },
        "inputAttestations": [
            {"uri": f"{ATTESTATIONS}#gate={gate}", "digest": {"sha256": digest}} for gate, digest in gate_digests
        ],
        # PASSED only for a certified release run: a ci run is never certified, so it can never pass for one.
        "verificationResult": "PASSED" if decision.get("certified") is True else "FAILED",
        "verifiedLevels": [f"RELEASE_HARNESS_{str(run.get('mode')).upper()}_MODE"],
        "mode": str(run.get("mode")),
        "exitCode": str(decision.get("exit_code")),
        "deviations": [
            {"id": str(d.get("id")), "blocking": d.get("waived_by") is None, "what": str(d.get("what"))}
            for d in deviations
        ],
        "waiversHonoured": [
            {"deviation": str(d.get("id")), **d["waived_by"]} for d in deviations if d.get("waived_by")
        ],
    }
    baseline = run.get("baseline")
    if baseline:
        # The pack the judged gates were held to (harness/baseline.py): its run and manifest digest.
        predicate["baseline"] = {
            "uri": str(baseline.get("pack") or baseline.get("spec")),
            "runId": str(baseline.get("run_id") or ""),
            "digest": {"sha256": str(baseline.get("manifest_sha256") or "")},
            "problem": str(baseline.get("problem") or ""),
        }
    return Statement(subjects, VERIFICATION_SUMMARY, predicate)


def sign_pack(root: Path, signer: CryptoSigner) -> str:
    """Write the pack's attestation file (a statement per gate, then the summary) in one rename; its key id."""
    run, files = _json(root, "run.json"), _json(root, MANIFEST).get("files", {})
    lines, digests = [], []
    for result in _json(root, "results.json").get("results", []):
        line = sign_statement(_gate_statement(root, result, run, files), signer)
        lines.append(line)
        payload = json.loads(line)["payload"]
        digests.append((str(result.get("gate")), _payload_sha256(payload)))
    lines.append(sign_statement(_summary_statement(root, digests), signer))
    try:
        atomic_write(root / ATTESTATIONS, ("\n".join(lines) + "\n").encode("utf-8"))
    except OSError as exc:
        msg = f"{root / ATTESTATIONS}: cannot write the signed attestations: {exc.strerror}; the pack is unsigned"
        raise PackError(msg) from None
    return signer.public_key.keyid


def _payload_sha256(payload_b64: str) -> str:
    """The sha256 of an envelope's decoded payload: what inputAttestations name."""
    return hashlib.sha256(base64.b64decode(payload_b64)).hexdigest()


def _as_signed(statement: Statement) -> dict[str, Any]:
    """A statement as its signed payload reads back: protobuf's JSON mapping, through JSON."""
    signed: dict[str, Any] = json.loads(json.dumps(json_format.MessageToDict(statement.pb)))
    return signed


def _differences(expected: Any, signed: Any, path: str = "") -> list[str]:
    """Paths (`predicate.status`) where a signed statement and the one rebuilt from the pack disagree."""
    if isinstance(expected, dict) and isinstance(signed, dict):
        found: list[str] = []
        for key in sorted(set(expected) | set(signed)):
            found += _differences(expected.get(key), signed.get(key), f"{path}.{key}" if path else key)
        return found
    return [] if expected == signed else [path or "(statement)"]


def _subject_problems(where: str, expected: dict[str, Any], signed: dict[str, Any]) -> list[str]:
    """One line per subject whose digest differs between the signed statement and the pack, naming the file."""
    want = {s.get("name"): s.get("digest") for s in expected.get("subject", [])}
    got = {s.get("name"): s.get("digest") for s in signed.get("subject", [])}
    problems = []
    for name in sorted(set(want) | set(got), key=str):
        if name not in got:
            problems.append(f"{where}: does not sign {name}, which the pack has")
        elif name not in want:
            problems.append(f"{where}: signs {name}, which this pack does not have (another run's attestation?)")
        elif want[name] != got[name]:
            problems.append(f"{where}: signs {name} with digest {got[name]}, the pack's is {want[name]}")
    return problems


def _compare(where: str, expected: Statement, signed: SignedStatement, report: PackAttestation) -> None:
    """Hold one signed statement against the one rebuilt from the pack (timeVerified is the signer's own)."""
    want = _as_signed(expected)
    got = signed.statement
    subject_problems = _subject_problems(where, want, got)
    report.problems += subject_problems
    want.pop("subject", None)
    got = {key: value for key, value in got.items() if key != "subject"}
    paths = [p for p in _differences(want, got) if p != "predicate.timeVerified"]
    if paths:
        report.problems.append(f"{where}: the signed statement disagrees with the pack at {', '.join(paths[:6])}")


def _check_gates(root: Path, signed: list[SignedStatement], report: PackAttestation) -> list[tuple[str, str]]:
    """Hold every gate statement against results.json and the manifest; the (gate, payload sha256) pairs."""
    run, files = _json(root, "run.json"), _json(root, MANIFEST).get("files", {})
    gate_statements = [s for s in signed if s.predicate_type == TEST_RESULT]
    by_gate = {str(s.predicate.get("gate")): s for s in gate_statements}
    if len(by_gate) != len(gate_statements):
        report.problems.append(f"{ATTESTATIONS}: more than one statement for a gate")
    for s in signed:
        if s.predicate_type not in (VERIFICATION_SUMMARY, TEST_RESULT):
            report.problems.append(f"{ATTESTATIONS} line {s.line}: unexpected predicateType {s.predicate_type}")
    results = _json(root, "results.json").get("results", [])
    gate_ids = [str(result.get("gate")) for result in results]
    missing, extra = sorted(set(gate_ids) - set(by_gate)), sorted(set(by_gate) - set(gate_ids))
    if missing or extra:
        report.problems.append(
            f"{ATTESTATIONS}: gate statements do not match results.json (unsigned: {', '.join(missing) or '-'}; "
            f"signed but not in the pack: {', '.join(extra) or '-'})"
        )
    for result in results:
        statement = by_gate.get(str(result.get("gate")))
        if statement is not None:
            where = f"{ATTESTATIONS} line {statement.line} (gate {result.get('gate')})"
            _compare(where, _gate_statement(root, result, run, files), statement, report)
    return [(gate, by_gate[gate].payload_sha256) for gate in gate_ids if gate in by_gate]


def check_pack(root: Path, keys: list[Key] | None) -> PackAttestation:
    """Check a pack's attestation file: signatures (against keys; None skips them) and every statement vs the pack."""
    report = PackAttestation()
    try:
        signed = read_envelopes(root / ATTESTATIONS, keys)
    except AttestationError as exc:
        report.problems.append(exc.message)
        return report
    report.statements = len(signed)
    report.keyids = tuple(sorted({keyid for s in signed for keyid in s.keyids}))
    digests = _check_gates(root, signed, report)
    summaries = [s for s in signed if s.predicate_type == VERIFICATION_SUMMARY]
    if len(summaries) != 1:
        report.problems.append(f"{ATTESTATIONS}: {len(summaries)} verification summaries, expected exactly one")
        return report
    summary = summaries[0]
    where = f"{ATTESTATIONS} line {summary.line} (verification summary)"
    _compare(where, _summary_statement(root, digests), summary, report)
    report.policy_sha256 = str((summary.predicate.get("policy") or {}).get("digest", {}).get("sha256", ""))
    report.verification_result = str(summary.predicate.get("verificationResult"))
    report.mode = str(summary.predicate.get("mode"))
    return report
