"""S7, data at rest: a canary written through the target's API must not be on disk in plaintext.

For each store the target declares (`[gates.PB.at_rest] stores`), the harness makes a random canary
for this run, sends it in the declared write request, reads it back through the API (the read-back
is the proof it was stored), waits `settle_s`, then searches every file under the instance's data
dir (the store's own paths must exist) for the canary's bytes: UTF-8 and UTF-16 (LE and BE). A
hit in a sensitive store's run is a FAIL naming the file. `collect_at_rest` is collect-side;
`judge_at_rest` is pure.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from gates.playbooks.config import AtRestCheck, AtRestStore
from gates.playbooks.observe import call, field

ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be")


def check_name(store: str) -> str:
    """The sub-check of one store, as it appears in the gate's details under `governance`."""
    return f"S7 {store} canary not in plaintext"


def _filled(value: Any, canary: str) -> Any:
    """A request body with every '{canary}' inside its strings replaced."""
    if isinstance(value, str):
        return value.replace("{canary}", canary)
    if isinstance(value, dict):
        return {key: _filled(item, canary) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, canary) for item in value]
    return value


def search(data_dir: Path, canary: str, max_file_bytes: int) -> dict[str, Any]:
    """Every file under the data dir searched for the canary: hits (file, encoding), counts, skipped."""
    needles = {encoding: canary.encode(encoding) for encoding in ENCODINGS}
    hits: list[list[str]] = []
    skipped: list[str] = []
    files = scanned_bytes = 0
    for dirpath, _dirs, names in os.walk(data_dir):
        for name in names:
            path = Path(dirpath) / name
            relative = str(path.relative_to(data_dir))
            try:
                if path.is_symlink() or not path.is_file():
                    continue
                if path.stat().st_size > max_file_bytes:
                    skipped.append(relative)
                    continue
                data = path.read_bytes()
            except OSError:
                skipped.append(relative)  # removed or unreadable while searching
                continue
            files += 1
            scanned_bytes += len(data)
            # One hit per file: a UTF-16-LE hit is also a shifted UTF-16-BE one.
            encoding = next((enc for enc, needle in needles.items() if needle in data), None)
            if encoding is not None:
                hits.append([relative, encoding])
    return {"files": files, "bytes": scanned_bytes, "hits": hits, "skipped": skipped}


def _one_store(port: int, data_dir: Path, store: AtRestStore, check: AtRestCheck) -> dict[str, Any]:
    """Write one canary into one store, read it back, search the files; the raw record."""
    canary = f"certify-canary-{secrets.token_hex(12)}"
    written = call(port, store.write, body=_filled(store.write.body, canary))
    record: dict[str, Any] = {"store": store.name, "canary": canary, "write": written}
    record_id = field(written.get("body"), store.id_field)
    if written["status"] is None or not 200 <= written["status"] < 300 or record_id is None:
        return record
    read = call(port, store.read, {"id": record_id})
    record["read"] = read
    record["read_back"] = canary in str(read.get("body"))
    if not record["read_back"]:
        return record
    time.sleep(check.settle_s)
    record["paths"] = {
        pattern: sorted(str(p.relative_to(data_dir)) for p in data_dir.glob(pattern)) for pattern in store.paths
    }
    record["search"] = search(data_dir, canary, check.max_file_bytes)
    return record


def collect_at_rest(port: int, data_dir: Path, check: AtRestCheck) -> list[dict[str, Any]]:
    """One canary per declared store, written, read back and searched for on disk."""
    return [_one_store(port, data_dir, store, check) for store in check.stores]


def _unproven(record: dict[str, Any]) -> str | None:
    """Why a store's record cannot show where the canary is (None: it was stored and searched)."""
    written = record.get("write") or {}
    if "read" not in record:
        return f"the API did not take the canary: write answered {written.get('status')} {written.get('error') or ''}"
    if not record.get("read_back"):
        return f"the canary was not read back (read answered {record['read'].get('status')}): not shown stored"
    empty = [pattern for pattern, matched in (record.get("paths") or {}).items() if not matched]
    if empty:
        return f"declared store path(s) match no file in the data dir: {', '.join(empty)}"
    if record["search"]["skipped"]:
        return f"not searched (too large or unreadable): {', '.join(record['search']['skipped'][:5])}"
    if not record["search"]["files"]:
        return "no file in the data dir was searched"
    return None


def _judge_store(store: AtRestStore, record: dict[str, Any]) -> tuple[str, str]:
    """The verdict on one store's canary record: a plaintext hit fails even where other files went unsearched."""
    hits = (record.get("search") or {}).get("hits") or []
    if hits:
        where = ", ".join(f"{path} ({encoding})" for path, encoding in hits[:5])
        if not store.sensitive:
            return "PASS", f"in plaintext in {where}; the store is declared not sensitive: {store.reason}"
        return "FAIL", f"the canary is on disk in plaintext: {where}"
    why = _unproven(record)
    if why is not None:
        return "INCONCLUSIVE", why.strip()
    found = record["search"]
    return "PASS", f"canary absent from {found['files']} file(s), {found['bytes']} bytes searched"


def judge_at_rest(
    check: AtRestCheck | None, governance: dict[str, Any], checks: dict[str, str], reasons: list[str]
) -> None:
    """Add one S7 sub-check per declared store from the stored records (pure)."""
    if check is None:
        return
    records = {r.get("store"): r for r in governance.get("at_rest") or [] if isinstance(r, dict)}
    for store in check.stores:
        name = check_name(store.name)
        if store.name not in records:
            checks[name] = "INCONCLUSIVE"
            reasons.append(f"{name}: no canary record ({governance.get('at_rest_error', 'not collected')})")
            continue
        status, why = _judge_store(store, records[store.name])
        checks[name] = status
        if status != "PASS" or not store.sensitive:
            reasons.append(f"{name}: {why}")
