"""The run history (O7, O8): one record per finished pack in a local SQLite store.

A record is read from the pack's own files (run.json, results.json, manifest.json), never from the
runner's memory, so `certify history add PACK` records an older pack exactly as the run would have.
The store sits next to the packs by default (the folder that holds the pack, release/artifacts/ for
`certify run` without --out); a team points `--history` at a shared volume to pool its runs.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.evidence import MANIFEST, sha256_file

#: Where `certify history` looks without --history (the default artifacts folder of `certify run`).
DEFAULT_STORE = Path("release") / "artifacts" / "history.sqlite"
STORE_NAME = "history.sqlite"
SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    manifest_sha256 TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    target TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    dirty INTEGER NOT NULL,
    mode TEXT NOT NULL,
    policy TEXT NOT NULL,
    policy_sha256 TEXT NOT NULL,
    harness_version TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    certified INTEGER NOT NULL,
    matrix_percent REAL,
    pack TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gates (
    manifest_sha256 TEXT NOT NULL REFERENCES runs(manifest_sha256),
    gate TEXT NOT NULL,
    status TEXT NOT NULL,
    required INTEGER NOT NULL,
    duration_s REAL,
    PRIMARY KEY (manifest_sha256, gate)
);
CREATE TABLE IF NOT EXISTS figures (
    manifest_sha256 TEXT NOT NULL REFERENCES runs(manifest_sha256),
    gate TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    passed INTEGER,
    PRIMARY KEY (manifest_sha256, gate, name)
);
CREATE TABLE IF NOT EXISTS events (
    manifest_sha256 TEXT NOT NULL REFERENCES runs(manifest_sha256),
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    baseline_run_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (started_at);
"""


class HistoryError(HarnessError):
    """The history store or a pack to record is unusable (exit 2)."""


@dataclass(frozen=True)
class RunRecord:
    """One run as the history keeps it: identity, outcome, and per gate its status and figures."""

    manifest_sha256: str
    run_id: str
    started_at: str
    ended_at: str | None
    target: str
    commit: str
    dirty: bool
    mode: str
    policy: str
    policy_sha256: str
    harness_version: str
    state: str
    exit_code: int | None
    certified: bool
    matrix_percent: float | None
    pack: str
    gates: tuple[dict[str, Any], ...]
    figures: tuple[dict[str, Any], ...]


def _read_json(pack: Path, name: str) -> dict[str, Any]:
    """One JSON file of a pack, or a HistoryError naming it."""
    path = pack / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"{path}: missing; not an evidence pack of a finished run"
        raise HistoryError(msg) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{path}: unreadable ({exc})"
        raise HistoryError(msg) from None
    if not isinstance(data, dict):
        msg = f"{path}: not a JSON object"
        raise HistoryError(msg)
    return data


def _figures(results: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Every numeric measurement of every gate (the headline figures trends are drawn from)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for result in results:
        for measurement in (result.get("verdict") or {}).get("measurements") or ():
            value = measurement.get("value")
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            key = (str(result.get("gate")), str(measurement.get("name")))
            passed = measurement.get("passed")
            rows[key] = {
                "gate": key[0],
                "name": key[1],
                "value": float(value),
                "unit": str(measurement.get("unit") or ""),
                "passed": None if passed is None else bool(passed),
            }
    return tuple(rows[key] for key in sorted(rows))


def read_record(pack: Path) -> RunRecord:
    """The history record of a pack, from its run.json, results.json and manifest.json."""
    run = _read_json(pack, "run.json")
    if run.get("state") == "RUNNING":
        msg = f"{pack / 'run.json'}: the run has not finished (state RUNNING)"
        raise HistoryError(msg)
    results = _read_json(pack, "results.json")
    _read_json(pack, MANIFEST)
    target = run.get("target") or {}
    policy = run.get("policy") or {}
    overall = results.get("overall") or {}
    gate_results = results.get("results") or []
    started = str(run.get("started_at") or "")
    return RunRecord(
        manifest_sha256=sha256_file(pack / MANIFEST),
        run_id=f"{started.replace('-', '').replace(':', '').split('.')[0]}Z-{target.get('short', 'nocommit')}",
        started_at=started,
        ended_at=run.get("ended_at"),
        target=str(target.get("name") or "unknown"),
        commit=str(target.get("commit") or "unknown"),
        dirty=bool(target.get("dirty")),
        mode=str(run.get("mode") or "unknown"),
        policy=f"{policy.get('name', 'none')} {policy.get('version', '')}".strip(),
        policy_sha256=str(policy.get("sha256") or ""),
        harness_version=str(run.get("harness_version") or "unknown"),
        state=str(run.get("state") or "unknown"),
        exit_code=overall.get("exit_code"),
        certified=bool(overall.get("certified")),
        matrix_percent=(overall.get("traceability") or {}).get("percent"),
        pack=str(pack.resolve()),
        gates=tuple(
            {
                "gate": str(result.get("gate")),
                "status": str((result.get("verdict") or {}).get("status")),
                "required": bool(result.get("required")),
                "duration_s": result.get("duration_s"),
            }
            for result in gate_results
        ),
        figures=_figures(gate_results),
    )


@contextlib.contextmanager
def open_store(path: Path, *, create: bool) -> Iterator[sqlite3.Connection]:
    """A connection to the store at `path` (created with its schema when `create`), committed on success."""
    if not create and not path.is_file():
        msg = f"{path}: no run history there (a run records one next to its pack; see --history)"
        raise HistoryError(msg)
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=30)
    except (OSError, sqlite3.Error) as exc:
        msg = f"{path}: cannot open the run history ({exc})"
        raise HistoryError(msg) from None
    try:
        with connection:
            if create:
                connection.executescript(_SCHEMA)
                connection.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            row = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None or row[0] != SCHEMA_VERSION:
                msg = f"{path}: run history schema {row[0] if row else 'unknown'}, this harness reads {SCHEMA_VERSION}"
                raise HistoryError(msg)
            yield connection
    except sqlite3.DatabaseError as exc:
        msg = f"{path}: not a usable run history ({exc})"
        raise HistoryError(msg) from None
    finally:
        connection.close()


def record(store: Path, pack: Path) -> tuple[RunRecord, bool]:
    """Append the pack's record to the store; False when that very pack (same manifest) was already there."""
    entry = read_record(pack)
    with open_store(store, create=True) as db:
        added = db.execute(
            "INSERT OR IGNORE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                entry.manifest_sha256,
                entry.run_id,
                entry.started_at,
                entry.ended_at,
                entry.target,
                entry.commit,
                int(entry.dirty),
                entry.mode,
                entry.policy,
                entry.policy_sha256,
                entry.harness_version,
                entry.state,
                entry.exit_code,
                int(entry.certified),
                entry.matrix_percent,
                entry.pack,
            ),
        ).rowcount
        if added:
            db.executemany(
                "INSERT INTO gates VALUES (?,?,?,?,?)",
                [
                    (entry.manifest_sha256, g["gate"], g["status"], int(g["required"]), g["duration_s"])
                    for g in entry.gates
                ],
            )
            db.executemany(
                "INSERT INTO figures VALUES (?,?,?,?,?,?)",
                [
                    (entry.manifest_sha256, f["gate"], f["name"], f["value"], f["unit"], _flag(f["passed"]))
                    for f in entry.figures
                ],
            )
    return entry, bool(added)


def _flag(value: bool | None) -> int | None:
    """SQLite's form of an optional boolean."""
    return None if value is None else int(value)


def _gates_of(db: sqlite3.Connection, manifest_sha256: str) -> dict[str, str]:
    """Gate -> status of one recorded run, in the order the run listed them."""
    rows = db.execute("SELECT gate, status FROM gates WHERE manifest_sha256 = ? ORDER BY rowid", (manifest_sha256,))
    return {str(row[0]): str(row[1]) for row in rows}


def last_runs(store: Path, limit: int, target: str | None = None) -> list[dict[str, Any]]:
    """The newest `limit` runs (optionally of one target), newest first, each with its gates' statuses."""
    with open_store(store, create=False) as db:
        db.row_factory = sqlite3.Row
        where, args = ("WHERE target = ?", [target]) if target else ("", [])
        runs = [
            dict(row)
            for row in db.execute(f"SELECT * FROM runs {where} ORDER BY started_at DESC LIMIT ?", [*args, limit])  # noqa: S608 - fixed clauses
        ]
        for run in runs:
            run["dirty"], run["certified"] = bool(run["dirty"]), bool(run["certified"])
            run["gates"] = _gates_of(db, run["manifest_sha256"])
    return runs


def previous_run(store: Path, entry: RunRecord) -> dict[str, Any] | None:
    """The newest complete run before `entry` of the same target and mode, with its gates' statuses."""
    with open_store(store, create=False) as db:
        db.row_factory = sqlite3.Row
        row = db.execute(
            "SELECT * FROM runs WHERE target = ? AND mode = ? AND state = 'COMPLETE' AND manifest_sha256 != ? "
            "AND started_at < ? ORDER BY started_at DESC LIMIT 1",
            (entry.target, entry.mode, entry.manifest_sha256, entry.started_at),
        ).fetchone()
        if row is None:
            return None
        run = dict(row)
        run["gates"] = _gates_of(db, run["manifest_sha256"])
    return run


def record_events(
    store: Path, manifest_sha256: str, baseline_run_id: str, events: Sequence[tuple[str, str, str]]
) -> None:
    """Keep what the regression watch found for a run: (kind, subject, detail) rows, e.g. ("gate_red", "G2", ...)."""
    with open_store(store, create=True) as db:
        db.executemany(
            "INSERT INTO events VALUES (?,?,?,?,?)",
            [(manifest_sha256, kind, subject, detail, baseline_run_id) for kind, subject, detail in events],
        )


def runs_since(store: Path, since: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Runs started at or after `since` (ISO time), oldest first, with gates; their figures; their events."""
    with open_store(store, create=False) as db:
        db.row_factory = sqlite3.Row
        runs = [dict(r) for r in db.execute("SELECT * FROM runs WHERE started_at >= ? ORDER BY started_at", (since,))]
        for run in runs:
            run["dirty"], run["certified"] = bool(run["dirty"]), bool(run["certified"])
            run["gates"] = _gates_of(db, run["manifest_sha256"])
        keys = [run["manifest_sha256"] for run in runs]
        marks = ",".join("?" * len(keys))
        figures = [
            dict(r)
            for r in db.execute(f"SELECT * FROM figures WHERE manifest_sha256 IN ({marks})", keys)  # noqa: S608 - placeholders only
        ]
        events = [
            dict(r)
            for r in db.execute(f"SELECT * FROM events WHERE manifest_sha256 IN ({marks})", keys)  # noqa: S608 - placeholders only
        ]
    return runs, figures, events


def flaky_gates(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per gate, the commits on which it had more than one status (a flaky gate); pure."""
    seen: dict[tuple[str, str], set[str]] = {}
    for run in runs:
        if run["dirty"]:
            continue  # a dirty tree is not the same code as its commit
        for gate, status in run["gates"].items():
            seen.setdefault((gate, run["commit_sha"]), set()).add(status)
    flaky: dict[str, list[str]] = {}
    for (gate, commit), statuses in sorted(seen.items()):
        if len(statuses) > 1:
            flaky.setdefault(gate, []).append(commit[:10])
    return flaky


def history_lines(runs: Sequence[dict[str, Any]]) -> list[str]:
    """`certify history` output: one line per run, newest first, then the flaky gates; pure."""
    if not runs:
        return ["no runs recorded"]
    lines = []
    for run in runs:
        outcome = "CERTIFIED" if run["certified"] else f"exit {run['exit_code']}"
        if run["state"] != "COMPLETE":
            outcome = run["state"]
        not_pass = [f"{gate} {status}" for gate, status in run["gates"].items() if status != "PASS"]
        lines.append(
            f"{run['run_id']}  {run['target']}  {run['mode']:<7}  {outcome:<9}  "
            f"{run['policy']}  {'all gates PASS' if not not_pass else ', '.join(not_pass)}"
        )
    flaky = flaky_gates(runs)
    if flaky:
        lines.append(
            "flaky (more than one status on the same commit): "
            + "; ".join(f"{gate} on {', '.join(commits)}" for gate, commits in flaky.items())
        )
    return lines
