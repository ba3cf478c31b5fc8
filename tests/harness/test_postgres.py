"""A throwaway PostgreSQL cluster from Debian's package: initdb, foreground server, ready, database, stopped by pid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psutil
import pytest

from harness.errors import ConfigError, TargetError, ToolMissingError
from harness.lifecycle import InstanceLauncher, free_port
from harness.postgres import (
    RunAs,
    create_database,
    find_bindir,
    init_cluster,
    run_as,
    server_argv,
    wait_ready,
)
from harness.procs import ProcessRegistry, spawn, stop_many
from tests.harness.test_lifecycle import SLEEPY, sleepy_config, venv_python  # noqa: F401 - venv_python: fixture

pytestmark = pytest.mark.integration


@pytest.fixture
def bindir() -> Path:
    """Debian's PostgreSQL binaries, or a skip naming the package."""
    try:
        return find_bindir()
    except ToolMissingError as exc:
        pytest.skip(exc.message)


def test_a_cluster_starts_on_loopback_takes_a_database_and_stops_by_pid(tmp_path: Path, bindir: Path) -> None:
    """initdb into the data dir, postgres ready on a free port, a database created and queried, gone after stop."""
    who, cluster, port = run_as(), tmp_path / "data" / "db", free_port()
    init_cluster(bindir, cluster, who)
    registry = ProcessRegistry()
    proc = spawn(
        server_argv(bindir, cluster, port, who), cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
        stdout_path=tmp_path / "pg.out", stderr_path=tmp_path / "pg.err", registry=registry,
    )  # fmt: skip
    try:
        assert wait_ready(bindir, port, 30, proc) < 30
        url = create_database(bindir, port, "shelf", who)
        assert url == f"postgresql://certify@127.0.0.1:{port}/shelf"
        query = [str(bindir / "psql"), url, "-tAc", "SELECT current_database(), inet_server_addr()"]
        done = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True)
        assert done.stdout.strip() == "shelf|127.0.0.1"
    finally:
        stop_many([proc], 10)
    assert proc.poll() is not None
    with pytest.raises(TargetError, match="exited with code"):
        wait_ready(bindir, port, 2, proc)


def test_a_missing_server_and_a_failing_initdb_are_one_line_each(tmp_path: Path, bindir: Path) -> None:
    """No PostgreSQL under the root is ToolMissingError with the apt line; initdb into a used folder is TargetError."""
    with pytest.raises(ToolMissingError, match="apt-get install -y postgresql"):
        find_bindir(tmp_path)
    (tmp_path / "used").mkdir()
    with pytest.raises(FileExistsError):
        init_cluster(bindir, tmp_path / "used", RunAs())
    assert RunAs().wrap(["x"]) == ["x"]
    assert RunAs("postgres", 101, 104).wrap(["x"])[:3] == ["setpriv", "--reuid=101", "--regid=104"]


def test_a_postgresql_dependency_is_up_before_the_service_and_gone_after_it(
    tmp_path: Path,
    bindir: Path,
    venv_python: Path,  # noqa: F811 - the fixture imported above
) -> None:
    """[service.dependencies.db] kind postgresql: its URL in the service's env, its cluster in the data dir; stopped."""
    del bindir
    config = sleepy_config(
        env={"DATABASE_URL": "{db_url}"}, dependencies={"db": {"kind": "postgresql", "database": "shelf"}}
    )
    launcher = InstanceLauncher(config, SLEEPY, tmp_path, registry=ProcessRegistry())
    instance = launcher.start(venv_python, "pg")
    try:
        url = instance.values["db_url"]
        assert url == f"postgresql://certify@127.0.0.1:{instance.values['db_port']}/shelf"
        assert psutil.Process(instance.service.pid).environ()["DATABASE_URL"] == url
        assert (instance.data_dir / "db" / "PG_VERSION").is_file()
        pids = [proc.pid for proc in instance.procs.values()]
    finally:
        launcher.stop(instance)
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]


def test_a_postgresql_dependency_takes_no_command_and_env_placeholders_are_checked() -> None:
    """A command on a postgresql dependency, or an env value naming an unknown placeholder, is refused at load."""
    with pytest.raises(ConfigError, match="started by the harness"):
        sleepy_config(dependencies={"db": {"kind": "postgresql", "command": ["x"]}})
    with pytest.raises(ConfigError, match="unknown placeholder"):
        sleepy_config(env={"DATABASE_URL": "{nope_url}"})
