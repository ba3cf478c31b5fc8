"""G4 faults on a declared dependency: a PostgreSQL cluster behind the proxy, crashed and started again, locked."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from chaos.experiments import ChaosPolicy, DependencyKillFault, PgLockFault
from chaos.faults import injector_for
from chaos.faults.database import DependencyKillInjector, PgLockInjector
from chaos.instance import ChaosInstance, ChaosLauncher, DependencyRun, InstanceOptions
from chaos.toxiproxy_client import ToxiproxyClient
from harness.errors import ConfigError, TargetError, ToolMissingError
from harness.postgres import find_bindir
from harness.procs import ProcessRegistry
from tests.harness.test_lifecycle import SLEEPY, sleepy_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def psql() -> Path:
    """Debian's psql, or a skip naming the package."""
    try:
        return find_bindir() / "psql"
    except ToolMissingError as exc:
        pytest.skip(exc.message)


@pytest.fixture(scope="module")
def pg_instance(
    psql: Path, toxiproxy_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ChaosLauncher, ChaosInstance]]:
    """A chaos instance of the sleepy fixture whose service depends on a PostgreSQL cluster behind the proxy."""
    del psql
    config = sleepy_config(env={"DB": "{db_url}"}, dependencies={"db": {"kind": "postgresql", "database": "shelf"}})
    client = ToxiproxyClient(toxiproxy_url, timeout_s=10.0)
    launcher = ChaosLauncher(config, SLEEPY, tmp_path_factory.mktemp("chaos-pg"), ProcessRegistry(), client)
    inst = launcher.start(Path(sys.executable), "pg", InstanceOptions())
    yield launcher, inst
    launcher.stop(inst)


def _sql(psql: Path, url: str, query: str) -> subprocess.CompletedProcess[str]:
    """One psql query against url (output unaligned, tuples only)."""
    return subprocess.run([str(psql), url, "-XtAc", query], capture_output=True, text=True, timeout=30, check=False)


def test_the_service_gets_the_database_url_through_the_proxy(
    pg_instance: tuple[ChaosLauncher, ChaosInstance], psql: Path
) -> None:
    """[service] env {db_url} is postgresql://certify@127.0.0.1:<proxy port>/shelf, and queries pass the proxy."""
    _launcher, inst = pg_instance
    url = psutil.Process(inst.service.pid).environ()["DB"]
    proxy_port = inst.toxiproxy.get_proxy(inst.proxies["db"]).port
    assert url == f"postgresql://certify@127.0.0.1:{proxy_port}/shelf"
    assert inst.dependency_runs["db"].port != proxy_port
    assert _sql(psql, url, "SELECT current_database()").stdout.strip() == "shelf"


def test_a_killed_cluster_is_gone_with_its_backends_and_starts_again_on_its_data(
    pg_instance: tuple[ChaosLauncher, ChaosInstance], psql: Path
) -> None:
    """dependency_kill: postmaster and a session's backend are gone; remove starts it on the same port and data."""
    _launcher, inst = pg_instance
    url = psutil.Process(inst.service.pid).environ()["DB"]
    create = "SET synchronous_commit = on; CREATE TABLE IF NOT EXISTS kept (n int); INSERT INTO kept VALUES (7)"
    assert _sql(psql, url, create).returncode == 0  # acknowledged once written: a crash keeps it
    session = subprocess.Popen([str(psql), url, "-Xq"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)  # a backend
    try:
        injector = injector_for(DependencyKillFault(type="dependency_kill", dependency="db"))
        old = inst.procs["db"].pid
        facts = injector.inject(inst)
        assert facts["signal"] == "SIGKILL"
        assert facts["processes"] >= 2  # the postmaster and at least the session's backend
        assert _sql(psql, url, "SELECT 1").returncode != 0
        back = injector.remove(inst)
        assert back["action"] == "started again"
        assert back["pid"] != old
        assert _sql(psql, url, "SELECT n FROM kept").stdout.strip() == "7"
        assert injector.remove(inst)["action"].startswith("none")  # idempotent: it runs
    finally:
        session.kill()
        session.wait(timeout=10)
        assert session.stdin is not None
        session.stdin.close()


def test_a_locked_table_blocks_queries_until_the_fault_is_removed(
    pg_instance: tuple[ChaosLauncher, ChaosInstance], psql: Path
) -> None:
    """pg_lock holds ACCESS EXCLUSIVE on the table: a query on it times out waiting; after remove it answers."""
    _launcher, inst = pg_instance
    url = psutil.Process(inst.service.pid).environ()["DB"]
    assert _sql(psql, url, "CREATE TABLE IF NOT EXISTS shelved (n int)").returncode == 0
    injector = PgLockInjector(PgLockFault(type="pg_lock", dependency="db", table="shelved"))
    assert injector.unavailable() is None
    facts = injector.inject(inst)
    try:
        assert facts["mode"] == "ACCESS EXCLUSIVE"
        blocked = _sql(psql, url, "SET lock_timeout = 300; SELECT count(*) FROM shelved")
        assert "lock timeout" in blocked.stderr
    finally:
        assert injector.remove(inst)["action"] == "rolled back"
    assert _sql(psql, url, "SET lock_timeout = 300; SELECT count(*) FROM shelved").stdout.strip().endswith("0")
    assert injector.remove(inst)["action"].startswith("none")


def test_a_lock_on_a_missing_table_is_a_clear_error(pg_instance: tuple[ChaosLauncher, ChaosInstance]) -> None:
    """pg_lock on a table that does not exist raises one line naming the table and psql's reason."""
    _launcher, inst = pg_instance
    injector = PgLockInjector(PgLockFault(type="pg_lock", dependency="db", table="nosuch"))
    try:
        with pytest.raises(TargetError, match=r"lock on nosuch .*does not exist"):
            injector.inject(inst)
    finally:
        assert injector.remove(inst)["action"] == "none (psql had exited)"


def test_faults_naming_an_unknown_or_wrong_kind_of_dependency_are_config_errors(tmp_path: Path) -> None:
    """An undeclared dependency names the declared ones; pg_lock on a process dependency says it needs postgresql."""
    inst = ChaosInstance(name="x", port=1, data_dir=tmp_path, log_dir=tmp_path, toxiproxy=None)  # type: ignore[arg-type]
    inst.dependency_runs["upstream"] = DependencyRun("process", ("x",), (), 1, "/", 1.0)
    with pytest.raises(ConfigError, match=r"no \[service.dependencies.db\] to fault \(dependencies: upstream\)"):
        DependencyKillInjector(DependencyKillFault(type="dependency_kill", dependency="db")).inject(inst)
    with pytest.raises(ConfigError, match="needs a dependency of kind postgresql; upstream is process"):
        PgLockInjector(PgLockFault(type="pg_lock", dependency="upstream", table="t")).inject(inst)
    with pytest.raises(ValueError, match="table"):
        ChaosPolicy.model_validate({"experiments": [{
            "id": "x", "title": "x", "requirement": "C2",
            "fault": {"type": "pg_lock", "dependency": "db", "table": "books; DROP TABLE books"},
        }]})  # fmt: skip
