"""End to end: the layer canaries, and the database, disk and canary-driven playbooks.

One instance started with ``--healer --enable-fault-injection`` serves every test, in file
order. Each test injects a real fault through the API while the healer is held (SIGSTOP, as the
playbook gate does), sees the fault with its own probe (a sqlite connection, the file system,
/proc, a plain HTTP request; never the playbook's verify), checks that a dry-run plans the
repair and changes nothing, lets the healer heal, probes recovery the same way, then asks for
the rollback.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from guardian import logsetup
from guardian.healing import canary
from guardian.healing.book import canaries
from guardian.healing.canary import CanaryTarget
from guardian.paths import DataDir
from guardian.store import Store
from tests.conftest import Instance, start_instance, wait_for
from tests.healing_helpers import IN_WINDOW, Healing, can_write
from tests.helpers_upstream import running_upstream, url_of

pytestmark = pytest.mark.slow
MIB = 1024 * 1024
FINAL = {"healed", "rolled_back", "failed", "timed_out"}
LAYERS = ("L2", "L3", "L4", "L5", "L6", "L7")
MINE = (
    "stale-temp-files",
    "db-fragmentation",
    "db-index-corrupt",
    "log-file-deleted",
    "fsize-limit",
    "db-schema-drift",
    "config-regression",
)
RECOVERIES: dict[str, float] = {}


@pytest.fixture(scope="module")
def healing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Healing]:
    """A healing instance (HTTPS on too) with an upstream, canaries passing, clock in the window."""
    with running_upstream() as upstream:
        instance = start_instance(
            tmp_path_factory.mktemp("integ"),
            workers=2,
            upstream_url=url_of(upstream),
            extra_args=["--healer", "--enable-fault-injection", "--tls"],
        )
        client = Healing(instance)
        try:
            client.post("/api/guardian/clock", {"epoch": IN_WINDOW})
            client.wait_incident("backup-stale", 0, {"healed"})
            assert wait_for(lambda: canaries_ok(client), 30), client.get("/api/guardian/canaries")
            yield client
        finally:
            client.client.close()
            instance.stop()
            if RECOVERIES:
                print("\nMTTR by playbook (s):", json.dumps(RECOVERIES, sort_keys=True))  # noqa: T201


# -- the test's own eyes -----------------------------------------------------------------------


def canaries_ok(healing: Healing, layers: tuple[str, ...] = LAYERS) -> bool:
    """Whether the named layers' last canary results are fresh and passing."""
    report = healing.get("/api/guardian/canaries")["layers"]
    return all(report[x].get("ok") is True and not report[x]["stale"] for x in layers)


def l7_failures(healing: Healing) -> int:
    """Consecutive failures of the L7 canary."""
    return int(healing.get("/api/guardian/canaries")["layers"]["L7"]["consecutive_failures"])


def query(instance: Instance, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement on the test's own short-lived connection."""
    conn = sqlite3.connect(instance.data_dir.db_path, timeout=15, isolation_level=None)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def submit(instance: Instance) -> httpx.Response:
    """Submit one orchestrate task that takes the configured default cost."""
    body = {"kind": "orchestrate", "payload": {"steps": 1, "note": "integ-test"}}
    return httpx.post(f"{instance.base_url}/api/tasks", json=body, timeout=10)


def state_snapshot(instance: Instance) -> dict[str, Any]:
    """Files under the data dir (not the live database, logs, metrics) and the state they name."""
    root = instance.data_dir.root
    files = {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime)
        for p in root.rglob("*")
        if p.is_file()
        and p.parent.name not in {"metrics", "logs"}
        and not p.name.startswith("guardian.db")
        and not p.name.endswith(("-wal", "-shm"))  # readers of a backup touch its -shm
    }
    api = psutil.Process(instance.pids()["api-0"])
    return {
        "files": files,
        "schema": query(instance, "SELECT type, name, sql FROM sqlite_master ORDER BY name"),
        "settings": query(instance, "SELECT key, value FROM settings ORDER BY key"),
        "quick_check": quick_check(instance),
        "incidents": query(instance, "SELECT id, status FROM incidents ORDER BY id"),
        "api_fsize": api.rlimit(psutil.RLIMIT_FSIZE),
        "log_exists": instance.data_dir.log_path.exists(),
    }


def quick_check(instance: Instance) -> str:
    """The test's own quick_check of the live database."""
    try:
        return "\n".join(str(r[0]) for r in query(instance, "PRAGMA quick_check"))
    except sqlite3.DatabaseError as exc:
        return f"error: {exc}"


# -- driving the healer ------------------------------------------------------------------------


@contextmanager
def healer_held(instance: Instance) -> Iterator[None]:
    """SIGSTOP the healer (never while it holds the write lock) for the block."""
    pid = instance.pids()["healer-0"]
    for _ in range(50):
        os.kill(pid, signal.SIGSTOP)
        if can_write(instance):
            break
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextmanager
def paused(instance: Instance, playbook_id: str) -> Iterator[None]:
    """Keep the healer from considering one playbook (its canaries keep running)."""
    key = f"pause:{playbook_id}"
    query(
        instance,
        "INSERT INTO healer_state(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, json.dumps(time.time() + 300)),
    )
    try:
        yield
    finally:
        query(instance, "DELETE FROM healer_state WHERE key = ?", (key,))


def inject_seen(healing: Healing, playbook_id: str, probe: Any, options: Any = None) -> Any:
    """Inject with the healer held and assert the test's own probe sees the fault."""
    with healer_held(healing.instance):
        injected = healing.inject(playbook_id, options)
        assert probe(), f"{playbook_id}: injected fault not observable: {injected}"
    return injected


def dry_run_unchanged(healing: Healing, playbook_id: str) -> dict[str, Any]:
    """Dry-run ``playbook_id``; assert it detected the fault and changed nothing."""
    before = state_snapshot(healing.instance)
    answer: dict[str, Any] = healing.post(f"/api/guardian/playbooks/{playbook_id}/dry-run")
    assert state_snapshot(healing.instance) == before
    assert answer["detected"] and answer["plan"], answer
    return answer


def healed(healing: Healing, playbook_id: str, after_id: int) -> dict[str, Any]:
    """Wait for the healed incident newer than ``after_id`` and record its MTTR."""
    incident = healing.wait_incident(playbook_id, after_id, FINAL, timeout_s=60)
    assert incident["status"] == "healed", json.dumps(incident["detail"])[:3000]
    RECOVERIES[playbook_id] = round(incident["recovery_s"], 3)
    return incident


# -- the tests ---------------------------------------------------------------------------------


def test_canaries_report_every_layer_live(healing: Healing) -> None:
    """Each of L2-L7 has a fresh passing result in the JSON endpoint and in /metrics."""
    report = healing.get("/api/guardian/canaries")["layers"]
    assert report["L2"]["detail"]["interface"] == "lo" and report["L2"]["detail"]["admin_up"]
    assert "127.0.0.1" in report["L3"]["detail"]
    assert set(report["L4"]["detail"]) == {"api", "upstream"}
    assert report["L5"]["detail"]["reused"] is True
    assert report["L6"]["detail"]["identical"] is True
    assert report["L6"]["detail"]["tls"]["days_left"] > 300  # serve --tls: a real handshake
    assert report["L7"]["detail"]["status"] == "completed"
    first = report["L7"]["checks_total"]
    assert wait_for(
        lambda: healing.get("/api/guardian/canaries")["layers"]["L7"]["checks_total"] > first, 15
    )
    metrics = httpx.get(f"{healing.instance.base_url}/metrics", timeout=10).text
    for layer in LAYERS:
        assert f'guardian_canary_up{{layer="{layer}"}} 1.0' in metrics
    assert 'guardian_canary_checks_total{layer="L7"}' in metrics
    assert 'guardian_canary_latency_seconds{layer="L7"}' in metrics


def test_stale_temp_files(healing: Healing) -> None:
    """An online backup killed half-way leaves .partial files; they are removed, nothing else."""
    backups = healing.instance.data_dir.root / "backups"
    kept = sorted(p.name for p in backups.glob("guardian-*.db"))
    before = healing.last_incident_id("stale-temp-files")
    with healer_held(healing.instance):
        healing.inject("stale-temp-files")
        assert list(backups.glob("*.partial*"))
        plan = dry_run_unchanged(healing, "stale-temp-files")
    assert all(step.startswith("delete ") for step in plan["plan"])
    incident = healed(healing, "stale-temp-files", before)
    assert not list(backups.glob("*.partial*"))
    assert sorted(p.name for p in backups.glob("guardian-*.db")) == kept
    assert incident["detail"]["execute"]["evidence"]["bytes_freed"] > 0
    rolled = healing.rollback(incident["id"])
    assert rolled["status"] == "done" and "nothing to undo" in rolled["result"]


def free_bytes(instance: Instance) -> int:
    """Free pages of the database, in bytes."""
    return int(query(instance, "PRAGMA freelist_count")[0][0]) * 4096


def test_db_fragmentation(healing: Healing) -> None:
    """A 24 MiB freed table is vacuumed away; the WAL stays small on the way; no row is lost."""
    instance = healing.instance
    wal = instance.data_dir.db_path.with_name("guardian.db-wal")
    tasks = query(instance, "SELECT COUNT(*) FROM tasks")[0][0]
    before = healing.last_incident_id("db-fragmentation")
    with healer_held(instance):
        healing.inject("db-fragmentation", {"mib": 24})
        assert free_bytes(instance) > 16 * MIB and wal.stat().st_size < 8 * MIB
        assert "VACUUM" in dry_run_unchanged(healing, "db-fragmentation")["plan"][0]
    incident = healed(healing, "db-fragmentation", before)
    assert free_bytes(instance) < MIB
    assert instance.data_dir.db_path.stat().st_size < 16 * MIB
    assert wal.stat().st_size < 8 * MIB
    assert query(instance, "SELECT COUNT(*) FROM tasks")[0][0] >= tasks
    evidence = incident["detail"]["execute"]["evidence"]
    assert evidence["before"]["freelist_count"] > evidence["after"]["freelist_count"]
    assert healing.rollback(incident["id"])["status"] == "done"


def test_db_index_corrupt_tier2(healing: Healing) -> None:
    """A zeroed index page fails quick_check; after approval the index is rebuilt, rows kept."""
    instance = healing.instance
    tasks = {row[0] for row in query(instance, "SELECT id FROM tasks NOT INDEXED")}
    before = healing.last_incident_id("db-index-corrupt")
    inject_seen(healing, "db-index-corrupt", lambda: quick_check(instance) != "ok")
    healing.wait_incident("db-index-corrupt", before, {"awaiting_approval"})
    # The healer audits its "blocked" decision just after the status turns awaiting_approval:
    # held, so the dry run's unchanged-state comparison sees only what the dry run did.
    with healer_held(instance):
        plan = dry_run_unchanged(healing, "db-index-corrupt")
    assert plan["detection"]["evidence"]["indexes"] == {
        "tasks_kind_created": "CREATE INDEX tasks_kind_created ON tasks(kind, created_at)"
    }
    assert quick_check(instance) != "ok"
    healing.approve_pending("db-index-corrupt")
    incident = healed(healing, "db-index-corrupt", before)
    assert quick_check(instance) == "ok"
    assert query(instance, "PRAGMA integrity_check")[0][0] == "ok"
    assert tasks <= {row[0] for row in query(instance, "SELECT id FROM tasks NOT INDEXED")}
    evidence = incident["detail"]["execute"]["evidence"]
    assert evidence["rebuilt"] == ["tasks_kind_created"] and evidence["rows_lost"] == {}
    assert evidence["backup"]["missing_from_live"] == 0
    assert submit(instance).status_code == 201
    assert healing.rollback(incident["id"])["status"] == "done"
    assert quick_check(instance) == "ok"


def stale_log_fds(instance: Instance) -> list[int]:
    """Pids of instance processes writing to a deleted guardian.log."""
    found = []
    for pid in instance.pids().values():
        try:
            links = [str(p.readlink()) for p in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if any(link.endswith("guardian.log (deleted)") for link in links):
            found.append(pid)
    return found


def test_log_file_deleted(healing: Healing) -> None:
    """A deleted log is reopened by every process and the lines written to it are recovered."""
    instance = healing.instance
    log_path = instance.data_dir.log_path
    before = healing.last_incident_id("log-file-deleted")
    with healer_held(instance):
        healing.inject("log-file-deleted")
        assert not log_path.exists() and len(stale_log_fds(instance)) >= 4
        plan = dry_run_unchanged(healing, "log-file-deleted")
    assert sum(step.startswith("SIGUSR2") for step in plan["plan"]) >= 4
    incident = healed(healing, "log-file-deleted", before)
    assert not stale_log_fds(instance)
    assert wait_for(lambda: log_path.exists() and log_path.stat().st_size > 0, 10)
    recovered = list(log_path.parent.glob("guardian.log.recovered-*"))
    assert len(recovered) == 1
    lines = recovered[0].read_text().splitlines()
    # The access-log line of the injection request itself was written after the deletion.
    assert any('"route": "/api/guardian/faults/{playbook_id}"' in line for line in lines)
    assert any('"msg": "log file reopened"' in line for line in log_path.read_text().splitlines())
    assert healing.rollback(incident["id"])["status"] == "done"
    recovered[0].unlink()


def api_fsize(instance: Instance) -> int:
    """The API process's soft RLIMIT_FSIZE."""
    return int(psutil.Process(instance.pids()["api-0"]).rlimit(psutil.RLIMIT_FSIZE)[0])


def test_fsize_limit(healing: Healing) -> None:
    """The API cannot write past a 0-byte file-size limit; the L7 canary triggers the restore."""
    instance = healing.instance
    assert wait_for(lambda: canaries_ok(healing, ("L7",)), 20)

    def blocked() -> bool:
        answer = submit(instance)
        return api_fsize(instance) == 0 and answer.status_code == 503 and "disk I/O" in answer.text

    before = healing.last_incident_id("fsize-limit")
    with paused(instance, "fsize-limit"):
        inject_seen(healing, "fsize-limit", blocked)
        assert wait_for(lambda: l7_failures(healing) >= 2, 15)
        plan = dry_run_unchanged(healing, "fsize-limit")
        assert plan["plan"][0].startswith("prlimit --fsize=unlimited")
    incident = healed(healing, "fsize-limit", before)
    assert api_fsize(instance) == psutil.RLIM_INFINITY
    assert submit(instance).status_code == 201
    assert wait_for(instance.ready, 10)
    assert healing.rollback(incident["id"])["status"] == "done"
    assert api_fsize(instance) == 0
    psutil.Process(instance.pids()["api-0"]).rlimit(
        psutil.RLIMIT_FSIZE, (psutil.RLIM_INFINITY,) * 2
    )
    assert wait_for(instance.ready, 10)


def has_request_id(instance: Instance) -> bool:
    """Whether tasks still has its request_id column."""
    return bool(
        query(instance, "SELECT 1 FROM pragma_table_info('tasks') WHERE name = 'request_id'")
    )


def test_db_schema_drift(healing: Healing) -> None:
    """A dropped column breaks every submission; the L7 canary triggers re-adding it."""
    instance = healing.instance
    assert wait_for(lambda: canaries_ok(healing, ("L7",)), 20)

    def drifted() -> bool:
        return not has_request_id(instance) and submit(instance).status_code == 503

    before = healing.last_incident_id("db-schema-drift")
    with paused(instance, "db-schema-drift"):
        inject_seen(healing, "db-schema-drift", drifted)
        assert wait_for(lambda: l7_failures(healing) >= 2, 15)
        plan = dry_run_unchanged(healing, "db-schema-drift")
        assert plan["plan"] == ['ALTER TABLE "tasks" ADD COLUMN "request_id" TEXT']
    incident = healed(healing, "db-schema-drift", before)
    assert has_request_id(instance)
    assert submit(instance).status_code == 201
    assert healing.rollback(incident["id"])["status"] == "done"
    assert not has_request_id(instance)
    query(instance, "ALTER TABLE tasks ADD COLUMN request_id TEXT")
    assert wait_for(lambda: submit(instance).status_code == 201, 10)


def persisted_cost(instance: Instance) -> Any:
    """Raw persisted orchestrate_cost_ms."""
    rows = query(instance, "SELECT value FROM settings WHERE key = 'orchestrate_cost_ms'")
    return json.loads(rows[0][0]) if rows else None


def test_config_regression(healing: Healing) -> None:
    """A cost setting that breaks the L7 canary's SLO is rolled back to the value it proved."""
    instance = healing.instance
    assert wait_for(lambda: canaries_ok(healing, ("L7",)), 20)
    good = healing.get("/api/guardian/canaries")["known_good"]["orchestrate_cost_ms"]
    before = healing.last_incident_id("config-regression")
    with paused(instance, "config-regression"):
        inject_seen(healing, "config-regression", lambda: persisted_cost(instance) == 1000)
        assert wait_for(lambda: l7_failures(healing) >= 2, 20)
        plan = dry_run_unchanged(healing, "config-regression")
        assert plan["plan"] == [f"set orchestrate_cost_ms 1000 -> {good}"]
    healed_incident = healed(healing, "config-regression", before)
    assert persisted_cost(instance) == good
    task_id = submit(instance).json()["id"]

    def done() -> dict[str, Any]:
        return dict(httpx.get(f"{instance.base_url}/api/tasks/{task_id}", timeout=10).json())

    assert wait_for(lambda: done()["status"] == "completed", 10)
    assert done()["result"]["cost_ms"] == good
    assert done()["finished_at"] - done()["created_at"] < 0.5
    assert healing.rollback(healed_incident["id"])["status"] == "done"
    assert persisted_cost(instance) == 1000
    httpx.post(
        f"{instance.base_url}/ui/settings", data={"orchestrate_cost_ms": str(good)}, timeout=10
    )
    assert persisted_cost(instance) == good


def test_no_other_playbook_fired_and_audit_intact(healing: Healing) -> None:
    """Only the injected faults' playbooks opened incidents, all healed; the audit chain holds."""
    found = healing.get("/api/guardian/incidents", limit=1000)["incidents"]
    fired = {i["playbook_id"] for i in found}
    assert fired <= {*MINE, "backup-stale"}, fired
    assert fired >= set(MINE)
    assert all(i["status"] == "healed" for i in found if i["playbook_id"] in MINE)
    assert healing.get("/api/guardian/audit/verify")["intact"] is True


# -- in-process checks of the canary module and the helpers (no instance) ----------------------


def fake_link(root: Path, flags: str, carrier: str) -> CanaryTarget:
    """A sysfs-like tree for one interface, and a target that reads it."""
    base = root / "net" / "lo0"
    (base / "statistics").mkdir(parents=True)
    for name, value in (("flags", flags), ("carrier", carrier), ("operstate", "down")):
        (base / name).write_text(value + "\n")
    for name in ("rx_errors", "tx_errors", "rx_dropped", "tx_dropped"):
        (base / "statistics" / name).write_text("0\n")
    return CanaryTarget("127.0.0.1", 1, None, interface="lo0", sys_net=root / "net")


def test_link_canary_fails_on_a_down_interface(tmp_path: Path) -> None:
    """L2 fails when the interface is administratively down, and says so."""
    down = canary.probe_link(fake_link(tmp_path, "0x8", "0"))
    assert not down.ok and "not up" in str(down.error) and down.detail["admin_up"] is False


def test_canaries_fail_against_a_closed_port(tmp_path: Path) -> None:
    """L4, L5, L7 and L6 fail (with the error) when nothing listens; L3 still resolves."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = CanaryTarget("127.0.0.1", port, f"http://127.0.0.1:{port}")
    assert canary.probe_network(target).ok
    assert not canary.probe_transport(target, timeout_s=1.0).ok
    assert not canary.probe_session(target, timeout_s=1.0).ok
    l7, l6 = canary.probe_application(target)
    assert not l7.ok and not l6.ok and "L7 failed first" in str(l6.error)
    assert canary.probe_tls(DataDir(tmp_path), "127.0.0.1", l6).detail["tls"] == "off"
    assert CanaryTarget("127.0.0.1", 1, "https://example.invalid").upstream() == (
        "example.invalid",
        443,
    )
    assert CanaryTarget("127.0.0.1", 1, "nonsense").upstream() is None


def test_canary_records_counts_staleness_and_metrics(store: Store) -> None:
    """Results accumulate counts, go stale, gate `failing`, and become metric samples."""
    ok = canary.ProbeResult("L7", True, 0.01, {"task_latency_s": 0.02, "result": {"cost_ms": 2}})
    bad = canary.ProbeResult("L7", False, 0.5, {}, "submit answered 503")
    canary.record(store, [ok], now=100.0)
    canary.record(store, [bad], now=101.0)
    (entry,) = canary.record(store, [bad], now=102.0)
    assert entry["consecutive_failures"] == 2 and entry["checks_total"] == 3
    assert canary.load(store, now=103.0)["L7"]["stale"] is False
    assert canary.load(store, now=200.0)["L7"]["stale"] is True
    assert canary.failing(store, "L7") is None  # stale at wall-clock time now
    canary.record(store, [bad])
    assert canary.failing(store, "L7", min_failures=3) is not None
    families = {f.name: f for f in canary.metric_families(store)}
    assert families["guardian_canary_up"].samples[0].value == 0.0
    assert families["guardian_canary_failures"].samples[0].value == 3.0
    report = canary.json_report(store)
    assert report["layers"]["L2"] == {"name": "link"} and report["known_good"] is None


def test_file_size_limit_helpers() -> None:
    """Limits below the baseline count as drift; unlimited never does; formatting is prlimit's."""
    unlimited = resource.RLIM_INFINITY
    assert canaries._below(0, unlimited) and canaries._below(10, 20)
    assert not canaries._below(unlimited, unlimited) and not canaries._below(30, 20)
    assert canaries._show(unlimited) == "unlimited" and canaries._show(5) == "5"


def test_column_ddl_refuses_not_null_without_default() -> None:
    """A nullable column is re-added; NOT NULL needs a default to be added to existing rows."""
    assert canaries.column_ddl("t", ("c", "TEXT", 0, None)) == 'ALTER TABLE "t" ADD COLUMN "c" TEXT'
    assert canaries.column_ddl("t", ("c", "INTEGER", 1, "0")) == (
        'ALTER TABLE "t" ADD COLUMN "c" INTEGER NOT NULL DEFAULT 0'
    )
    assert canaries.column_ddl("t", ("c", "INTEGER", 1, None)) is None


def test_log_reopen_on_sigusr2(tmp_path: Path) -> None:
    """SIGUSR2 makes this process reopen a deleted log file and keep appending to the new one."""
    log_path = tmp_path / "logs" / "guardian.log"
    logsetup.configure("test", log_path)
    try:
        log_path.unlink()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert wait_for(log_path.exists, 5)
        assert '"msg": "log file reopened"' in log_path.read_text()
    finally:
        logsetup.configure("test", None)
