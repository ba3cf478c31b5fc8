"""The evidence pack on disk: atomic writes, per-gate ownership, and the manifest of hashes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from harness.errors import PackError
from harness.redact import Redactor

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "release-harness-manifest/1"
HARNESS = "harness"
#: Rendered after the manifest (they quote its digest); verify re-renders them instead of hashing.
RENDERED = (
    "production_readiness_certificate.md",
    "production_readiness_certificate.html",
    "merge_gate_report.md",
    "merge_gate_report.html",
    "index.html",
)
#: One signed DSSE envelope per line, written after the manifest and the certificate (it signs both).
ATTESTATIONS = "attestations.intoto.jsonl"


def dump_json(data: Any) -> bytes:
    """Stable JSON bytes for evidence: sorted keys, two-space indent, trailing newline."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so readers see either the old content or the whole new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class EvidencePack:
    """A pack directory being written: every file goes through the redactor and is recorded."""

    def __init__(self, root: Path, redactor: Redactor) -> None:
        """Create the pack directory; refuse to write into a non-empty one."""
        if root.exists() and any(root.iterdir()):
            msg = f"{root}: output directory exists and is not empty"
            raise PackError(msg, hint="choose a new --out directory; packs are never overwritten")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"{root}: cannot create output directory: {exc.strerror}"
            raise PackError(msg) from None
        self.root = root
        self._redactor = redactor
        self._owners: dict[str, str] = {}
        self._lock = threading.Lock()
        self._frozen = False

    def _claim(self, relpath: str, owner: str) -> Path:
        """Check a relative path stays inside the pack and record who wrote it."""
        path = (self.root / relpath).resolve()
        if not path.is_relative_to(self.root.resolve()) or relpath in (MANIFEST, ATTESTATIONS, *RENDERED):
            msg = f"{relpath}: not a writable evidence path"
            raise PackError(msg)
        with self._lock:
            if self._frozen:
                msg = f"{relpath}: the manifest is written; {owner} can no longer add evidence"
                raise PackError(msg)
            previous = self._owners.get(relpath)
            if previous is not None and previous != owner:
                msg = f"{relpath}: already written by {previous}, {owner} cannot overwrite it"
                raise PackError(msg)
            self._owners[relpath] = owner
        return path

    def write_bytes(self, relpath: str, data: bytes, owner: str = HARNESS) -> str:
        """Write a file (scrubbed of secrets) atomically; return its pack-relative path."""
        atomic_write(self._claim(relpath, owner), self._redactor.data(data))
        return relpath

    def write_text(self, relpath: str, text: str, owner: str = HARNESS) -> str:
        """Write a text file."""
        return self.write_bytes(relpath, text.encode("utf-8"), owner)

    def write_json(self, relpath: str, data: Any, owner: str = HARNESS) -> str:
        """Write a JSON file in the pack's stable form."""
        return self.write_bytes(relpath, dump_json(data), owner)

    def copy_file(self, relpath: str, source: Path, owner: str = HARNESS) -> str:
        """Copy a file produced by a tool into the pack."""
        return self.write_bytes(relpath, source.read_bytes(), owner)

    def files_of(self, owner: str) -> tuple[str, ...]:
        """The files one gate (or the harness) wrote, sorted."""
        with self._lock:
            return tuple(sorted(path for path, who in self._owners.items() if who == owner))

    def gate_hashes(self) -> dict[str, str]:
        """The sha256 of every file a gate (not the harness) wrote so far, as the manifest will record it."""
        with self._lock:
            owners = dict(self._owners)
        return {path: sha256_file(self.root / path) for path, who in sorted(owners.items()) if who != HARNESS}

    def write_manifest(self) -> str:
        """Hash every recorded file into manifest.json (written last); return its sha256."""
        with self._lock:
            self._frozen = True
            owners = dict(self._owners)
        files = {}
        for relpath in sorted(owners):
            path = self.root / relpath
            files[relpath] = {"sha256": sha256_file(path), "size": path.stat().st_size, "gate": owners[relpath]}
        data = dump_json({"format": MANIFEST_FORMAT, "files": files})
        atomic_write(self.root / MANIFEST, data)
        return hashlib.sha256(data).hexdigest()

    def write_rendered(self, name: str, data: bytes) -> None:
        """Write a certificate or report rendered after the manifest."""
        if name not in RENDERED:
            msg = f"{name}: not a rendered document"
            raise PackError(msg)
        atomic_write(self.root / name, data)
