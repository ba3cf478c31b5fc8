"""`certify advisory-db update` (gates/security/advisory_cache.py) and G5 auditing against the cached copy."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gates.security import advisory_cache, osv, vulns
from gates.security.policy import SecurityPolicy
from harness.errors import FetchError
from harness.model import Status
from tests.conftest import FIXTURE_TARGETS, DictView, certify, commit_all, copy_target

#: A few advisories of the 2024-10-10 PyPA advisory database snapshot (/work/shared/advisory-db), in YAML.
SUBSET = FIXTURE_TARGETS / "sec-advisory-db"
CONTEXT = {"run_date": "2026-11-21", "target_project": "svc", "dependency_file": "pyproject.toml"}


def osv_zip(records: list[dict[str, Any]] | None = None) -> bytes:
    """A zip shaped like OSV's PyPI all.zip (flat <ID>.json members), by default of the fixture subset."""
    if records is None:
        loaded = (osv._load(path) for path in sorted(SUBSET.rglob("*.yaml")))
        records = [record for record in loaded if record]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for record in records:
            zipped.writestr(f"{record['id']}.json", json.dumps(record))
    return buffer.getvalue()


def corrupt_zip() -> bytes:
    """The fixture zip with bytes of its first member's compressed data flipped (the directory is intact)."""
    data = bytearray(osv_zip())
    for offset in range(60, 90):
        data[offset] ^= 0xFF
    return bytes(data)


def newest_modified() -> str:
    """The newest `modified` among the fixture subset's advisories."""
    return max(str(r["modified"]) for r in (osv._load(p) for p in SUBSET.rglob("*.yaml")) if r)


class Served:
    """Bodies served by path from a ThreadingHTTPServer on 127.0.0.1."""

    def __init__(self) -> None:
        """Start the server on a free port."""
        self.bodies: dict[str, bytes] = {}
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            """GET answers the body registered for the path, else 404."""

            def do_GET(self) -> None:
                """Serve one body."""
                body = bodies.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        """The URL of a path on this server."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def served() -> Iterator[Served]:
    """An HTTP server on 127.0.0.1 for the test, stopped after it."""
    server = Served()
    try:
        yield server
    finally:
        server.stop()


def closed_port_url() -> str:
    """A 127.0.0.1 URL nothing listens on (a port the kernel just handed out, then closed)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/PyPI/all.zip"


def test_update_fetches_verifies_and_records_its_date(tmp_path: Path, served: Served) -> None:
    """The CLI fetches the zip from 127.0.0.1, unpacks it as `current`, records URL, fetch time, newest modified."""
    served.bodies["/PyPI/all.zip"] = osv_zip()
    cache = tmp_path / "advisory-db"
    proc = certify("advisory-db", "update", "--url", served.url("/PyPI/all.zip"), "--cache-dir", cache)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    assert proc.stdout.startswith("advisory database updated: ")
    copy = advisory_cache.current_copy(cache)
    assert copy is not None
    assert (cache / "current").is_symlink()
    assert copy.parent == cache.resolve()
    record = advisory_cache.read_fetch_record(copy)
    assert record is not None
    assert record["url"] == served.url("/PyPI/all.zip")
    assert record["newest_modified"] == newest_modified()
    assert record["fetched_at"].endswith("Z")
    assert record["advisories"] == record["pypi_advisories"] == len(list(SUBSET.rglob("*.yaml")))
    database = osv.AdvisoryDatabase.load(copy)
    assert {"PYSEC-2021-59", "PYSEC-2023-192"} <= {r["id"] for r in database.query("urllib3", "1.26.0")}
    described = database.describe()
    assert described["date"] == newest_modified()[:10]
    assert described["fetched_from"] == record["url"]
    assert not list(cache.glob(".incoming-*"))


def test_unreachable_url_prints_one_line_and_exits_5(tmp_path: Path) -> None:
    """Offline, the update names the URL it could not reach and the advisory_db alternative, exits 5, no traceback."""
    url = closed_port_url()
    proc = certify("advisory-db", "update", "--url", url, "--cache-dir", tmp_path / "cache")
    assert proc.returncode == 5
    assert "Traceback" not in proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line == (
        f"certify: error: could not reach {url} (the connection was refused); "
        "set `[gates.G5] advisory_db` to a local copy of the PyPA advisory database instead"
    )
    assert advisory_cache.current_copy(tmp_path / "cache") is None


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (corrupt_zip(), "corrupt"),
        (b"<html>captive portal</html>", "not a zip archive"),
        (
            osv_zip(
                [{"id": "NPM-1", "modified": "2026-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "npm"}}]}]
            ),
            "PyPI",
        ),
    ],
    ids=["corrupt-zip", "not-a-zip", "no-pypi-advisory"],
)
def test_unusable_download_leaves_the_previous_copy_intact(
    tmp_path: Path, served: Served, body: bytes, why: str
) -> None:
    """A truncated zip, a non-zip or a zip without PyPI advisories is refused; `current` still names the first copy."""
    cache = tmp_path / "cache"
    served.bodies["/good.zip"] = osv_zip()
    first = advisory_cache.update(served.url("/good.zip"), cache)
    before = (first.path / advisory_cache.FETCH_RECORD).read_text(encoding="utf-8")
    served.bodies["/bad.zip"] = body
    with pytest.raises(FetchError, match=why) as raised:
        advisory_cache.update(served.url("/bad.zip"), cache)
    assert "the previous copy is unchanged" in raised.value.message
    assert advisory_cache.current_copy(cache) == first.path
    assert (first.path / advisory_cache.FETCH_RECORD).read_text(encoding="utf-8") == before
    assert len(list(first.path.glob("*.json"))) == first.advisories + 1
    assert not list(cache.glob(".incoming-*"))
    assert [p.name for p in cache.glob("copy-*")] == [first.path.name]


def test_corrupt_zip_through_the_cli_exits_5_with_one_line(tmp_path: Path, served: Served) -> None:
    """The CLI reports a corrupt download in one line with exit code 5, no traceback."""
    served.bodies["/all.zip"] = corrupt_zip()
    proc = certify("advisory-db", "update", "--url", served.url("/all.zip"), "--cache-dir", tmp_path / "cache")
    assert proc.returncode == 5
    assert "Traceback" not in proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "did not give a usable advisory database: the archive is corrupt" in line


def test_g5_uses_the_cached_copy_when_advisory_db_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no advisory_db, collect's database is the cache's current copy; a configured advisory_db wins."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert vulns.local_database(tmp_path, SecurityPolicy()) is None
    archive = tmp_path / "all.zip"
    archive.write_bytes(osv_zip())
    copy = advisory_cache.update(archive.as_uri())
    assert copy.path.parent == tmp_path / "xdg" / "release-harness" / "advisory-db"
    assert vulns.local_database(tmp_path, SecurityPolicy()) == (copy.path, "cache")
    assert vulns.local_database(tmp_path, SecurityPolicy(advisory_db="db")) == (tmp_path / "db", "advisory_db")


def cached_evidence(date: str) -> DictView:
    """Evidence of a clean audit against the cached copy dated `date`."""
    database = {
        "path": "/cache/advisory-db/copy-20261120T101500Z",
        "source": "cache",
        "records": 12,
        "date": date,
        "date_source": "newest `modified` among the records",
        "fetched_at": "2026-11-20T10:15:00Z",
        "fetched_from": advisory_cache.DEFAULT_URL,
    }
    return DictView(
        {
            vulns.DATABASE: database,
            vulns.RUN: {"returncode": 0, "timed_out": False, "cancelled": False, "stderr_tail": ""},
            vulns.REPORT: {"dependencies": [{"name": "pip", "version": "1", "vulns": []}], "fixes": []},
            "inventory.json": {"distributions": [{"name": "pip", "version": "1"}]},
        }
    )


def test_audit_against_a_fresh_cached_copy_names_it_and_its_date() -> None:
    """A clean audit against a fresh cached copy PASSes and its summary and facts name the copy, its date and fetch."""
    result = vulns.assess(cached_evidence("2026-11-19"), SecurityPolicy(), CONTEXT)
    assert result.status is Status.PASS, result.reasons
    assert "the cached advisory database copy /cache/advisory-db/copy-20261120T101500Z" in result.summary
    assert "(fetched 2026-11-20T10:15:00Z from https://osv-vulnerabilities" in result.summary
    assert "/PyPI/all.zip), dated 2026-11-19; 0 known vulnerabilities" in result.summary
    assert result.facts["advisory_db"]["source"] == "cache"
    assert result.facts["advisory_db"]["age_days"] == 2


def test_out_of_date_cached_copy_is_inconclusive_and_says_how_to_refresh() -> None:
    """A cached copy older than max_advisory_age_days is INCONCLUSIVE, naming copy, date and the update command."""
    result = vulns.assess(cached_evidence("2026-09-01"), SecurityPolicy(), CONTEXT)
    assert result.status is Status.INCONCLUSIVE
    (reason,) = result.reasons
    assert reason.startswith(
        "the cached advisory database copy /cache/advisory-db/copy-20261120T101500Z (fetched 2026-11-20"
    )
    assert "is dated 2026-09-01" in reason
    assert "81 days old on 2026-11-21, older than max_advisory_age_days=30" in reason
    assert reason.endswith("run `certify advisory-db update` to refresh it")


@pytest.mark.integration
def test_g5_run_audits_against_the_cached_copy(tmp_path: Path, served: Served) -> None:
    """A real G5 run with no advisory_db audits against the copy `advisory-db update` put in XDG_CACHE_HOME."""
    served.bodies["/all.zip"] = osv_zip()
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    update = certify("advisory-db", "update", "--url", served.url("/all.zip"), env=env)
    assert update.returncode == 0, update.stderr
    target = copy_target(tmp_path, "sec-clean")
    config = target / "certify.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("[gates.G5]\n", "[gates.G5]\nmax_advisory_age_days = 100000\n"),
        encoding="utf-8",
    )
    commit_all(target, "G5 accepts the old fixture advisories")
    out = tmp_path / "pack"
    venvs = tmp_path / "venvs"
    proc = certify("run", "--target", target, "--gates", "G5", "--out", out, "--cache-dir", venvs, env=env)
    assert "Traceback" not in proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"]
    (result,) = [r for r in results if r["gate"] == "G5"]
    facts = result["verdict"]["details"]["facts"]["known vulnerabilities (pip-audit)"]
    copy = advisory_cache.current_copy(tmp_path / "xdg" / "release-harness" / "advisory-db")
    assert facts["advisory_db"]["source"] == "cache"
    assert facts["advisory_db"]["path"] == str(copy)
    assert facts["advisory_db"]["date"] == newest_modified()[:10]
    assert facts["audited"] >= 2
    assert certify("verify", out).returncode == 0
