"""Append-only, hash-chained audit log in the instance database.

Each entry stores the SHA-256 of (previous hash, timestamp, actor, action, detail); editing any
row, or deleting any row but the newest, breaks the chain, which ``verify`` detects. Deleting
the newest rows is detected against the head file ``audit.head`` next to the database (the seq
and hash of the last entry, rewritten inside the same write transaction as each append). The
healer writes every governance decision here (ran, blocked, timed out, failed, rolled back).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardian.store import Store

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    """One audit record."""

    seq: int
    ts: float
    actor: str
    action: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def entry_hash(prev_hash: str, ts: float, actor: str, action: str, detail_json: str) -> str:
    """Compute the chained hash of one entry."""
    material = json.dumps([prev_hash, repr(ts), actor, action, detail_json])
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class AuditReport:
    """Result of verifying the chain and the head."""

    intact: bool
    entries: int
    first_broken_seq: int | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        """Public JSON shape."""
        return dict(self.__dict__)


class AuditLog:
    """Write and verify the ``audit_log`` table."""

    def __init__(self, store: Store) -> None:
        """Use ``store``'s connection."""
        self.store = store
        self.head_path: Path = store.path.parent / "audit.head"

    def _write_head(self, seq: int, digest: str) -> None:
        """Atomically replace the head file (called while holding the write lock)."""
        tmp = self.head_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"seq": seq, "hash": digest}), encoding="ascii")
        tmp.replace(self.head_path)

    def read_head(self) -> dict[str, Any] | None:
        """Return the recorded head, or None if none was ever written."""
        try:
            return dict(json.loads(self.head_path.read_text(encoding="ascii")))
        except FileNotFoundError:
            return None
        except ValueError:
            return {"seq": -1, "hash": "unreadable"}

    def append(self, actor: str, action: str, detail: dict[str, Any]) -> AuditEntry:
        """Append one entry atomically, chained to the last one."""
        detail_json = json.dumps(detail, sort_keys=True)
        now = time.time()
        with self.store.write() as conn:
            row = conn.execute("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            prev = row[0] if row else GENESIS_HASH
            digest = entry_hash(prev, now, actor, action, detail_json)
            cursor = conn.execute(
                "INSERT INTO audit_log(ts, actor, action, detail, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (now, actor, action, detail_json, prev, digest),
            )
            seq = int(cursor.lastrowid or 0)
            self._write_head(seq, digest)
        return AuditEntry(seq, now, actor, action, detail, prev, digest)

    def entries(self) -> list[AuditEntry]:
        """Return all entries in order."""
        return [
            AuditEntry(seq, ts, actor, action, json.loads(detail), prev, digest)
            for seq, ts, actor, action, detail, prev, digest in self.store.read(
                "SELECT seq, ts, actor, action, detail, prev_hash, hash FROM audit_log ORDER BY seq"
            )
        ]

    def verify(self) -> tuple[bool, int | None]:
        """Check the chain and the head; return (intact, first broken seq or None)."""
        report = self.report()
        return report.intact, report.first_broken_seq

    def report(self) -> AuditReport:  # noqa: PLR0911 - one verdict per way the log can break
        """Check every link, then that the newest entry is the one the head file records."""
        intact, broken = self._verify_chain()
        rows = self.store.read("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        count = int(self.store.read("SELECT COUNT(*) FROM audit_log")[0][0])
        if not intact:
            return AuditReport(False, count, broken, f"entry {broken} does not match its chain")
        head = self.read_head()
        if head is None:
            if rows:
                return AuditReport(False, count, int(rows[0][0]), "head file missing")
            return AuditReport(True, 0, None, "empty log")
        last_seq, last_hash = (int(rows[0][0]), rows[0][1]) if rows else (0, GENESIS_HASH)
        head_seq = int(head.get("seq", -1))
        if head_seq > last_seq:
            return AuditReport(
                False, count, last_seq + 1, f"entries after {last_seq} removed (head {head_seq})"
            )
        if head_seq == last_seq and head.get("hash") != last_hash:
            return AuditReport(False, count, last_seq, "newest entry differs from the head")
        if head_seq < last_seq:
            return AuditReport(False, count, head_seq + 1, "entries appended without the head")
        return AuditReport(True, count, None, "chain and head intact")

    def _verify_chain(self) -> tuple[bool, int | None]:
        """Check every link of the chain."""
        prev = GENESIS_HASH
        for seq, ts, actor, action, detail, prev_hash, digest in self.store.read(
            "SELECT seq, ts, actor, action, detail, prev_hash, hash FROM audit_log ORDER BY seq"
        ):
            if prev_hash != prev or entry_hash(prev, ts, actor, action, detail) != digest:
                return False, int(seq)
            prev = digest
        return True, None
