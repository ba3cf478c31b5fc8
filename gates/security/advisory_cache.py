"""`certify advisory-db update`: a local copy of the PyPA advisory database (OSV JSON, PyPI) in the harness cache.

The default source is OSV's PyPI export (`all.zip`: one `<ID>.json` OSV record per advisory, PYSEC and
GHSA). Layout under the cache directory (default `~/.cache/release-harness/advisory-db`, under
`$XDG_CACHE_HOME` when set), one complete copy at a time:

    current -> copy-<UTC stamp>    symlink, replaced atomically once a new copy is complete
    copy-<UTC stamp>/<ID>.json     the advisories, as osv.AdvisoryDatabase loads any directory of records
    copy-<UTC stamp>/fetched.json  where and when it was fetched, and the newest `modified` of its advisories
    .incoming-*/                   an update in progress (a left-over one is removed by the next update)

Nothing replaces `current` before the download is a verified zip of OSV JSON with at least one PyPI
advisory and has been unpacked, so a failed or interrupted update leaves the previous copy in use.
G5 uses `current` when `[gates.G5] advisory_db` is unset.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from harness import __version__
from harness.errors import FetchError, UsageError

DEFAULT_URL = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
FETCH_RECORD = "fetched.json"
CURRENT = "current"
FORMAT = "release-harness-advisory-db/1"
FETCH_TIMEOUT_S = 60.0
#: Unpacked size above which an archive is refused (OSV's PyPI export unpacks to a few hundred MB).
MAX_UNPACKED_BYTES = 4 * 2**30
SCHEMES = ("https", "http", "file")
ALTERNATIVE = "set `[gates.G5] advisory_db` to a local copy of the PyPA advisory database instead"


def default_cache_dir() -> Path:
    """~/.cache/release-harness/advisory-db ($XDG_CACHE_HOME honoured), beside the CLI's venv cache."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "release-harness" / "advisory-db"


def current_copy(cache_dir: Path | None = None) -> Path | None:
    """The directory of the copy in use (`current` resolved), or None when no update has completed."""
    link = (cache_dir or default_cache_dir()) / CURRENT
    if not link.exists():
        return None
    copy = link.resolve()
    return copy if (copy / FETCH_RECORD).is_file() else None


def read_fetch_record(copy: Path) -> dict[str, Any] | None:
    """The fetched.json of a copy made by `update`, or None for any other directory."""
    try:
        record = json.loads((copy / FETCH_RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


@dataclass(frozen=True)
class UpdatedCopy:
    """What one successful update put in place."""

    path: Path
    url: str
    fetched_at: str
    advisories: int
    pypi_advisories: int
    newest_modified: str | None


def _network_why(reason: object) -> str:
    """Why a URL could not be reached, in a few words."""
    if isinstance(reason, socket.gaierror):
        return "its host name did not resolve"
    if isinstance(reason, TimeoutError):
        return "the connection timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror).lower()
    return str(reason) or type(reason).__name__


def download(url: str, dest: Path, timeout_s: float) -> str:
    """Stream url into dest; the sha256 of what arrived. FetchError when it cannot be fetched."""
    request = urllib.request.Request(url, headers={"User-Agent": f"release-harness/{__version__}"})  # noqa: S310 - scheme checked
    sha = hashlib.sha256()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response, dest.open("wb") as out:  # noqa: S310
            while chunk := response.read(1 << 20):
                sha.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        msg = f"{url} answered HTTP {exc.code} {exc.reason}; the previous copy is unchanged; {ALTERNATIVE}"
        raise FetchError(msg) from None
    except urllib.error.URLError as exc:
        msg = f"could not reach {url} ({_network_why(exc.reason)}); {ALTERNATIVE}"
        raise FetchError(msg) from None
    except (TimeoutError, OSError) as exc:
        msg = f"could not fetch {url} ({_network_why(exc)}); the previous copy is unchanged; {ALTERNATIVE}"
        raise FetchError(msg) from None
    return sha.hexdigest()


def _is_pypi(record: dict[str, Any]) -> bool:
    """Whether an OSV record names a PyPI package."""
    return any(
        isinstance(a, dict) and isinstance(a.get("package"), dict) and a["package"].get("ecosystem") == "PyPI"
        for a in record.get("affected") or []
    )


def unpack(archive: Path, dest: Path, url: str) -> tuple[int, int, str | None]:
    """Check every member of archive is an OSV JSON record and write them into dest.

    Returns (advisories, PyPI advisories, newest `modified`). FetchError when the archive is not a
    zip, is corrupt, holds anything but OSV JSON records, or names no PyPI package.
    """

    def refuse(why: str) -> FetchError:
        return FetchError(f"{url} did not give a usable advisory database: {why}; the previous copy is unchanged")

    if not zipfile.is_zipfile(archive):
        raise refuse("the download is not a zip archive")
    dest.mkdir()
    advisories = pypi = 0
    newest: str | None = None
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                raise refuse(f"it would unpack to more than {MAX_UNPACKED_BYTES} bytes")
            for member in members:
                name = PurePosixPath(member.filename).name
                if not name.endswith(".json") or name.startswith(".") or (dest / name).exists():
                    raise refuse(f"member {member.filename!r} is not a distinct OSV JSON record file")
                data = zipped.read(member)
                record = json.loads(data)
                if not isinstance(record, dict) or not record.get("id") or not record.get("modified"):
                    raise refuse(f"member {member.filename!r} is not an OSV record (no id or modified)")
                (dest / name).write_bytes(data)
                advisories += 1
                pypi += _is_pypi(record)
                modified = str(record["modified"])
                newest = modified if newest is None or modified > newest else newest
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise refuse(f"the archive is corrupt ({exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise refuse(f"a member is not JSON ({exc})") from None
    if pypi == 0:
        raise refuse(f"none of its {advisories} records is a PyPI advisory")
    return advisories, pypi, newest


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """Hold the cache's update lock for the block; FetchError if another update holds it."""
    with (cache_dir / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = f"another `certify advisory-db update` is running on {cache_dir}; try again when it has finished"
            raise FetchError(msg) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _switch(cache_dir: Path, copy: Path) -> None:
    """Point `current` at copy in one rename, then remove every other copy."""
    link = cache_dir / f".{CURRENT}.new"
    link.unlink(missing_ok=True)
    link.symlink_to(copy.name)
    link.replace(cache_dir / CURRENT)
    for old in cache_dir.glob("copy-*"):
        if old != copy:
            shutil.rmtree(old, ignore_errors=True)


def update(url: str = DEFAULT_URL, cache_dir: Path | None = None, timeout_s: float = FETCH_TIMEOUT_S) -> UpdatedCopy:
    """Fetch, verify and unpack the advisory database, then make it the cache's current copy."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in SCHEMES:
        msg = f"--url {url}: expected an https, http or file URL"
        raise UsageError(msg)
    cache_dir = (cache_dir or default_cache_dir()).expanduser().resolve()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"--cache-dir {cache_dir}: cannot be created ({exc.strerror})"
        raise UsageError(msg) from None
    with _locked(cache_dir):
        for stale in cache_dir.glob(".incoming-*"):
            shutil.rmtree(stale, ignore_errors=True)
        incoming = Path(tempfile.mkdtemp(prefix=".incoming-", dir=cache_dir))
        try:
            sha256 = download(url, incoming / "all.zip", timeout_s)
            fetched_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            advisories, pypi, newest = unpack(incoming / "all.zip", incoming / "copy", url)
            record = {
                "format": FORMAT,
                "url": url,
                "fetched_at": fetched_at,
                "advisories": advisories,
                "pypi_advisories": pypi,
                "newest_modified": newest,
                "zip_sha256": sha256,
            }
            (incoming / "copy" / FETCH_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            copy = cache_dir / f"copy-{fetched_at.replace('-', '').replace(':', '')}"
            copy = copy if not copy.exists() else Path(tempfile.mkdtemp(prefix=f"{copy.name}-", dir=cache_dir))
            (incoming / "copy").replace(copy)
            _switch(cache_dir, copy)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
    return UpdatedCopy(copy, url, fetched_at, advisories, pypi, newest)
