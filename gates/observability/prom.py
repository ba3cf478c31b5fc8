"""A real Prometheus for gate G6: generated config, 127.0.0.1 on a free port, own data dir, stopped by pid.

The server scrapes one target instance every `scrape_interval_s` and evaluates the rule files it is
given at the same interval. Its TSDB lives in the gate's scratch directory and never enters the pack:
only the answers of its HTTP API (queried here with urllib) are kept as evidence.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ToolFailedError, ToolMissingError
from harness.lifecycle import free_port, target_env
from harness.procs import REGISTRY, spawn, stop_many, tail

INSTALL_HINT = "apt-get install prometheus  (Debian/Ubuntu: ships both prometheus and promtool)"
JOB = "target"
READY_DEADLINE_S = 30.0
HTTP_TIMEOUT_S = 10.0


def find_binary(name: str) -> Path:
    """The path of a Prometheus binary (prometheus, promtool); NOT_RUN with the install hint when missing."""
    found = shutil.which(name)
    if found is None:
        msg = f"{name} is not installed (needed to scrape the target and evaluate its alert rules)"
        raise ToolMissingError(msg, hint=INSTALL_HINT)
    return Path(found)


def binary_version(binary: Path) -> str:
    """The first line of `<binary> --version` (e.g. 'prometheus, version 2.42.0+ds ...')."""
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def render_config(
    target: str, metrics_path: str, interval_s: float, rule_files: list[Path], targets_file: Path | None = None
) -> str:
    """prometheus.yml: one job scraping `target` (host:port) at `metrics_path`, rules evaluated as often.

    With `targets_file` the job discovers its targets from that JSON file instead (file_sd; the
    harness rewrites it as instances start and stop) and `target` is ignored.
    """
    every = _duration(interval_s)
    discovery: dict[str, Any] = {"static_configs": [{"targets": [target]}]}
    if targets_file is not None:
        discovery = {"file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}]}
    config = {
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": JOB,
                "scrape_interval": every,
                "scrape_timeout": _duration(max(0.5, interval_s * 0.8)),
                "metrics_path": metrics_path,
                **discovery,
            }
        ],
    }
    # JSON is valid YAML, so no YAML writer is needed for a generated config.
    return json.dumps(config, indent=2) + "\n"


def _duration(seconds: float) -> str:
    """A Prometheus duration string (integer units only): whole milliseconds."""
    return f"{round(seconds * 1000)}ms"


@dataclass
class PrometheusServer:
    """One running Prometheus; `stop` ends it by pid (its process group), whatever state it is in."""

    binary: Path
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>."""
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        binary: Path,
        workdir: Path,
        *,
        target: str,
        metrics_path: str,
        interval_s: float,
        rule_files: list[Path],
        targets_file: Path | None = None,
    ) -> PrometheusServer:
        """Write the config, start the server on a free loopback port and wait until it is ready."""
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        text = render_config(target, metrics_path, interval_s, rule_files, targets_file)
        config.write_text(text, encoding="utf-8")
        server = cls(binary=binary, workdir=workdir, port=free_port())
        argv = [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{server.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        server.proc = spawn(
            argv,
            cwd=workdir,
            env=target_env(),
            stdout_path=workdir / "prometheus.stdout.txt",
            stderr_path=workdir / "prometheus.stderr.txt",
        )
        server.wait_ready()
        return server

    def wait_ready(self) -> None:
        """Poll /-/ready until it answers 200; a server that exits or stays unready is a tool failure."""
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                self.stop()
                msg = f"prometheus exited with code {self.proc.returncode}: {self.stderr_tail()}"
                raise ToolFailedError(msg)
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        msg = f"prometheus not ready within {READY_DEADLINE_S:g} s: {self.stderr_tail()}"
        raise ToolFailedError(msg)

    def stderr_tail(self) -> str:
        """The end of the server's log."""
        return tail(self.workdir / "prometheus.stderr.txt", 1500).strip() or "(empty)"

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after a grace period."""
        if self.proc is None:
            return
        stop_many([self.proc], 10.0)
        REGISTRY.discard(self.proc)

    def api(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET /api/v1/<path>; returns the JSON body, including error bodies (status 'error')."""
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        url = f"{self.url}/api/v1/{path}{query}"
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp:  # noqa: S310 - loopback
                body: dict[str, Any] = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            # 400/422/503 carry {"status": "error", "errorType": ..., "error": ...}.
            text = exc.read().decode("utf-8", "replace")
            try:
                body = json.loads(text)
            except json.JSONDecodeError:
                body = {"status": "error", "errorType": f"http_{exc.code}", "error": text[:500]}
        except (urllib.error.URLError, OSError) as exc:
            body = {"status": "error", "errorType": "unreachable", "error": str(exc)}
        return body

    def query(self, expr: str, at: float) -> dict[str, Any]:
        """An instant query evaluated at unix time `at`."""
        return self.api("query", {"query": expr, "time": f"{at:.3f}"})

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> dict[str, Any]:
        """A range query over [start, end]."""
        return self.api(
            "query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}s"}
        )
