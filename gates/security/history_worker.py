"""S2 history worker: detect-secrets over every blob reachable from any ref, each blob once by object id.

Run as `python -m gates.security.history_worker REPO_DIR [--exclude PATH]`: it lists the objects of
`git rev-list --all --objects -- .` (limited to the target's directory when it is a subdirectory of
its repository), reads each blob once through one `git cat-file --batch`, scans its lines with the
detect-secrets engine the tree scan uses (default plugins and filters) and prints one JSON document:
blob and byte counts, and per finding its blob id, path, line, type and hash (never the value).
The commit that introduced a finding's blob is looked up afterwards, for findings only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: A blob larger than this is counted as skipped, not read into memory (detect-secrets reads text).
MAX_BLOB_BYTES = 5_000_000
GIT_TIMEOUT_S = 600
INVALID_FILE_FILTER = "detect_secrets.filters.common.is_invalid_file"


def _git(repo: Path, *args: str) -> str:
    """Run git in repo and return its stdout; a failure raises CalledProcessError."""
    run = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=GIT_TIMEOUT_S)
    return run.stdout


def reachable_blobs(repo: Path) -> tuple[str, list[tuple[str, str]]]:
    """The repo-relative prefix of `repo`, and (blob id, path relative to `repo`) of every object once.

    Trees and commits are listed too by rev-list; only entries whose path lies under the prefix are
    kept, and `git cat-file --batch-check` below drops the trees.
    """
    prefix = _git(repo, "rev-parse", "--show-prefix").strip()
    listing = _git(repo, "rev-list", "--all", "--objects", "--", ".")
    seen: dict[str, str] = {}
    for line in listing.splitlines():
        oid, _, path = line.partition(" ")
        if path and path.startswith(prefix) and oid not in seen:
            seen[oid] = path[len(prefix) :]
    return prefix, list(seen.items())


def tree_blobs(repo: Path) -> set[str]:
    """Blob ids of the tracked files under repo whose work-tree copy is unmodified: the tree scan reads those."""
    staged = _git(repo, "ls-files", "-s", "-z").split("\0")
    modified = set(_git(repo, "ls-files", "-m", "-z").split("\0"))
    found = set()
    for entry in filter(None, staged):
        meta, _, path = entry.partition("\t")
        if path not in modified:
            found.add(meta.split()[1])
    return found


def _feed(stdin: IO[bytes], oids: list[str]) -> None:
    """Write the object ids to cat-file's stdin and close it."""
    with stdin:
        for start in range(0, len(oids), 1000):
            stdin.write("".join(f"{oid}\n" for oid in oids[start : start + 1000]).encode("ascii"))


def _read_batch(repo: Path, oids: list[str]) -> Iterator[tuple[str, str, int, bytes | None]]:
    """(oid, type, size, content) for each oid via one cat-file --batch; content None for large or non-blob."""
    with subprocess.Popen(
        ["git", "cat-file", "--batch"], cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None  # noqa: S101 - PIPE given above
        assert proc.stdout is not None  # noqa: S101
        # A writer thread: cat-file answers while it reads, so writing every id first would deadlock on full pipes.
        writer = threading.Thread(target=_feed, args=(proc.stdin, oids), daemon=True)
        writer.start()
        for oid in oids:
            header = proc.stdout.readline().decode("ascii").split()
            if len(header) < 3:  # "<oid> missing"
                yield oid, "missing", 0, None
                continue
            kind, size = header[1], int(header[2])
            data = proc.stdout.read(size)
            proc.stdout.read(1)
            yield oid, kind, size, data if kind == "blob" and size <= MAX_BLOB_BYTES else None
        writer.join()


def scan(repo: Path, exclude: set[str]) -> dict[str, Any]:
    """Scan every reachable blob under repo once; the facts and findings as one JSON-ready dict."""
    from detect_secrets.core import scan as engine  # noqa: PLC0415 - only the worker needs the engine
    from detect_secrets.settings import default_settings  # noqa: PLC0415
    from detect_secrets.util import code_snippet  # noqa: PLC0415

    started = time.monotonic()
    prefix, objects = reachable_blobs(repo)
    paths = dict(objects)
    wanted = [oid for oid, path in objects if path not in exclude]
    in_tree = tree_blobs(repo)
    counts = {"blobs": 0, "bytes": 0, "binary": 0, "too_large": 0, "in_tree": 0, "excluded": len(objects) - len(wanted)}
    findings: list[dict[str, Any]] = []
    with default_settings():
        scanner = LineScanner(engine, code_snippet)
        # Blobs of the current tree first: their lines are the tree scan's, so they are only remembered.
        order = sorted(wanted, key=lambda oid: oid not in in_tree)
        for oid, kind, size, data in _read_batch(repo, order):
            if kind != "blob":
                continue
            counts["blobs"] += 1
            counts["bytes"] += size
            if data is None:
                counts["too_large"] += 1
                continue
            if b"\0" in data[:8000]:
                counts["binary"] += 1
                continue
            text = data.decode("utf-8", errors="replace")
            if oid in in_tree:
                counts["in_tree"] += 1
                scanner.remember(paths[oid], text)
                continue
            findings += scanner.scan_blob(oid, paths[oid], text)
        counts["lines_scanned"] = scanner.lines_scanned
    for finding in findings:
        finding["commit"] = introducing_commit(repo, finding["blob"], prefix + finding["filename"])
    elapsed = time.monotonic() - started
    return {"prefix": prefix, **counts, "elapsed_s": round(elapsed, 3), "results": findings}


class LineScanner:
    """detect-secrets' line-based plugins and filters over blobs, each distinct line scanned once.

    Consecutive versions of a file share almost all their lines, so a line already scanned (same
    text, same previous line, same file suffix: the keyword plugin and the allowlist pragma depend
    on those) is not scanned again; a secret is reported at the first blob it appears in. The loop
    is detect-secrets 1.5's `_process_line_based_plugins`, called on the new lines only, with the
    code snippet still cut from the whole blob.
    """

    def __init__(self, engine: Any, snippets: Any) -> None:
        """Bind to detect_secrets.core.scan and detect_secrets.util.code_snippet (imported by the caller)."""
        self.engine = engine
        self.snippets = snippets
        self.plugins = list(engine.get_plugins())
        self.seen: set[bytes] = set()
        self.lines_scanned = 0

    def _new(self, suffix: str, previous: str, line: str) -> bool:
        """Whether this (suffix, previous line, line) was not scanned before; remembers it."""
        key = hashlib.blake2b(f"{suffix}\0{previous}\0{line}".encode(errors="replace"), digest_size=16).digest()
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def remember(self, path: str, text: str) -> None:
        """Mark a blob's lines as scanned (the tree scan covers the current tree's blobs)."""
        suffix = Path(path).suffix
        previous = ""
        for raw in text.splitlines():
            line = raw.rstrip()
            self._new(suffix, previous, line)
            previous = raw

    def scan_blob(self, oid: str, path: str, text: str) -> list[dict[str, Any]]:
        """Findings (blob, type, path, line, hash) among the blob's not-yet-scanned lines."""
        if _filename_filtered(self.engine, path):
            return []
        engine = self.engine
        content = text.splitlines()
        suffix = Path(path).suffix
        found = []
        for number, raw in enumerate(content, start=1):
            line = raw.rstrip()
            if not self._new(suffix, content[number - 2] if number > 1 else "", line):
                continue
            self.lines_scanned += 1
            snippet = self.snippets.get_code_snippet(lines=content, line_number=number)
            if engine._is_filtered_out(required_filter_parameters=["line"], filename=path, line=line, context=snippet):
                continue
            for plugin in self.plugins:
                for secret in engine._scan_line(
                    plugin=plugin, filename=path, line=line, line_number=number, context=snippet
                ):
                    if engine._is_filtered_out(
                        required_filter_parameters=["context"],
                        filename=path,
                        secret=secret.secret_value,
                        plugin=plugin,
                        line=line,
                        context=snippet,
                    ):
                        continue
                    entry = secret.json()
                    found.append(
                        {
                            "blob": oid,
                            "type": entry["type"],
                            "filename": path,
                            "line_number": number,
                            "hashed_secret": entry["hashed_secret"],
                        }
                    )
        return found


def _filename_filtered(engine: Any, path: str) -> bool:
    """Whether a filename-only filter (lock file, non-text, swagger) skips the path.

    detect-secrets' `is_invalid_file` is left out: it asks whether the path exists on disk, and a
    blob from history usually does not.
    """
    for check in engine.get_filters_with_parameter("filename"):
        if check.path == INVALID_FILE_FILTER or set(check.injectable_variables) != {"filename"}:
            continue
        if check(filename=path):
            return True
    return False


def introducing_commit(repo: Path, blob: str, path: str) -> str | None:
    """The oldest commit on any ref that added this blob at this path (repo-relative), or None."""
    out = _git(repo, "log", "--all", "--reverse", "--format=%H", f"--find-object={blob}", "--", f":(top,literal){path}")
    commits = out.split()
    return commits[0] if commits else None


def main(argv: list[str] | None = None) -> int:
    """Print the scan of REPO_DIR's history as JSON; exit 2 with one line when git fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--exclude", action="append", default=[], help="path (relative to REPO) not scanned")
    args = parser.parse_args(argv)
    try:
        result = scan(args.repo, set(args.exclude))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        stderr = getattr(exc, "stderr", "") or ""
        print(f"history scan: git failed in {args.repo}: {str(stderr).strip() or exc}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
