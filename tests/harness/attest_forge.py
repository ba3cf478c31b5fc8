"""A forger with the harness in hand: `python -m tests.harness.attest_forge PACK [KEY]` flips ID to FAIL consistently.

It edits ID's evidence, recomputes the verdict and the decision, re-renders junit, summary and the
certificate and rewrites the manifest, so that an unsigned `certify verify` finds nothing wrong;
given the forger's own private key, it re-signs the result.
Run in a subprocess with the test plugins loaded (tests/harness/packs.py certify_env).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from harness.config import parse_config
from harness.decide import decide, overall
from harness.evidence import atomic_write, dump_json, sha256_file
from harness.gate import Evidence
from harness.model import GateResult
from harness.policy_pack import pack_policy
from harness.registry import implemented
from harness.render import render_junit, render_reports, render_summary
from harness.render_matrix import render_matrix_md
from harness.traceability import MATRIX_JSON, MATRIX_MD, build_matrix, decision_facts, gate_hashes


def _forge_id_verdict(pack: Path) -> None:
    """Edit ID's evidence so it FAILs, then rewrite results, matrix, junit, summary, manifest, certificate to agree."""
    identity = pack / "gates/ID/identity.json"
    data = json.loads(identity.read_text())
    data["versions"]["pyproject.toml:project.version"] = "9.9.9"
    identity.write_bytes(dump_json(data))
    manifest = json.loads((pack / "manifest.json").read_text())
    gate = implemented("ID")
    assert gate is not None
    config = parse_config(json.loads((pack / "config.resolved.json").read_text()), "config.resolved.json")
    files = tuple(sorted(p for p, e in manifest["files"].items() if e["gate"] == "ID"))
    verdict = decide(gate, Evidence(pack, "ID", files), config.policy("ID"))
    results = json.loads((pack / "results.json").read_text())
    results["results"][0]["verdict"] = verdict.model_dump(mode="json")
    parsed = [GateResult.model_validate(r) for r in results["results"]]
    for relpath, entry in manifest["files"].items():
        entry.update(sha256=sha256_file(pack / relpath), size=(pack / relpath).stat().st_size)
    matrix = build_matrix(parsed, gate_hashes(manifest["files"]), pack_policy(pack))
    atomic_write(pack / MATRIX_JSON, dump_json(matrix))
    atomic_write(pack / MATRIX_MD, render_matrix_md(matrix).encode())
    results["overall"] = overall(parsed, ["ID"], "release", True, [], traceability=decision_facts(matrix))
    run = json.loads((pack / "run.json").read_text())
    deviations = json.loads((pack / "deviations.json").read_text())
    atomic_write(pack / "results.json", dump_json(results))
    atomic_write(pack / "junit.xml", render_junit(results, run, deviations))
    atomic_write(pack / "summary.md", render_summary(results, run, deviations).encode())
    for relpath, entry in manifest["files"].items():
        entry.update(sha256=sha256_file(pack / relpath), size=(pack / relpath).stat().st_size)
    manifest_bytes = dump_json(manifest)
    atomic_write(pack / "manifest.json", manifest_bytes)
    for name, rendered in render_reports(pack, hashlib.sha256(manifest_bytes).hexdigest()).items():
        atomic_write(pack / name, rendered)


if __name__ == "__main__":
    _forge_id_verdict(Path(sys.argv[1]))
    if len(sys.argv) > 2:  # the forger's own key: re-sign the forgery
        from harness.attest_pack import sign_pack
        from harness.attestation import load_signer

        sign_pack(Path(sys.argv[1]), load_signer(Path(sys.argv[2])))
