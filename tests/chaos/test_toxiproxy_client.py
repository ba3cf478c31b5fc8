"""The harness's typed client and `find_or_start_toxiproxy`: starting, talking to and stopping a server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.toxiproxy_client import (
    SERVER_ENV,
    ToxiproxyApiError,
    ToxiproxyClient,
    find_or_start_toxiproxy,
    server_command,
    stop_toxiproxy,
)
from harness.errors import ToolFailedError
from tests.chaos.conftest import REPO, EchoServer, connect, recv_exactly

pytestmark = pytest.mark.integration


def test_client_round_trip(api: ToxiproxyClient, echo: EchoServer) -> None:
    """Every typed call maps to its endpoint and parses the answer; errors carry the server's status and text."""
    assert api.version() == "2.12.0+embedded"
    proxy = api.create_proxy("c", echo.address)
    assert api.proxies() == {"c": proxy}
    with api.toxic("c", "latency", stream="upstream", attributes={"latency": 5}) as toxic:
        assert toxic.name == "latency_upstream"
        assert api.get_toxic("c", "latency_upstream").attributes == {"latency": 5, "jitter": 0}
        updated = api.update_toxic("c", "latency_upstream", attributes={"jitter": 1}, toxicity=0.5)
        assert (updated.attributes, updated.toxicity) == ({"latency": 5, "jitter": 1}, 0.5)
    assert api.toxics("c") == []
    populated = api.populate([{"name": "d", "listen": "127.0.0.1:0", "upstream": echo.address}])
    assert [p.name for p in populated] == ["d"]
    with pytest.raises(ToxiproxyApiError) as conflict:
        api.create_proxy("c", echo.address)
    assert (conflict.value.status, conflict.value.server_message) == (409, "proxy already exists")
    api.delete_proxy("d")
    with pytest.raises(ToxiproxyApiError) as missing:
        api.get_proxy("d")
    assert missing.value.status == 404


def test_find_or_start_uses_embedded_server_without_binary(
    tmp_path: Path, echo: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without toxiproxy-server on PATH, the embedded server starts on a free loopback port and stops by pid."""
    monkeypatch.delenv(SERVER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert server_command(1234)[:3] == [sys.executable, "-m", "chaos.toxiproxy"]
    monkeypatch.chdir(REPO)
    base_url, process = find_or_start_toxiproxy(tmp_path / "work")
    try:
        assert base_url.startswith("http://127.0.0.1:")
        client = ToxiproxyClient(base_url)
        assert client.version() == "2.12.0+embedded"
        proxy = client.create_proxy("e", echo.address)
        with connect(proxy.listen) as sock:
            sock.sendall(b"ok")
            assert recv_exactly(sock, 2) == b"ok"
    finally:
        stop_toxiproxy(process)
    assert process.returncode == 0
    assert (tmp_path / "work" / "toxiproxy-server.log").exists()


def test_find_or_start_uses_binary_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$TOXIPROXY_SERVER names the binary; it is started with upstream's `-host 127.0.0.1 -port N` flags."""
    binary = tmp_path / "toxiproxy-server"
    binary.write_text(f'#!/bin/sh\ncd {REPO}\nexec {sys.executable} -m chaos.toxiproxy "$@"\n')
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(SERVER_ENV, str(binary))
    base_url, process = find_or_start_toxiproxy(tmp_path)
    try:
        assert process.args[:3] == [str(binary), "-host", "127.0.0.1"]  # type: ignore[index]
        assert ToxiproxyClient(base_url).proxies() == {}
    finally:
        stop_toxiproxy(process)


def test_find_or_start_reports_a_server_that_will_not_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A binary that exits at once gives ToolFailedError naming the exit status and the log file."""
    binary = tmp_path / "broken-toxiproxy"
    binary.write_text("#!/bin/sh\necho cannot start >&2\nexit 3\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(SERVER_ENV, str(binary))
    with pytest.raises(ToolFailedError, match="exited with status 3"):
        find_or_start_toxiproxy(tmp_path)
    assert "cannot start" in (tmp_path / "toxiproxy-server.log").read_text()


def test_server_refuses_a_non_loopback_api_address(tmp_path: Path) -> None:
    """`python -m chaos.toxiproxy --host 0.0.0.0` exits with status 2 and says why, binding nothing."""
    result = subprocess.run(
        [sys.executable, "-m", "chaos.toxiproxy", "--host", "0.0.0.0", "--port", "0"],  # noqa: S104 -- refused
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "LOG_LEVEL": "error"},
    )
    assert result.returncode == 2
    assert "must be on loopback" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_file_populates_at_boot(tmp_path: Path, echo: EchoServer) -> None:
    """`--config FILE` (the /populate format) creates its proxies when the server starts."""
    config = tmp_path / "proxies.json"
    config.write_text(json.dumps([{"name": "booted", "listen": "127.0.0.1:0", "upstream": echo.address}]))
    binary = tmp_path / "toxiproxy-with-config"
    binary.write_text(f'#!/bin/sh\ncd {REPO}\nexec {sys.executable} -m chaos.toxiproxy --config {config} "$@"\n')
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SERVER_ENV, str(binary))
        base_url, process = find_or_start_toxiproxy(tmp_path)
    try:
        proxy = ToxiproxyClient(base_url).get_proxy("booted")
        with connect(proxy.listen) as sock:
            sock.sendall(b"boot")
            assert recv_exactly(sock, 4) == b"boot"
    finally:
        stop_toxiproxy(process)
