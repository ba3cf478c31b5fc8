"""Benchmark of G5's history secret scan (S2): blobs/s on a generated repository of >= 10,000 commits.

The repository is written with one `git fast-import` stream: COMMITS commits on main, each changing
one of FILES Python modules of LINES lines (one line rewritten, so every commit adds one new blob
whose changed line no later version keeps), plus a second branch holding one deleted
AWS-key-shaped value the scan must find. The scan is gates/security/history_worker.scan, the same
code G5 runs; it is timed REPEATS times (a fresh LineScanner each time) and the median is reported.
Measured on the 2-core VM (shared): 10,002 commits, 10,001 blobs (30 MB), 14,069 distinct lines
scanned, 2,491-2,809 blobs/s, median 2,704 blobs/s.

Usage: .venv-dev/bin/python benchmarks/secret_history.py [--commits N] [--files N] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gates.security import history_worker

KEY = "AKIA" + "Z3" * 8
#: Lines per module; each commit rewrites one of them, so every old version holds a line the tree lacks.
LINES = 120


def _blob(text: str) -> bytes:
    """A fast-import inline data block."""
    data = text.encode("utf-8")
    return b"data %d\n%s\n" % (len(data), data)


def fast_import_stream(commits: int, files: int) -> bytes:
    """The fast-import stream: `commits` commits on main, each appending a line to one module; a leak branch."""
    parts: list[bytes] = []
    contents = {index: [f'"""Module {index}."""', *(f"VALUE_{k} = 0" for k in range(LINES))] for index in range(files)}
    stamp = 1_700_000_000
    for number in range(commits):
        index = number % files
        slot = 1 + (number // files) % LINES
        contents[index][slot] = f"VALUE_{slot - 1} = {number * 7919 % 100003}  # step {number}"
        parts.append(b"commit refs/heads/main\nmark :%d\n" % (number + 1))
        parts.append(b"committer Bench <bench@example.invalid> %d +0000\n" % (stamp + number))
        parts.append(_blob(f"change {number}"))
        parts.append(b"M 100644 inline pkg/mod_%03d.py\n" % index)
        parts.append(_blob("\n".join(contents[index]) + "\n"))
    leak = stamp + commits
    parts.append(b"commit refs/heads/leak\n")
    parts.append(b"committer Bench <bench@example.invalid> %d +0000\n" % leak)
    parts.append(_blob("add cloud settings") + b"from :%d\nM 100644 inline pkg/cloud.py\n" % commits)
    parts.append(_blob(f'ACCESS_KEY_ID = "{KEY}"\n'))
    parts.append(b"commit refs/heads/leak\n")
    parts.append(b"committer Bench <bench@example.invalid> %d +0000\n" % (leak + 1))
    parts.append(_blob("remove cloud settings") + b"D pkg/cloud.py\n")
    return b"".join(parts)


def build(repo: Path, commits: int, files: int) -> float:
    """Create the repository and check out main; the seconds it took."""
    started = time.monotonic()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    stream = fast_import_stream(commits, files)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=stream, check=True)
    subprocess.run(["git", "checkout", "-q", "main"], cwd=repo, check=True)
    return time.monotonic() - started


def main() -> int:
    """Build the repository, scan it REPEATS times, print per-run and median blobs/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="secret-history-") as scratch:
        repo = Path(scratch) / "repo"
        built_s = build(repo, args.commits, args.files)
        count = subprocess.run(
            ["git", "rev-list", "--all", "--count"], check=True, cwd=repo, capture_output=True, text=True
        )
        print(f"repository: {count.stdout.strip()} commits on 2 refs, built in {built_s:.1f} s with git fast-import")
        rates = []
        for attempt in range(1, args.repeats + 1):
            started = time.monotonic()
            result = history_worker.scan(repo, set())
            elapsed = time.monotonic() - started
            found = [r for r in result["results"] if r["filename"] == "pkg/cloud.py"]
            if len(found) != 1 or not found[0]["commit"]:
                print(f"run {attempt}: the deleted key was not found with its commit: {result['results']}")
                return 1
            rates.append(result["blobs"] / elapsed)
            print(
                f"run {attempt}: {result['blobs']} blobs ({result['bytes'] / 1e6:.1f} MB, {result['in_tree']} in the "
                f"tree), {result['lines_scanned']} distinct lines scanned, {elapsed:.2f} s, "
                f"{rates[-1]:.0f} blobs/s; key found in commit {found[0]['commit'][:12]}"
            )
        print(f"median of {args.repeats}: {statistics.median(rates):.0f} blobs/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
