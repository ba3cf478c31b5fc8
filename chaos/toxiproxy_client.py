"""A small typed client for the Toxiproxy HTTP API, and a way to get a server running for the chaos gate.

`ToxiproxyClient` speaks to any Toxiproxy 2.x server (the real `toxiproxy-server` or the embedded
`python -m chaos.toxiproxy`) with the standard library only: every call has a timeout, ignores
http(s)_proxy settings (the server is on loopback) and raises `ToxiproxyApiError` with the server's
status and message. `find_or_start_toxiproxy` starts a server on a free 127.0.0.1 port.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from harness.errors import HarnessError, ToolFailedError

REQUEST_TIMEOUT_S = 30.0
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
#: Environment variable naming a `toxiproxy-server` binary to use instead of the one on PATH.
SERVER_ENV = "TOXIPROXY_SERVER"


class ToxiproxyApiError(HarnessError):
    """The server answered an error status; `status` and `message` are the server's."""

    def __init__(self, status: int, message: str) -> None:
        """Keep the HTTP status and the server's error message."""
        super().__init__(f"toxiproxy API error {status}: {message}")
        self.status = status
        self.server_message = message


@dataclass(frozen=True)
class ToxicInfo:
    """A toxic as the server reports it."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ToxicInfo:
        """Build from the API's toxic object."""
        attributes = data.get("attributes") or {}
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            stream=str(data["stream"]),
            toxicity=float(data["toxicity"]),  # type: ignore[arg-type]
            attributes=dict(attributes),  # type: ignore[call-overload]
        )


@dataclass(frozen=True)
class ProxyInfo:
    """A proxy as the server reports it (`listen` is the bound address while it is enabled)."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[ToxicInfo, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ProxyInfo:
        """Build from the API's proxy object."""
        toxics = data.get("toxics") or []
        return cls(
            name=str(data["name"]),
            listen=str(data["listen"]),
            upstream=str(data["upstream"]),
            enabled=bool(data["enabled"]),
            toxics=tuple(ToxicInfo.from_json(toxic) for toxic in toxics),  # type: ignore[attr-defined]
        )

    @property
    def port(self) -> int:
        """The listen port."""
        return int(self.listen.rsplit(":", 1)[1])


class ToxiproxyClient:
    """Calls to one Toxiproxy server at `base_url` (e.g. `http://127.0.0.1:8474`)."""

    def __init__(self, base_url: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        """A client with a per-request timeout; no connection is made until the first call."""
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)  # noqa: S310 -- http only
        request.add_header("User-Agent", "release-harness-toxiproxy-client")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", errors="replace")
            try:
                message = str(json.loads(text)["error"])
            except (ValueError, KeyError, TypeError):
                message = text.strip()
            raise ToxiproxyApiError(exc.code, message) from None
        return json.loads(payload) if payload.strip() else None

    def version(self) -> str:
        """The server's version string (`2.12.0`, or `2.12.0+embedded` for the embedded server)."""
        value = self._call("GET", "/version")
        return str(value["version"]) if isinstance(value, dict) else str(value)

    def proxies(self) -> dict[str, ProxyInfo]:
        """Every proxy by name."""
        value = self._call("GET", "/proxies")
        assert isinstance(value, dict)  # noqa: S101 -- the API contract; a violation is a bug to surface
        return {name: ProxyInfo.from_json(proxy) for name, proxy in value.items()}

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0", *, enabled: bool = True) -> ProxyInfo:
        """Create a proxy (409 if the name exists); `listen` defaults to a free loopback port."""
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return ProxyInfo.from_json(self._dict("POST", "/proxies", body))

    def populate(self, proxies: list[Mapping[str, object]]) -> list[ProxyInfo]:
        """Create or replace proxies in one call (server-side `/populate`)."""
        value = self._dict("POST", "/populate", list(proxies))
        return [ProxyInfo.from_json(proxy) for proxy in value.get("proxies") or []]  # type: ignore[attr-defined]

    def get_proxy(self, name: str) -> ProxyInfo:
        """One proxy (404 if unknown)."""
        return ProxyInfo.from_json(self._dict("GET", f"/proxies/{quote(name, safe='')}"))

    def update_proxy(self, name: str, **changes: object) -> ProxyInfo:
        """PATCH `listen`, `upstream` or `enabled` of a proxy."""
        return ProxyInfo.from_json(self._dict("PATCH", f"/proxies/{quote(name, safe='')}", changes))

    def set_enabled(self, name: str, enabled: bool) -> ProxyInfo:
        """Enable or disable a proxy (disabled: listener closed, connections dropped)."""
        return self.update_proxy(name, enabled=enabled)

    def delete_proxy(self, name: str) -> None:
        """Delete a proxy (404 if unknown)."""
        self._call("DELETE", f"/proxies/{quote(name, safe='')}")

    def reset(self) -> None:
        """Re-enable every proxy and remove every toxic."""
        self._call("POST", "/reset")

    def toxics(self, proxy: str) -> list[ToxicInfo]:
        """The toxics of a proxy, upstream chain first."""
        value = self._call("GET", f"/proxies/{quote(proxy, safe='')}/toxics")
        assert isinstance(value, list)  # noqa: S101 -- the API contract
        return [ToxicInfo.from_json(toxic) for toxic in value]

    def add_toxic(
        self,
        proxy: str,
        type_name: str,
        *,
        stream: str = "downstream",
        name: str | None = None,
        toxicity: float = 1.0,
        attributes: Mapping[str, int] | None = None,
    ) -> ToxicInfo:
        """Add a toxic; its name defaults to `<type>_<stream>`."""
        body: dict[str, object] = {"type": type_name, "stream": stream, "toxicity": toxicity}
        body["attributes"] = dict(attributes or {})
        if name is not None:
            body["name"] = name
        return ToxicInfo.from_json(self._dict("POST", f"/proxies/{quote(proxy, safe='')}/toxics", body))

    def get_toxic(self, proxy: str, name: str) -> ToxicInfo:
        """One toxic (404 if unknown)."""
        return ToxicInfo.from_json(self._dict("GET", self._toxic_path(proxy, name)))

    def update_toxic(
        self, proxy: str, name: str, *, attributes: Mapping[str, int] | None = None, toxicity: float | None = None
    ) -> ToxicInfo:
        """PATCH a toxic: attributes are merged, toxicity kept unless given."""
        body: dict[str, object] = {"attributes": dict(attributes or {})}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return ToxicInfo.from_json(self._dict("PATCH", self._toxic_path(proxy, name), body))

    def delete_toxic(self, proxy: str, name: str) -> None:
        """Remove a toxic (404 if unknown)."""
        self._call("DELETE", self._toxic_path(proxy, name))

    @contextlib.contextmanager
    def toxic(self, proxy: str, type_name: str, **options: object) -> Iterator[ToxicInfo]:
        """A toxic for the duration of a `with` block; removed afterwards even when the block fails."""
        added = self.add_toxic(proxy, type_name, **options)  # type: ignore[arg-type]
        try:
            yield added
        finally:
            with contextlib.suppress(ToxiproxyApiError):
                self.delete_toxic(proxy, added.name)

    @staticmethod
    def _toxic_path(proxy: str, name: str) -> str:
        return f"/proxies/{quote(proxy, safe='')}/toxics/{quote(name, safe='')}"

    def _dict(self, method: str, path: str, body: object = None) -> dict[str, object]:
        value = self._call(method, path, body)
        if not isinstance(value, dict):
            raise ToolFailedError(f"toxiproxy answered {method} {path} with {value!r}, not a JSON object")
        return value


def free_loopback_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_command(port: int) -> list[str]:
    """The argv for a server on 127.0.0.1:`port`: $TOXIPROXY_SERVER, else `toxiproxy-server` on PATH, else embedded."""
    binary = os.environ.get(SERVER_ENV) or shutil.which("toxiproxy-server")
    if binary:
        return [binary, "-host", "127.0.0.1", "-port", str(port)]
    return [sys.executable, "-m", "chaos.toxiproxy", "--host", "127.0.0.1", "--port", str(port)]


def find_or_start_toxiproxy(work_dir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """Start a Toxiproxy server on a free loopback port; return its base URL and process (caller stops it).

    Uses a real `toxiproxy-server` (from $TOXIPROXY_SERVER or PATH) when there is one, else the
    embedded server. The process runs in its own session, logging to `work_dir/toxiproxy-server.log`;
    `process.args` tells which server it is. Raises `ToolFailedError` when it does not answer /version.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "toxiproxy-server.log"
    last_error = "not started"
    for _attempt in range(3):  # a free port can be taken between probing and binding
        port = free_loopback_port()
        argv = server_command(port)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        base_url = f"http://127.0.0.1:{port}"
        last_error = _wait_for_version(base_url, process)
        if not last_error:
            return base_url, process
        stop_toxiproxy(process)
    raise ToolFailedError(
        f"toxiproxy server did not start ({last_error}); see {log_path}",
        hint=f"set {SERVER_ENV} to a toxiproxy-server binary, or check that `python -m chaos.toxiproxy` runs",
    )


def _wait_for_version(base_url: str, process: subprocess.Popen[bytes]) -> str:
    """Poll /version until it answers; the failure as a sentence, or "" once it is up."""
    client = ToxiproxyClient(base_url, timeout_s=2.0)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with status {process.returncode}"
        try:
            client.version()
        except (OSError, ToxiproxyApiError, ValueError):
            time.sleep(0.05)
        else:
            return ""
    return f"no answer on {base_url}/version within {START_TIMEOUT_S:.0f} s"


def stop_toxiproxy(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started by `find_or_start_toxiproxy`: SIGTERM its process group, SIGKILL after a grace period."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)
