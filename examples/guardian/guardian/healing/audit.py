"""Append-only, hash-chained audit log in the instance database.

Each entry stores the SHA-256 of (previous hash, timestamp, actor, action, detail); editing any
row, or deleting any row but the newest, breaks the chain, which ``verify`` detects. (Truncating
the tail is only detectable against an externally kept head hash, e.g. in an evidence pack.)
This is the storage the governance
layer will write every decision to (including blocked, timed-out and failed actions).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
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


class AuditLog:
    """Write and verify the ``audit_log`` table."""

    def __init__(self, store: Store) -> None:
        """Use ``store``'s connection."""
        self.store = store

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
        """Check the whole chain; return (intact, first broken seq or None)."""
        prev = GENESIS_HASH
        for seq, ts, actor, action, detail, prev_hash, digest in self.store.read(
            "SELECT seq, ts, actor, action, detail, prev_hash, hash FROM audit_log ORDER BY seq"
        ):
            if prev_hash != prev or entry_hash(prev, ts, actor, action, detail) != digest:
                return False, int(seq)
            prev = digest
        return True, None
