"""S6, audit trail: the harness recomputes the target's hash-chained audit log with its own code.

The target declares (`[gates.PB] audit_chain`) a read-only query returning, per entry in order,
`seq, prev_hash, hash` and then the material its hash covers, and how each material column is
written: `text` (as stored) or `repr` (Python's repr, for a float timestamp). The harness hashes
`json.dumps([material...])` with SHA-256, as the declared `encoding` says, and checks every link:
the first entry's prev_hash is the genesis value, each next one's is the previous hash, and each
stored hash is the recomputed one. One edited record breaks it at that seq.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gates.playbooks.config import AuditChain

CHECK = "audit chain (recomputed by the harness)"


def _rendered(value: Any, how: str) -> Any:
    """One material column as the target hashed it."""
    return repr(value) if how == "repr" else value


def verify_chain(chain: AuditChain, rows: list[list[Any]]) -> tuple[bool, str]:
    """Whether the rows form an intact chain; the reason names the first broken seq."""
    if not rows:
        return False, "the audit chain query returned no entries: nothing to verify"
    previous = chain.genesis
    for row in rows:
        seq, prev_hash, stored = row[0], row[1], row[2]
        material = row[3:]
        if len(material) != len(chain.material):
            return False, f"seq {seq}: {len(material)} material column(s), the declaration names {len(chain.material)}"
        text = json.dumps([_rendered(value, how) for value, how in zip(material, chain.material, strict=True)])
        recomputed = hashlib.sha256(text.encode()).hexdigest()
        if prev_hash != previous:
            return False, f"seq {seq}: prev_hash {str(prev_hash)[:12]} is not the previous entry's hash {previous[:12]}"
        if stored != recomputed:
            return False, f"seq {seq}: stored hash {str(stored)[:12]} differs from the recomputed {recomputed[:12]}"
        previous = stored
    return True, f"{len(rows)} audit entries recomputed, chain intact"


def judge_chain(chain: AuditChain | None, record: dict[str, Any], checks: dict[str, str], reasons: list[str]) -> None:
    """Add the S6 check to the governance checks from the rows the governance instance left."""
    if chain is None:
        return
    found = record.get("audit_chain") or {}
    if "rows" not in found:
        checks[CHECK] = "INCONCLUSIVE"
        reasons.append(f"audit chain not read: {found.get('error', 'no rows recorded')}")
        return
    intact, why = verify_chain(chain, found["rows"])
    checks[CHECK] = "PASS" if intact else "FAIL"
    if not intact:
        reasons.append(f"audit chain (S6): {why}")
