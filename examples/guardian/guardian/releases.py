"""Versioned releases of a running guardian: deploy a build, roll it back, and alert on a bad one.

A data directory holds one folder per deployed release, ``releases/<version>/release.json`` (the
version and the build it runs), and ``releases/current`` / ``releases/previous`` naming the active
and the one before it. ``python -m guardian.releases deploy`` writes a release folder and switches
``current`` to it atomically; ``rollback`` switches back to ``previous``. The running API re-reads
``current`` at most every ``RELOAD_S`` seconds, so a switch takes effect without a restart.

Two builds exist. ``stable`` is guardian as it is. ``canary-bad`` is the deliberately bad canary of
the rollback drill (C6): its task submission answers 500 for every third request and stores nothing,
the way a broken serializer would. The API counts the answers of ``/api/*`` requests per
release over the last ``ALERT_WINDOW_S`` seconds; when the active release's 5xx share reaches
``ALERT_RATIO`` over at least ``ALERT_MIN_REQUESTS`` requests, the alert ``GuardianReleaseErrors``
fires (``guardian_release_alert_firing`` 1 on /metrics, ``alert.firing`` on ``GET /api/release``).
Rollback is not automatic: an operator (or the certifying harness) runs ``rollback`` on the alert.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guardian import __version__

log = logging.getLogger("guardian.releases")

BUILDS = ("stable", "canary-bad")
ALERT_NAME = "GuardianReleaseErrors"
ALERT_WINDOW_S = 10.0
ALERT_RATIO = 0.05
ALERT_MIN_REQUESTS = 5
RELOAD_S = 0.25
#: The bad canary fails every this-many-th task submission.
CANARY_FAIL_EVERY = 3
SUBMIT_PATH = "/api/tasks"


@dataclass(frozen=True)
class Release:
    """One deployed release: its version and the build it runs."""

    version: str
    build: str


BASELINE = Release(__version__, "stable")


def releases_dir(data_dir: Path) -> Path:
    """Return the folder holding the release folders and the current/previous pointers."""
    return data_dir / "releases"


def _write_atomic(path: Path, text: str) -> None:
    """Replace a small file in one rename, so a reader never sees it half written."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)  # the service may run as another user than the deployer
    tmp.replace(path)


def _store(data_dir: Path, release: Release) -> None:
    """Write ``releases/<version>/release.json``."""
    folder = releases_dir(data_dir) / release.version
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(
        folder / "release.json", json.dumps({"version": release.version, "build": release.build})
    )


def load(data_dir: Path, version: str) -> Release:
    """Read the stored release of a version (ValueError when absent or malformed)."""
    path = releases_dir(data_dir) / version / "release.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        release = Release(str(data["version"]), str(data["build"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"release {version!r}: cannot read {path}: {exc}"
        raise ValueError(msg) from None
    if release.build not in BUILDS:
        msg = f"release {version!r}: unknown build {release.build!r} in {path}"
        raise ValueError(msg)
    return release


def _pointer(data_dir: Path, name: str) -> str | None:
    """Return the version a pointer file names, or None when it does not exist."""
    try:
        return (releases_dir(data_dir) / name).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def active(data_dir: Path) -> Release:
    """Return the active release: ``current``, or the baseline when nothing was deployed."""
    version = _pointer(data_dir, "current")
    return BASELINE if version is None else load(data_dir, version)


def deploy(data_dir: Path, version: str, build: str) -> tuple[Release, Release]:
    """Store a release and make it current; (the one it replaced, the new one)."""
    if build not in BUILDS:
        msg = f"unknown build {build!r} (one of {', '.join(BUILDS)})"
        raise ValueError(msg)
    old = active(data_dir)
    if old.version == version:
        msg = f"release {version} is already current"
        raise ValueError(msg)
    releases_dir(data_dir).mkdir(parents=True, exist_ok=True)
    _store(data_dir, old)
    new = Release(version, build)
    _store(data_dir, new)
    _write_atomic(releases_dir(data_dir) / "previous", old.version)
    _write_atomic(releases_dir(data_dir) / "current", new.version)
    return old, new


def rollback(data_dir: Path) -> tuple[Release, Release]:
    """Make ``previous`` current again; (the one rolled back, the one restored)."""
    version = _pointer(data_dir, "previous")
    if version is None:
        msg = f"nothing to roll back to: {releases_dir(data_dir) / 'previous'} does not exist"
        raise ValueError(msg)
    old, back = active(data_dir), load(data_dir, version)
    _write_atomic(releases_dir(data_dir) / "current", back.version)
    (releases_dir(data_dir) / "previous").unlink()
    return old, back


class ReleaseState:
    """The API process's view of the active release and of each release's recent answers."""

    def __init__(self, data_dir: Path, clock: Any = time.monotonic) -> None:
        """Bind to a data directory; nothing is read until the first request."""
        self.data_dir = data_dir
        self.clock = clock
        self._lock = threading.Lock()
        self._release = BASELINE
        self._read_at: float | None = None
        self._answers: deque[tuple[float, str, bool]] = deque()
        self._submissions = 0
        self._firing = False

    def current(self) -> Release:
        """Return the active release, re-read from disk at most every RELOAD_S seconds."""
        now = self.clock()
        with self._lock:
            if self._read_at is None or now - self._read_at >= RELOAD_S:
                self._read_at = now
                try:
                    release = active(self.data_dir)
                except (ValueError, OSError) as exc:
                    log.error(
                        "release pointer unreadable; keeping %s",
                        self._release.version,
                        extra={"error": str(exc)},
                    )
                    release = self._release
                if release != self._release:
                    log.warning(
                        "release switched",
                        extra={"release": release.version, "build": release.build},
                    )
                    self._release = release
            return self._release

    def fails_submission(self, release: Release) -> bool:
        """Whether this submission hits the bad canary's defect (every CANARY_FAIL_EVERY-th one)."""
        if release.build != "canary-bad":
            return False
        with self._lock:
            self._submissions += 1
            return self._submissions % CANARY_FAIL_EVERY == 0

    def record(self, release: Release, status: int) -> None:
        """Count one answer of an ``/api/*`` request under the release that gave it."""
        now = self.clock()
        with self._lock:
            self._answers.append((now, release.version, status >= 500))
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget answers older than the window (caller holds the lock): memory stays bounded."""
        while self._answers and now - self._answers[0][0] > ALERT_WINDOW_S:
            self._answers.popleft()

    def alert(self) -> dict[str, Any]:
        """Return the alert's state for the active release over the last ALERT_WINDOW_S seconds."""
        release = self.current()
        now = self.clock()
        with self._lock:
            self._prune(now)
            mine = [bad for _t, version, bad in self._answers if version == release.version]
            errors = sum(mine)
            ratio = errors / len(mine) if mine else 0.0
            firing = len(mine) >= ALERT_MIN_REQUESTS and ratio >= ALERT_RATIO
            if firing != self._firing:
                self._firing = firing
                level = logging.ERROR if firing else logging.INFO
                log.log(
                    level,
                    "alert %s %s",
                    ALERT_NAME,
                    "firing" if firing else "resolved",
                    extra={"release": release.version, "error_ratio": round(ratio, 4)},
                )
        return {
            "name": ALERT_NAME,
            "firing": firing,
            "requests": len(mine),
            "errors": errors,
            "error_ratio": round(ratio, 4),
            "window_s": ALERT_WINDOW_S,
        }

    def describe(self) -> dict[str, Any]:
        """``GET /api/release``: the active release, the one a rollback restores, and the alert."""
        release = self.current()
        return {
            "version": release.version,
            "build": release.build,
            "previous": _pointer(self.data_dir, "previous"),
            "alert": self.alert(),
        }


class ReleaseMiddleware:
    """Serve ``GET /api/release``, apply the active build's defect, count ``/api/*`` answers."""

    def __init__(self, app: ASGIApp, state: ReleaseState) -> None:
        """Wrap ``app``."""
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/"):
            await self.app(scope, receive, send)
            return
        if path == "/api/release" and scope["method"] == "GET":
            await _send_json(send, 200, self.state.describe())
            return
        release = self.state.current()
        if (
            path == SUBMIT_PATH
            and scope["method"] == "POST"
            and self.state.fails_submission(release)
        ):
            self.state.record(release, 500)
            await _send_json(send, 500, {"error": "internal_error", "message": "internal error"})
            return
        status = [500]

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            self.state.record(release, status[0])


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    """Answer an ASGI request with a JSON body."""
    raw = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


class ReleaseCollector(Collector):
    """/metrics: ``guardian_release_info`` and ``guardian_release_alert_firing``."""

    def __init__(self, state: ReleaseState) -> None:
        """Bind to the API's release state."""
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the active release and whether its error alert fires."""
        release = self.state.current()
        info = GaugeMetricFamily(
            "guardian_release_info", "The active release (1).", labels=["version", "build"]
        )
        info.add_metric([release.version, release.build], 1.0)
        yield info
        alert = self.state.alert()
        firing = GaugeMetricFamily(
            "guardian_release_alert_firing",
            "1 while the active release's 5xx share of /api requests reaches the alert ratio",
            labels=["alert"],
        )
        firing.add_metric([ALERT_NAME], 1.0 if alert["firing"] else 0.0)
        yield firing


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m guardian.releases deploy|rollback|show``; 0, or 1 with a line on stderr."""
    parser = argparse.ArgumentParser(
        prog="python -m guardian.releases",
        description="Deploy, roll back or show the release of a guardian data directory.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("deploy", "rollback", "show"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--data-dir", type=Path, required=True)
        if name == "deploy":
            cmd.add_argument("--version", required=True)
            cmd.add_argument("--build", choices=BUILDS, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "deploy":
            old, new = deploy(args.data_dir, args.version, args.build)
            print(f"deployed {new.version} ({new.build}); rollback restores {old.version}")  # noqa: T201
        elif args.command == "rollback":
            old, back = rollback(args.data_dir)
            print(f"rolled back {old.version}; {back.version} ({back.build}) is current")  # noqa: T201
        else:
            release = active(args.data_dir)
            print(f"{release.version} ({release.build})")  # noqa: T201
    except (ValueError, OSError) as exc:
        print(f"guardian.releases: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - the module's command line
    raise SystemExit(main())
