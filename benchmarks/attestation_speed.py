"""What signing and checking attestations add to a 30 MB pack: median of 5 of sign_pack and check_pack.

A synthetic pack (10 gates x 30 evidence files of 100 kB of random bytes, a manifest hashing them,
run.json, results.json, deviations.json and a certificate) is written to a temporary directory;
then, 5 times each: `sign_pack` (what `certify run --sign-key` adds after the certificate) and
`check_pack` with the trusted key (what `certify verify --key` adds after the hash and verdict
checks). For scale it also times re-hashing every file, the manifest check `certify verify`
already did before signatures existed.

Usage: python benchmarks/attestation_speed.py [--mb 30]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner

from harness.attest_pack import check_pack, sign_pack
from harness.evidence import dump_json, sha256_file

GATES = ("ID", "G1", "G2", "G3", "G4", "G5", "G6", "G7", "G8", "PB")
RUNS = 5


def _result(gate: str) -> dict:
    """A PASS result with a handful of measurements, as results.json holds it."""
    measurements = [
        {"name": f"{gate}-check-{i}", "value": 1.0, "unit": "s", "threshold": 2.0, "comparator": "<=", "passed": True}
        for i in range(8)
    ]
    return {
        "gate": gate,
        "title": f"gate {gate}",
        "requirements": ["R1"],
        "required": True,
        "verdict": {"status": "PASS", "reasons": [f"{gate} passed"], "measurements": measurements, "details": {}},
        "duration_s": 1.0,
        "evidence": [],
    }


def make_pack(root: Path, total_mb: int) -> None:
    """Write the synthetic pack: evidence files, their manifest, run/results/deviations and a certificate."""
    per_file = 100 * 1024
    count = total_mb * 1024 * 1024 // per_file
    files = {}
    for n in range(count):
        gate = GATES[n % len(GATES)]
        relpath = f"gates/{gate}/evidence-{n:04d}.bin"
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(os.urandom(per_file))
        files[relpath] = {"sha256": sha256_file(root / relpath), "size": per_file, "gate": gate}
    policy = {"name": "standard", "version": "2", "sha256": "0" * 64, "source": "standard", "file": "policy.toml"}
    documents = {
        "run.json": {
            "mode": "release",
            "policy": policy,
            "target": {"name": "synthetic", "dir": "/srv/synthetic", "commit": "a" * 40, "dirty": False},
        },
        "results.json": {"results": [_result(g) for g in GATES], "overall": {"exit_code": 0, "certified": True}},
        "deviations.json": {"deviations": []},
        "config.resolved.json": {"target": {"name": "synthetic"}},
    }
    for name, doc in documents.items():
        (root / name).write_bytes(dump_json(doc))
        files[name] = {"sha256": sha256_file(root / name), "size": (root / name).stat().st_size, "gate": "harness"}
    (root / "manifest.json").write_bytes(dump_json({"format": "release-harness-manifest/1", "files": files}))
    (root / "production_readiness_certificate.md").write_text("# CERTIFIED\n" * 200)


def median_s(action: Callable[[], object]) -> float:
    """Median wall time of RUNS calls."""
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def import_cost_s() -> float:
    """Median extra start-up time of a process importing the attestation modules over one importing verify."""

    def started(module: str) -> Callable[[], object]:
        return lambda: subprocess.run([sys.executable, "-c", f"import {module}"], check=True)

    return median_s(started("harness.verify, harness.attest_pack")) - median_s(started("harness.verify"))


def main(argv: list[str] | None = None) -> int:
    """Build the pack, time signing, checking and (for scale) re-hashing, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=30, help="size of the synthetic pack's evidence (default 30)")
    args = parser.parse_args(argv)
    signer = CryptoSigner(Ed25519PrivateKey.generate())
    with tempfile.TemporaryDirectory(prefix="attest-bench-") as scratch:
        root = Path(scratch)
        make_pack(root, args.mb)
        size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
        files = sum(1 for p in root.rglob("*") if p.is_file())
        sign = median_s(lambda: sign_pack(root, signer))
        found = check_pack(root, [signer.public_key])
        if found.problems:
            print("check_pack found problems:", *found.problems, sep="\n  ", file=sys.stderr)
            return 1
        check = median_s(lambda: check_pack(root, [signer.public_key]))
        rehash = median_s(lambda: [hashlib.sha256(p.read_bytes()) for p in root.rglob("*.bin")])
    print(f"pack: {size_mb:.1f} MB in {files} files, {len(GATES)} gates; median of {RUNS} runs each")
    print(f"sign_pack (certify run --sign-key adds):   {sign:.3f} s")
    print(f"check_pack (certify verify --key adds):    {check:.3f} s")
    print(f"signing + checking together:               {sign + check:.3f} s (target: under 2 s)")
    print(f"importing securesystemslib/protobuf/in-toto: {import_cost_s():.3f} s once per certify process")
    print(f"for scale, re-hashing every evidence file: {rehash:.3f} s (verify did this before signatures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
