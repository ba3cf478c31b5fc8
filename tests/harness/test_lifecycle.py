"""Tests for harness.lifecycle (and the process handling under it) with the sleepy fixture target."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.config import CertifyConfigBase, load_config, parse_config
from harness.errors import TargetError, ToolMissingError
from harness.lifecycle import InstanceLauncher, TargetVenv, free_port, target_env, wait_http_ok
from harness.procs import ProcessRegistry, run_tool
from tests.conftest import FIXTURE_TARGETS

pytestmark = pytest.mark.integration

SLEEPY = FIXTURE_TARGETS / "sleepy"
SLEEPY_DATA: dict[str, Any] = tomllib.loads((SLEEPY / "certify.toml").read_text(encoding="utf-8"))
PLANTED_NAME = "AWS_SECRET_ACCESS_KEY"
PLANTED_VALUE = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTEDKEY"
# A service that ignores SIGTERM but serves HTTP, so only the SIGKILL after the grace stops it.
STUBBORN_SERVICE = (
    "import runpy, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "sys.argv = ['http.server', sys.argv[1], '--bind', '127.0.0.1']; "
    "runpy.run_module('http.server', run_name='__main__')"
)


class RecordingRegistry(ProcessRegistry):
    """A process registry that also remembers every pid it was ever given."""

    def __init__(self) -> None:
        """Start empty, with an empty history."""
        super().__init__()
        self.history: list[int] = []

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        """Track the child and note its pid forever."""
        super().add(proc)
        self.history.append(proc.pid)


def is_running(pid: int) -> bool:
    """Whether a pid is a live process (a zombie awaiting its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], timeout_s: float = 3.0) -> list[int]:
    """Pids still running after waiting up to timeout_s for them to go."""
    deadline = time.monotonic() + timeout_s
    alive = [pid for pid in pids if is_running(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if is_running(pid)]
    return alive


def sleepy_config(**service: Any) -> CertifyConfigBase:
    """The sleepy fixture's config with some [service] keys replaced."""
    data = copy.deepcopy(SLEEPY_DATA)
    data["service"].update(service)
    return parse_config(data, "sleepy/certify.toml")


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The interpreter of sleepy's bare venv (install.command = []), built once in a private cache."""
    cache = tmp_path_factory.mktemp("venv-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTIFY_PYTHON", sys.executable)
        venv = TargetVenv(load_config(SLEEPY), SLEEPY, cache)
        yield venv.python(tmp_path_factory.mktemp("venv-logs"))


@pytest.fixture
def registry() -> RecordingRegistry:
    """A private process registry per test, so leftovers are attributable."""
    return RecordingRegistry()


def launcher(config: CertifyConfigBase, work_dir: Path, registry: ProcessRegistry) -> InstanceLauncher:
    """An instance launcher for the sleepy target working under work_dir."""
    return InstanceLauncher(config, SLEEPY, work_dir, registry=registry)


def test_bare_venv_is_created_without_pip_and_reused(venv_python: Path, tmp_path: Path) -> None:
    """install.command = [] gives a pip-less venv that a second TargetVenv reuses without reinstalling."""
    venv = venv_python.parent.parent
    assert venv_python.exists()
    assert (venv / ".certify-installed").is_file()
    assert not list(venv.glob("lib/python*/site-packages/pip"))
    log_dir = tmp_path / "logs"
    again = TargetVenv(load_config(SLEEPY), SLEEPY, venv.parent).python(log_dir)
    assert again == venv_python
    assert not log_dir.exists()


def test_fingerprint_follows_the_hash_files(tmp_path: Path) -> None:
    """Changing a hash file (here certify.toml) changes the venv fingerprint, so the venv is rebuilt."""
    target = tmp_path / "sleepy"
    target.mkdir()
    toml = target / "certify.toml"
    toml.write_bytes((SLEEPY / "certify.toml").read_bytes())
    before = TargetVenv(load_config(target), target, tmp_path / "cache").fingerprint()
    toml.write_text(toml.read_text(encoding="utf-8") + "# touched\n", encoding="utf-8")
    after = TargetVenv(load_config(target), target, tmp_path / "cache").fingerprint()
    assert before != after


def test_another_checkout_never_reuses_a_venv(tmp_path: Path) -> None:
    """Two checkouts with identical files get different venvs: an editable install runs its own checkout's code."""
    fingerprints = []
    for name in ("one", "two"):
        target = tmp_path / name / "sleepy"
        target.mkdir(parents=True)
        (target / "certify.toml").write_bytes((SLEEPY / "certify.toml").read_bytes())
        fingerprints.append(TargetVenv(load_config(target), target, tmp_path / "cache").fingerprint())
    assert fingerprints[0] != fingerprints[1]


def test_failing_install_step_is_a_target_error_naming_its_log(tmp_path: Path) -> None:
    """An install command that fails raises TargetError naming the step and the log in the pack, not quoting it."""
    data = copy.deepcopy(SLEEPY_DATA)
    data["install"]["command"] = ["{python}", "-c", "import sys; sys.exit('no wheels today')"]
    venv = TargetVenv(parse_config(data, "x.toml"), SLEEPY, tmp_path / "cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTIFY_PYTHON", sys.executable)
        with pytest.raises(TargetError) as raised:
            venv.python(tmp_path / "logs")
    assert raised.value.message == (
        "installing sleepy: step 'install' exited 1 with an error message; "
        "its full output is in target/install-install.stderr.txt"
    )
    assert (tmp_path / "logs" / "install-install.stderr.txt").read_text(encoding="utf-8") == "no wheels today\n"


def test_two_runs_wanting_one_venv_install_it_once(tmp_path: Path) -> None:
    """Two harnesses asking for the same venv at once: one installs, the other waits on the lock and reuses it."""
    count = tmp_path / "installs.txt"
    data = copy.deepcopy(SLEEPY_DATA)
    data["install"]["command"] = [
        "{python}",
        "-c",
        f"import pathlib, time; p = pathlib.Path({str(count)!r}); "
        "p.write_text((p.read_text() if p.exists() else '') + 'x'); time.sleep(1.5)",
    ]
    config = parse_config(data, "x.toml")
    found: list[Path] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTIFY_PYTHON", sys.executable)
        threads = [
            threading.Thread(
                target=lambda i=i: found.append(
                    TargetVenv(config, SLEEPY, tmp_path / "cache").python(tmp_path / f"logs{i}")
                )
            )
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert len(found) == 2
    assert found[0] == found[1]
    assert count.read_text(encoding="utf-8") == "x"


def test_install_step_crashing_with_a_traceback_names_the_exception_only(tmp_path: Path) -> None:
    """An install step that dies with a traceback gives its exception's name, never a cut-off piece of the traceback."""
    data = copy.deepcopy(SLEEPY_DATA)
    data["install"]["command"] = ["{python}", "-c", "import json; json.loads('not json')"]
    venv = TargetVenv(parse_config(data, "x.toml"), SLEEPY, tmp_path / "cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTIFY_PYTHON", sys.executable)
        with pytest.raises(TargetError) as raised:
            venv.python(tmp_path / "logs")
    message = raised.value.message
    assert "exited 1 with a Python traceback ending in json.decoder.JSONDecodeError;" in message
    assert "File " not in message


def test_free_port_can_be_bound() -> None:
    """free_port returns a loopback port that can be bound right away."""
    port = free_port()
    assert 0 < port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_target_env_drops_harness_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """target_env passes PATH and friends but not a secret from the harness's environment."""
    monkeypatch.setenv(PLANTED_NAME, PLANTED_VALUE)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_" + "a" * 36)
    env = target_env({"APP_MODE": "test"}, venv=tmp_path / "venv")
    assert PLANTED_NAME not in env
    assert "GITHUB_TOKEN" not in env
    assert PLANTED_VALUE not in env.values()
    assert env["APP_MODE"] == "test"
    assert env["VIRTUAL_ENV"] == str(tmp_path / "venv")
    assert env["PATH"].startswith(f"{tmp_path / 'venv' / 'bin'}{os.pathsep}")
    assert env["PYTHONUNBUFFERED"] == "1"


def test_instance_starts_answers_and_stops_cleanly(
    venv_python: Path, registry: RecordingRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance answers on its own port without the harness's secrets, and stop() leaves no process."""
    monkeypatch.setenv(PLANTED_NAME, PLANTED_VALUE)
    starter = launcher(sleepy_config(), tmp_path, registry)
    instance = starter.start(venv_python, "T")
    try:
        assert instance.name == "T-1"
        with urllib.request.urlopen(instance.base_url + "/", timeout=5) as response:  # noqa: S310 - loopback
            assert response.status == 200
        service = psutil.Process(instance.service.pid)
        assert PLANTED_NAME not in service.environ()
        assert instance.data_dir.is_dir()
        assert instance.data_dir.is_relative_to(tmp_path)
    finally:
        starter.stop(instance)
    assert instance.service.returncode is not None
    assert wait_gone(registry.history) == []
    assert registry.pids() == []
    assert {path.name for path in instance.output_files()} == {"service.stdout.txt", "service.stderr.txt"}


def test_two_instances_are_isolated(venv_python: Path, registry: RecordingRegistry, tmp_path: Path) -> None:
    """Two instances get different names, ports and data directories."""
    starter = launcher(sleepy_config(), tmp_path, registry)
    first = starter.start(venv_python, "A")
    try:
        second = starter.start(venv_python, "A")
        try:
            assert first.name != second.name
            assert first.port != second.port
            assert first.data_dir != second.data_dir
        finally:
            starter.stop(second)
    finally:
        starter.stop(first)
    assert wait_gone(registry.history) == []


def test_service_ignoring_sigterm_is_killed_after_the_grace(
    venv_python: Path, registry: RecordingRegistry, tmp_path: Path
) -> None:
    """A service that ignores SIGTERM is SIGKILLed once stop_grace_s has passed."""
    config = sleepy_config(command=["{python}", "-c", STUBBORN_SERVICE, "{port}"], stop_grace_s=1)
    starter = launcher(config, tmp_path, registry)
    instance = starter.start(venv_python, "stubborn")
    start = time.monotonic()
    starter.stop(instance)
    assert time.monotonic() - start < 5
    assert wait_gone(registry.history) == []


def test_service_that_exits_at_once_is_a_target_error_with_its_stderr(
    venv_python: Path, registry: RecordingRegistry, tmp_path: Path
) -> None:
    """A service that dies on start gives a prompt TargetError quoting its exit code and captured stderr."""
    code = "import sys; print('bad config', file=sys.stderr); sys.exit(3)"
    starter = launcher(sleepy_config(command=["{python}", "-c", code]), tmp_path, registry)
    start = time.monotonic()
    with pytest.raises(TargetError) as caught:
        starter.start(venv_python, "bad")
    assert time.monotonic() - start < 5
    message = caught.value.message
    assert "exited with code 3" in message
    assert "captured stderr: bad config" in message
    assert any(Path(str(path)).name == "service.stderr.txt" for path in caught.value.output_files)
    assert wait_gone(registry.history) == []


def test_service_never_ready_times_out_and_is_stopped(
    venv_python: Path, registry: RecordingRegistry, tmp_path: Path
) -> None:
    """A service that never answers gives TargetError soon after its startup deadline, and is gone after."""
    config = sleepy_config(command=["{python}", "-c", "import time; time.sleep(60)"], startup_deadline_s=2)
    starter = launcher(config, tmp_path, registry)
    start = time.monotonic()
    with pytest.raises(TargetError, match="not ready within 2 s"):
        starter.start(venv_python, "mute")
    assert time.monotonic() - start < 5
    assert len(registry.history) == 1
    assert wait_gone(registry.history) == []
    assert registry.pids() == []


def test_launcher_needs_a_service_table(tmp_path: Path) -> None:
    """A config without [service] cannot start instances: ToolMissingError, so the gate is NOT_RUN."""
    data = copy.deepcopy(SLEEPY_DATA)
    del data["service"]
    with pytest.raises(ToolMissingError, match=r"no \[service\] table"):
        InstanceLauncher(parse_config(data, "x.toml"), SLEEPY, tmp_path)


def test_wait_http_ok_raises_when_the_process_dies(tmp_path: Path) -> None:
    """wait_http_ok stops waiting as soon as the process it waits for has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(4)"])
    proc.wait(timeout=10)
    with pytest.raises(TargetError, match="exited with code 4"):
        wait_http_ok(f"http://127.0.0.1:{free_port()}/", 10, proc)


def test_wait_http_ok_reports_the_last_error_at_the_deadline(tmp_path: Path) -> None:
    """Polling a closed port ends at the deadline with a TargetError naming the URL."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        url = f"http://127.0.0.1:{free_port()}/ready"
        start = time.monotonic()
        with pytest.raises(TargetError, match=r"not ready within 0\.5 s"):
            wait_http_ok(url, 0.5, proc)
        assert time.monotonic() - start < 3
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_run_tool_returns_the_exit_code_and_output(registry: RecordingRegistry, tmp_path: Path) -> None:
    """A tool that finishes in time reports its exit code, and its output lands in the files."""
    run = run_tool(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(5)"],
        cwd=tmp_path,
        env=target_env(),
        timeout_s=30,
        registry=registry,
        stdout_path=tmp_path / "o.txt",
        stderr_path=tmp_path / "e.txt",
    )
    assert (run.returncode, run.timed_out, run.cancelled) == (5, False, False)
    assert run.stdout() == "out\n"
    assert run.stderr() == "err\n"
    assert registry.pids() == []


def test_run_tool_timeout_kills_child_and_grandchildren(registry: RecordingRegistry, tmp_path: Path) -> None:
    """On timeout the tool, its `sleep` grandchild and one that escaped with setsid are all killed."""
    code = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "escaped = subprocess.Popen(['sleep', '61'], start_new_session=True)\n"
        "print(child.pid, escaped.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    start = time.monotonic()
    run = run_tool(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=target_env(),
        timeout_s=1.5,
        grace_s=1.0,
        registry=registry,
        stdout_path=tmp_path / "o.txt",
        stderr_path=tmp_path / "e.txt",
    )
    assert run.timed_out
    assert run.returncode is None
    assert time.monotonic() - start < 10
    grandchildren = [int(pid) for pid in run.stdout().split()]
    assert len(grandchildren) == 2
    assert wait_gone([*registry.history, *grandchildren]) == []
    assert registry.pids() == []


def test_run_tool_cancel_stops_the_tool(registry: RecordingRegistry, tmp_path: Path) -> None:
    """Setting the cancel event stops a running tool and reports it as cancelled."""
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        run = run_tool(
            ["sleep", "60"],
            cwd=tmp_path,
            env=target_env(),
            timeout_s=60,
            cancel=cancel,
            grace_s=1.0,
            registry=registry,
            stdout_path=tmp_path / "o.txt",
            stderr_path=tmp_path / "e.txt",
        )
    finally:
        timer.cancel()
    assert run.cancelled
    assert not run.timed_out
    assert run.duration_s < 5
    assert wait_gone(registry.history) == []


def test_missing_tool_is_tool_missing_error(registry: RecordingRegistry, tmp_path: Path) -> None:
    """A tool that is not installed raises ToolMissingError naming it (the gate becomes NOT_RUN)."""
    with pytest.raises(ToolMissingError, match="no-such-tool-xyz: command not found"):
        run_tool(
            ["no-such-tool-xyz"],
            cwd=tmp_path,
            env=target_env(),
            timeout_s=5,
            registry=registry,
            stdout_path=tmp_path / "o.txt",
            stderr_path=tmp_path / "e.txt",
        )


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    """Ports handed out side by side in one process are all different, even when released at once."""
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
