"""A local OSV advisory database served on 127.0.0.1 in the shape pip-audit's `--osv-url` expects.

pip-audit (>= 2.10) POSTs `{"package": {"name", "ecosystem": "PyPI"}, "version"}` to the URL and reads
`{"vulns": [<OSV records>]}` (or `{}`); see pip_audit/_service/osv.py. Matching follows the OSV schema:
a version is affected if it is listed in `affected[].versions`, or falls in an ECOSYSTEM range whose
events open (`introduced`, "0" meaning the beginning) and close (`fixed` exclusive, `last_affected`
inclusive) intervals, compared with packaging.version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from gates.security.advisory_cache import read_fetch_record
from gates.security.cvss import cvss3_base_score

RECORD_SUFFIXES = (".yaml", ".yml", ".json")
SNAPSHOT_FILE = "SNAPSHOT.txt"


def _version(text: object) -> Version | None:
    """A PEP 440 version, or None when the string is not one."""
    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def _sorted_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events ordered by their version, as the OSV schema evaluates them; unparsable ones keep the given order."""
    keyed: list[tuple[Version | None, dict[str, Any]]] = []
    for event in events:
        value = next((str(v) for k, v in event.items() if k in ("introduced", "fixed", "last_affected", "limit")), "")
        if value == "0":
            keyed.append((None, event))
            continue
        parsed = _version(value)
        if parsed is None:
            return events
        keyed.append((parsed, event))
    return [event for _, event in sorted(keyed, key=lambda item: (item[0] is not None, item[0] or Version("0")))]


def in_ranges(version: Version, events: list[dict[str, Any]]) -> bool:
    """Whether `version` falls in the intervals an ECOSYSTEM range's events describe (sorted by version first)."""
    lower: Version | None = None
    is_open = False
    for event in _sorted_events(events):
        if "introduced" in event:
            start = str(event["introduced"])
            lower = None if start == "0" else _version(start)
            is_open = start == "0" or lower is not None
        elif is_open and ("fixed" in event or "last_affected" in event):
            upper = _version(event.get("fixed", event.get("last_affected")))
            inclusive = "last_affected" in event
            above = lower is None or version >= lower
            if upper is not None and above and (version < upper or (inclusive and version == upper)):
                return True
            is_open = False
    return is_open and (lower is None or version >= lower)


def affects(record: dict[str, Any], name: str, version: str) -> bool:
    """Whether an OSV record covers this PyPI package version (withdrawn records never do)."""
    if record.get("withdrawn"):
        return False
    wanted = canonicalize_name(name)
    parsed = _version(version)
    for affected in record.get("affected") or []:
        package = affected.get("package") or {}
        if package.get("ecosystem") != "PyPI" or canonicalize_name(str(package.get("name", ""))) != wanted:
            continue
        listed = [str(v) for v in affected.get("versions") or []]
        if version in listed or (parsed is not None and any(_version(v) == parsed for v in listed)):
            return True
        if parsed is None:
            continue
        for spans in affected.get("ranges") or []:
            if spans.get("type") == "ECOSYSTEM" and in_ranges(parsed, list(spans.get("events") or [])):
                return True
    return False


def record_score(record: dict[str, Any]) -> tuple[float | None, str | None]:
    """The highest CVSS v3 base score among a record's `severity` entries, with its vector."""
    best: tuple[float | None, str | None] = (None, None)
    for item in record.get("severity") or []:
        vector = str(item.get("score", ""))
        score = cvss3_base_score(vector) if item.get("type") == "CVSS_V3" else None
        if score is not None and (best[0] is None or score > best[0]):
            best = (score, vector)
    return best


def _jsonable(value: Any) -> Any:
    """YAML timestamps as RFC 3339 strings (pip-audit parses `published` with a fixed format)."""
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return stamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _load(path: Path) -> dict[str, Any] | None:
    """One OSV record file (YAML or JSON), or None if it is not a record."""
    text = path.read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    if not isinstance(data, dict) or "id" not in data:
        return None
    return dict(_jsonable(data))


@dataclass
class AdvisoryDatabase:
    """Every OSV record under a directory, indexed by canonical PyPI package name."""

    root: Path
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: int = 0
    digest: str = ""
    newest_modified: str | None = None

    @classmethod
    def load(cls, root: Path) -> AdvisoryDatabase:
        """Read every record file below root (SNAPSHOT.txt, README and LICENSE are not records)."""
        db = cls(root=root)
        sha = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts):
            sha.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
            record = _load(path) if path.suffix in RECORD_SUFFIXES else None
            if record is None:
                continue
            db.files += 1
            modified = str(record.get("modified") or "")
            if modified and (db.newest_modified is None or modified > db.newest_modified):
                db.newest_modified = modified
            names = {
                canonicalize_name(str((a.get("package") or {}).get("name", "")))
                for a in record.get("affected") or []
                if (a.get("package") or {}).get("ecosystem") == "PyPI"
            }
            for name in names:
                db.records.setdefault(name, []).append(record)
        db.digest = sha.hexdigest()
        return db

    def query(self, name: str, version: str) -> list[dict[str, Any]]:
        """The records affecting this package version, package names canonicalised for pip-audit."""
        wanted = canonicalize_name(name)
        hits = []
        for record in self.records.get(wanted, []):
            if affects(record, name, version):
                served = dict(record)
                served["affected"] = [
                    {**a, "package": {**(a.get("package") or {}), "name": canonicalize_name(str(a["package"]["name"]))}}
                    if isinstance(a.get("package"), dict) and "name" in a["package"]
                    else a
                    for a in record.get("affected") or []
                ]
                hits.append(served)
        return hits

    def describe(self) -> dict[str, Any]:
        """What the evidence records about the database: where, how big, which snapshot, which date."""
        snapshot = self.root / SNAPSHOT_FILE
        text = snapshot.read_text(encoding="utf-8", errors="replace") if snapshot.is_file() else ""
        commit = re.search(r"\b[0-9a-f]{40}\b", text)
        date = re.search(r"\b(\d{4}-\d{2}-\d{2})\b", text)
        if date:
            when, source = date.group(1), f"{SNAPSHOT_FILE}"
        elif self.newest_modified:
            when, source = self.newest_modified[:10], "newest `modified` among the records"
        else:
            when, source = None, "no date found"
        fetched = read_fetch_record(self.root)
        return {
            "fetched_from": fetched.get("url") if fetched else None,
            "fetched_at": fetched.get("fetched_at") if fetched else None,
            "path": str(self.root),
            "records": self.files,
            "packages": len(self.records),
            "sha256": self.digest,
            "snapshot": text.strip()[:600],
            "commit": commit.group(0) if commit else None,
            "date": when,
            "date_source": source,
            "newest_modified": self.newest_modified,
        }


@dataclass
class QueryLog:
    """Every query the local service answered, kept as evidence of what pip-audit asked."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: dict[str, Any]) -> None:
        """Record one answered (or refused) query."""
        with self.lock:
            self.entries.append(entry)


def _handler(db: AdvisoryDatabase, log: QueryLog) -> type[BaseHTTPRequestHandler]:
    """A request handler class answering POST /v1/query from db."""

    class OsvQueryHandler(BaseHTTPRequestHandler):
        """Answers OSV v1 queries for PyPI packages; everything else is 404."""

        def do_POST(self) -> None:
            """Match one package version against the database."""
            length = int(self.headers.get("Content-Length") or 0)
            try:
                query = json.loads(self.rfile.read(length) or b"{}")
                package = query["package"]
                name, version, ecosystem = str(package["name"]), str(query["version"]), package.get("ecosystem")
            except (ValueError, KeyError, TypeError):
                self._reply(400, {"error": "expected {package: {name, ecosystem}, version}"})
                log.add({"error": "malformed query"})
                return
            if self.path.split("?")[0] != "/v1/query" or ecosystem != "PyPI":
                self._reply(404, {"error": "only POST /v1/query for the PyPI ecosystem"})
                log.add({"name": name, "version": version, "error": f"unsupported {self.path} {ecosystem}"})
                return
            hits = db.query(name, version)
            log.add(
                {
                    "name": name,
                    "version": version,
                    "vulns": [
                        {"id": r["id"], "aliases": list(r.get("aliases") or []), "cvss3": record_score(r)[1]}
                        for r in hits
                    ],
                }
            )
            self._reply(200, {"vulns": hits} if hits else {})

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            """Send a JSON response."""
            data = json.dumps(body).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the query log is the record."""
            del format, args

    return OsvQueryHandler


@contextmanager
def serve(db: AdvisoryDatabase, log: QueryLog) -> Iterator[str]:
    """Serve db on a free 127.0.0.1 port for the duration of the block; yields the query URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(db, log))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="g5-osv", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
