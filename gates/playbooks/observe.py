"""What the harness sees of an instance with its own eyes: HTTP answers, probes, snapshots, a held process.

Collect-side only. Every function returns plain JSON-ready data, which the gate stores as raw
evidence; the judgement (healthy or not, equal or not) is made later by the pure judge.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import sqlite3
import time
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from gates.playbooks.config import FileProbe, HttpProbe, ProcessProbe, Request, SqliteProbe, SqliteSnapshot

MAX_HASH_BYTES = 64 * 1024 * 1024


def call(port: int, request: Request, values: dict[str, Any] | None = None, body: Any = None) -> dict[str, Any]:
    """One HTTP request to 127.0.0.1:port; returns {status, body, error, at}; never raises."""
    path = request.path.format_map({key: str(value) for key, value in (values or {}).items()})
    payload = body if body is not None else request.body
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=request.timeout_s)
    started = time.time()
    try:
        data = None if payload is None else json.dumps(payload).encode()
        headers = {"Connection": "close", "User-Agent": "release-harness-playbooks"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        connection.request(request.method, path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return {
            "method": request.method,
            "path": path,
            "status": None,
            "body": None,
            "error": f"{type(exc).__name__}: {exc}"[:200],
            "at": started,
        }
    finally:
        connection.close()
    try:
        parsed: Any = json.loads(raw) if raw.strip() else None
    except ValueError:
        parsed = raw[:500].decode("utf-8", errors="replace")
    return {
        "method": request.method,
        "path": path,
        "status": response.status,
        "body": parsed,
        "error": None,
        "at": started,
    }


def field(data: Any, dotted: str) -> Any:
    """The value at a dotted path of parsed JSON (None when any step is missing); pure."""
    for part in filter(None, dotted.split(".")):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _matches(data_dir: Path, pattern: str) -> list[Path]:
    """Files matching a glob relative to the data dir, newest first ('.' is the dir itself)."""
    if pattern in {"", "."}:
        return [data_dir]
    found = [path for path in data_dir.glob(pattern) if path.exists()]
    return sorted(found, key=lambda path: (path.stat().st_mtime, str(path)), reverse=True)


def observe_file(data_dir: Path, probe: FileProbe) -> dict[str, Any]:
    """Facts about the newest match of a file probe's glob."""
    found = _matches(data_dir, probe.path)
    if not found:
        return {"matches": 0}
    stat = found[0].stat()
    return {
        "matches": len(found),
        "path": str(found[0].relative_to(data_dir)) if found[0] != data_dir else ".",
        "bytes": stat.st_size,
        "age_s": round(time.time() - stat.st_mtime, 3),
        "mode": stat.st_mode & 0o7777,
    }


def proc_facts(pid: int) -> dict[str, Any]:
    """State letter, resident memory and name of a process from /proc (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return {"pid": pid, "alive": False}
    name = stat[stat.find("(") + 1 : stat.rfind(")")]
    rest = stat[stat.rfind(")") + 2 :].split()
    rss_kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return {
        "pid": pid,
        "alive": rest[0] != "Z",
        "state": rest[0],
        "pgid": int(rest[2]),
        "name": name,
        "rss_mb": round(rss_kb / 1024, 1),
    }


def read_pid(data_dir: Path, pattern: str) -> int | None:
    """The pid written in the first pid file matching the glob."""
    for path in sorted(data_dir.glob(pattern)):
        try:
            return int(path.read_text(encoding="utf-8").split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return None


def observe_process(data_dir: Path, probe: ProcessProbe) -> dict[str, Any]:
    """Facts about the process a pid file names."""
    pid = read_pid(data_dir, probe.pid_file)
    return {"pid_file": probe.pid_file, "pid": None} if pid is None else proc_facts(pid)


def _ro(path: Path, timeout_s: float = 2.0) -> sqlite3.Connection:
    """A read-only connection (no file is created or changed by opening it)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout_s)


def query_rows(data_dir: Path, spec: SqliteSnapshot | SqliteProbe, limit: int = 10_000) -> dict[str, Any]:
    """Rows of a read-only query on a database under the data dir, or the error."""
    found = _matches(data_dir, spec.database)
    if not found:
        return {"error": f"no database matches {spec.database}"}
    try:
        conn = _ro(found[0])
        try:
            rows = conn.execute(spec.query).fetchmany(limit)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return {"database": str(found[0].relative_to(data_dir)), "error": f"{type(exc).__name__}: {exc}"}
    return {"database": str(found[0].relative_to(data_dir)), "rows": [list(row) for row in rows]}


def _write_lock_error(path: Path, timeout_s: float) -> str | None:
    """Take and release the write lock of one database (writes nothing); the error, or None if it was free."""
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    finally:
        conn.close()
    return None


def can_write(data_dir: Path, probe: SqliteProbe) -> dict[str, Any]:
    """Whether the write lock can be taken within the bound (taken and released at once; writes nothing)."""
    found = _matches(data_dir, probe.database)
    if not found:
        return {"error": f"no database matches {probe.database}"}
    error = _write_lock_error(found[0], probe.write_timeout_ms / 1000)
    return {"writable": True} if error is None else {"writable": False, "error": error}


def observe(port: int, data_dir: Path, probe: Any) -> dict[str, Any]:
    """Run one probe of any kind and return what it saw (not yet judged)."""
    if isinstance(probe, HttpProbe):
        answer = call(port, Request(path=probe.path))
        return {
            "status": answer["status"],
            "value": field(answer["body"], probe.field) if probe.field else None,
            "error": answer["error"],
        }
    if isinstance(probe, FileProbe):
        return observe_file(data_dir, probe)
    if isinstance(probe, ProcessProbe):
        return observe_process(data_dir, probe)
    assert isinstance(probe, SqliteProbe)  # noqa: S101 - the config model is a closed union
    return can_write(data_dir, probe) if probe.write else query_rows(data_dir, probe, limit=1)


def snapshot_files(data_dir: Path, volatile: tuple[str, ...]) -> dict[str, Any]:
    """Every non-volatile file and directory under the data dir: size, mode and sha256."""
    files: dict[str, Any] = {}
    for root, dirs, names in os.walk(data_dir):
        for name in sorted(dirs) + sorted(names):
            path = Path(root) / name
            rel = str(path.relative_to(data_dir))
            if any(fnmatch(rel, pattern) for pattern in volatile):
                continue
            try:
                stat = path.lstat()
            except OSError:
                continue
            entry: dict[str, Any] = {"mode": oct(stat.st_mode & 0o7777)}
            if path.is_file() and not path.is_symlink():
                entry["bytes"] = stat.st_size
                entry["sha256"] = _digest(path) if stat.st_size <= MAX_HASH_BYTES else None
            else:
                entry["dir"] = True
            files[rel] = entry
    files["."] = {"mode": oct(data_dir.stat().st_mode & 0o7777), "dir": True}
    return files


def _digest(path: Path) -> str | None:
    """sha256 of a file (None if it vanished while reading)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def snapshot_processes(pgid: int) -> list[dict[str, Any]]:
    """The processes of the instance's process group: pid, name, state."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            facts = proc_facts(int(entry.name))
            if facts.get("pgid") == pgid and facts.get("alive"):
                # Running and sleeping are the same process doing its work; stopped is not.
                state = "stopped" if facts["state"] in {"T", "t"} else "alive"
                found.append({"pid": facts["pid"], "name": facts["name"], "state": state})
    return sorted(found, key=lambda item: item["pid"])


def lock_free(data_dir: Path, pattern: str, timeout_s: float = 0.3) -> bool:
    """Whether the newest database matching the glob can take its write lock now (nothing is written)."""
    found = _matches(data_dir, pattern)
    return not found or _write_lock_error(found[0], timeout_s) is None


class Hold:
    """SIGSTOP / SIGCONT of the process that executes playbooks, so a snapshot is taken before execute.

    A process stopped inside a write transaction would keep the database locked for the whole hold
    (the injection and the dry-run could not write), so after stopping it the hold checks that the
    named databases' write locks are free and, if not, lets the process run briefly and stops it
    again (a few times; `lock_retries` and `locked` record what happened).
    """

    ATTEMPTS = 6

    def __init__(self, data_dir: Path, pid_file: str, pgid: int, databases: tuple[str, ...] = ()) -> None:
        """Bind to the pid file glob under the data dir, the instance's process group and its databases."""
        self.data_dir = data_dir
        self.pid_file = pid_file
        self.pgid = pgid
        self.databases = databases
        self.pid: int | None = None
        self.lock_retries = 0
        self.locked = False

    def __enter__(self) -> Hold:
        """Stop the process, only if the pid file names a live process of this instance."""
        self.pid = read_pid(self.data_dir, self.pid_file) if self.pid_file else None
        if self.pid is not None and proc_facts(self.pid).get("pgid") != self.pgid:
            self.pid = None
        if self.pid is None:
            return self
        try:
            for attempt in range(self.ATTEMPTS):
                os.kill(self.pid, signal.SIGSTOP)
                self.locked = not all(lock_free(self.data_dir, db) for db in self.databases)
                if not self.locked or attempt == self.ATTEMPTS - 1:
                    break
                self.lock_retries += 1
                os.kill(self.pid, signal.SIGCONT)
                time.sleep(0.2)
        except OSError:
            self.pid = None
        return self

    def __exit__(self, *exc: object) -> None:
        """Continue it, however the block ended."""
        if self.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGCONT)
