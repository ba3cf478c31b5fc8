"""A throwaway PostgreSQL cluster per instance, from Debian's `postgresql` package (a dependency of kind postgresql).

initdb writes a fresh cluster into the instance's data dir (trust authentication, reachable only
over TCP on 127.0.0.1, no Unix socket; fsync off: a test cluster, never a production one),
`postgres` runs in the foreground as one process of the instance (the harness stops it by pid
like every other role), it is ready when `pg_isready` says so, and then the
service's database is created. PostgreSQL refuses to run as root: when the harness is root, each
of its commands runs through `setpriv` (which execs, so the pid is the server's) as an
unprivileged user, Debian's `postgres` system user unless told otherwise, who owns the cluster.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import TargetError, ToolMissingError
from harness.service_user import grant_search

#: Where Debian's postgresql-NN packages put the server binaries.
DEBIAN_ROOT = Path("/usr/lib/postgresql")
#: The role the service connects as (trust authentication: no password exists to leak).
APP_ROLE = "certify"
INSTALL_HINT = "apt-get install -y postgresql"
TOOL_TIMEOUT_S = 60.0


def find_bindir(root: Path = DEBIAN_ROOT) -> Path:
    """The newest installed PostgreSQL's bin directory (with initdb, postgres, pg_isready, createdb)."""
    found = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").is_file() and re.fullmatch(r"\d+", p.parent.name)),
        key=lambda p: int(p.parent.name),
    )
    if not found:
        msg = f"no PostgreSQL server under {root} (initdb and postgres are needed; {INSTALL_HINT})"
        raise ToolMissingError(msg)
    return found[-1]


@dataclass(frozen=True)
class RunAs:
    """Who runs PostgreSQL's commands: nobody else (not root), or an unprivileged user through setpriv."""

    user: str | None = None
    uid: int | None = None
    gid: int | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        """The argv, switched to the user when one is set."""
        if self.user is None:
            return argv
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--", *argv]


def run_as(user: str = "postgres") -> RunAs:
    """Run as the current user, or (when root) as `user`; a root harness without that user cannot run a cluster."""
    if os.geteuid() != 0:
        return RunAs()
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        msg = f"the harness runs as root and PostgreSQL refuses root; no user {user!r} to run it as ({INSTALL_HINT})"
        raise ToolMissingError(msg) from None
    return RunAs(user, entry.pw_uid, entry.pw_gid)


def _run(argv: list[str], who: RunAs, what: str) -> None:
    """One bounded PostgreSQL tool run; its failure is the target's dependency failing, with its last line."""
    try:
        done = subprocess.run(
            who.wrap(argv), capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False, cwd="/"
        )
    except subprocess.TimeoutExpired:
        msg = f"{what}: {Path(argv[0]).name} did not finish within {TOOL_TIMEOUT_S:g} s"
        raise TargetError(msg) from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        msg = f"{what}: {Path(argv[0]).name} exited {done.returncode}: {last[0]}"
        raise TargetError(msg)


def grant_traverse(path: Path) -> None:
    """Let another user reach `path`: search (x, never read) for others on each ancestor this process owns.

    A scratch folder is 0700 (mkdtemp); the PostgreSQL user must pass through it to its cluster. An
    ancestor another user owns and that others cannot search is a clear error, not a silent change.
    """
    grant_search(path)
    for folder in path.resolve().parents:
        if not folder.stat().st_mode & stat.S_IXOTH:
            msg = f"{folder}: others cannot pass through it, so PostgreSQL's user cannot reach {path}"
            raise TargetError(msg)


def init_cluster(bindir: Path, cluster: Path, who: RunAs) -> None:
    """initdb a fresh cluster into `cluster` (which must not exist yet), owned by whoever runs it."""
    cluster.mkdir(parents=True, mode=0o700)
    if who.uid is not None and who.gid is not None:
        grant_traverse(cluster)
        os.chown(cluster, who.uid, who.gid)
    argv = [str(bindir / "initdb"), "-D", str(cluster), "-U", APP_ROLE, "-A", "trust", "-E", "UTF8"]
    _run([*argv, "--locale", "C", "--no-sync", "--no-instructions"], who, f"initdb {cluster}")


def server_argv(bindir: Path, cluster: Path, port: int, who: RunAs) -> list[str]:
    """The foreground `postgres` of the cluster: TCP on loopback only, no Unix socket, no fsync."""
    settings = {
        "listen_addresses": "127.0.0.1",
        # no Unix socket: a data dir deep in a scratch tree exceeds the 107-byte socket path limit
        "unix_socket_directories": "",
        "fsync": "off",  # survives a killed server (the OS keeps its writes), not a host crash
        # synchronous_commit stays on: off would lose commits the service already acknowledged when a
        # chaos experiment kills the server, and G4 would blame the target for the harness's setting.
        "full_page_writes": "off",
        "max_connections": "100",
    }
    argv = [str(bindir / "postgres"), "-D", str(cluster), "-p", str(port)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    return who.wrap(argv)


def wait_ready(bindir: Path, port: int, deadline_s: float, proc: subprocess.Popen[bytes]) -> float:
    """Poll pg_isready until the server accepts connections; seconds waited. Raise if it dies or time runs out."""
    start = time.monotonic()
    argv = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "1"]
    while time.monotonic() - start < deadline_s:
        if proc.poll() is not None:
            msg = f"postgres exited with code {proc.returncode} before it accepted connections on port {port}"
            raise TargetError(msg)
        probe = subprocess.run(argv, capture_output=True, timeout=10, check=False)
        if probe.returncode == 0:
            return time.monotonic() - start
        time.sleep(0.1)
    msg = f"postgres on port {port} did not accept connections within {deadline_s:g} s"
    raise TargetError(msg)


def create_database(bindir: Path, port: int, name: str, who: RunAs) -> str:
    """Create the service's database; its URL (postgresql://certify@127.0.0.1:PORT/NAME)."""
    _run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", APP_ROLE, name], who, f"createdb {name}")
    return f"postgresql://{APP_ROLE}@127.0.0.1:{port}/{name}"
