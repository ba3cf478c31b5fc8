"""How long rendering index.html takes for a ~30 MB pack: median of 5 of `render_reports`, must be < 3 s.

The pack is the recorded load-ok ci pack (tests/fixtures/packs/load-ok-ci: G2 and G3 with their
latency, error and resource SVG charts) grown to about 30 MB: each of its gates gets 1,000 more
evidence files of 10 kB (so each gate section lists over 1,000 links) and G2's P1 a raw sample CSV
of 600,000 requests (the latency chart parses every one), all hashed into a rewritten manifest.
Then, 5 times: `render_reports(pack, digest)`,
which renders the merge-gate report and index.html as `certify run` and `certify verify` do.

Usage: python benchmarks/report_index.py [--mb 30] [--limit-s 3]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.evidence import MANIFEST, dump_json, sha256_file
from harness.render import render_reports

RECORDED = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "packs" / "load-ok-ci"
RUNS = 5
FILE_BYTES = 10_000


def _grow(root: Path, target_mb: float) -> int:
    """Add evidence files (small ones per gate, one large latency CSV) until the pack is ~target_mb."""
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    # The latency chart parses every raw sample: make P1's raw CSV large (600,000 requests).
    large = root / "gates" / "G2" / "load" / "P1" / "raw.csv.gz"
    lines = ["kind,seq,request,planned_s,sent_s,end_s,status,ok,error,end_by"]
    for i in range(600_000):
        planned = i * 4 / 600_000
        lines.append(
            f"arrival,{i},page,{planned:.6f},{planned:.6f},{planned + (i * 7919) % 5000 / 1e5:.6f},200,1,,socket"
        )
    large.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1))
    added = [large]
    per_gate = max(0, int((target_mb * 1e6 - _size(root)) / FILE_BYTES / 2))
    for gate in ("G2", "G3"):
        folder = root / "gates" / gate / "extra"
        folder.mkdir(parents=True)
        for i in range(per_gate):
            path = folder / f"sample-{i:05d}.json"
            path.write_bytes(os.urandom(FILE_BYTES // 2).hex().encode())
            added.append(path)
    for path in added:
        relpath = path.relative_to(root).as_posix()
        gate = relpath.split("/")[1]
        manifest["files"][relpath] = {"gate": gate, "sha256": sha256_file(path), "size": path.stat().st_size}
    (root / MANIFEST).write_bytes(dump_json(manifest))
    return len(manifest["files"])


def _size(root: Path) -> int:
    """Bytes of every file under root."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> int:
    """Build the pack, time five renders, print the figures; exit 1 when the median is over the limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=30.0)
    parser.add_argument("--limit-s", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="report-index-") as tmp:
        root = Path(shutil.copytree(RECORDED, Path(tmp) / "pack"))
        files = _grow(root, args.mb)
        digest = hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()
        times, size = [], 0
        for _ in range(RUNS):
            start = time.perf_counter()
            index = render_reports(root, digest)["index.html"]
            times.append(time.perf_counter() - start)
            size = len(index)
        median = statistics.median(times)
        print(f"pack: {_size(root) / 1e6:.1f} MB, {files} files in the manifest; index.html {size / 1e3:.0f} kB")
        print(f"render_reports x{RUNS}: " + ", ".join(f"{t:.3f}" for t in times) + f" s; median {median:.3f} s")
        verdict = "PASS" if median < args.limit_s else "FAIL"
        print(f"{verdict}: median {median:.3f} s {'<' if verdict == 'PASS' else '>='} {args.limit_s} s")
    return 0 if median < args.limit_s else 1


if __name__ == "__main__":
    sys.exit(main())
