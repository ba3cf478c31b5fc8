"""A throwaway PostgreSQL cluster from Debian's package: initdb, foreground server, ready, database, stopped by pid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.errors import TargetError, ToolMissingError
from harness.lifecycle import free_port
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
