"""Who the target's instance processes run as: a root harness drops them to an unprivileged user (S5).

A service that runs as root when it need not is what S5 forbids, and CI runs the harness as root.
So when the harness is root, every process an instance launcher starts for the target (the
service and its `process` dependencies) runs as `[service] user` (default `nobody`, which every
Debian system has) through subprocess's `user=`/`group=`/`extra_groups=[]`; the instance's data
dir and private temp dir are created for that user (0700, owned by it), and the folders above them
get search permission for others (never read), like PostgreSQL's cluster does. `user = "root"`
is a declaration that the service runs as root: S5 then FAILs unless the sandbox check allows it.

When the user does not exist, or cannot reach the venv's interpreter or the target's files
(a venv under /root, which is 0700), the instance runs as the harness does, and the one-line reason
travels with the instance into the S5 record: S5 is INCONCLUSIVE, no other gate notices.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

#: The user a root harness starts the service as when certify.toml names none.
DEFAULT_USER = "nobody"
#: The declaration that the service must run as root.
ROOT_USER = "root"


@dataclass(frozen=True)
class ServiceUser:
    """The user an instance's target processes run as; uid None: as the harness itself."""

    requested: str
    uid: int | None = None
    gid: int | None = None
    problem: str = ""

    @property
    def drops(self) -> bool:
        """Whether the processes are started as another user than the harness's."""
        return self.uid is not None

    def record(self) -> dict[str, object]:
        """The JSON shape kept in the S5 record (what was asked, what was done, why not)."""
        return {"requested": self.requested, "uid": self.uid, "gid": self.gid, "problem": self.problem}


def _allows(info: os.stat_result, uid: int, gids: set[int], bits: int) -> bool:
    """Whether the mode bits give `uid` (with groups `gids`) all of rwx `bits` (4 r, 2 w, 1 x)."""
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == uid:
        return (mode >> 6) & bits == bits
    if info.st_gid in gids:
        return (mode >> 3) & bits == bits
    return mode & bits == bits


def _groups(entry: pwd.struct_passwd) -> set[int]:
    """The user's groups as they will be for its processes: only its primary group (extra_groups=[])."""
    return {entry.pw_gid}


def blocked_at(path: Path, entry: pwd.struct_passwd, bits: int) -> str:
    """'' when the user can reach `path` with `bits` on it; else the first folder or file that stops it."""
    gids = _groups(entry)
    target = path.resolve()
    for folder in reversed(target.parents):
        info = folder.stat()
        if not _allows(info, entry.pw_uid, gids, 1):
            return f"{folder} ({stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid})"
    info = target.stat()
    if not _allows(info, entry.pw_uid, gids, bits):
        return f"{target} ({stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid})"
    return ""


def resolve(requested: str | None, python: Path, target_dir: Path) -> ServiceUser:
    """Who a root harness starts the instance as, checked against what that user must read."""
    name = requested or DEFAULT_USER
    if os.geteuid() != 0:
        return ServiceUser(name, problem="")
    if name == ROOT_USER:
        return ServiceUser(name)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        why = f"no user {name!r} on this machine (useradd --system {name}, or [service] user = another)"
        return ServiceUser(name, problem=f"the service runs as root: {why}")
    if entry.pw_uid == 0:
        return ServiceUser(name)
    needs = ((python.parent.parent, 5), (python, 5), (target_dir, 5))
    for path, bits in needs:
        try:
            where = blocked_at(path, entry, bits)
        except OSError as exc:
            where = f"{path} ({exc.strerror})"
        if where:
            why = f"user {name!r} cannot reach {path}: stopped at {where}"
            hint = "keep the venvs where it can read them (--cache-dir)"
            return ServiceUser(name, problem=f"the service runs as root: {why}; {hint}")
    return ServiceUser(name, uid=entry.pw_uid, gid=entry.pw_gid)


def grant_search(path: Path) -> None:
    """Let other users pass through the folders above `path` that this process owns (o+x, never read)."""
    me = os.geteuid()
    for folder in path.resolve().parents:
        info = folder.stat()
        if info.st_mode & stat.S_IXOTH or info.st_uid != me:
            continue
        folder.chmod(stat.S_IMODE(info.st_mode) | stat.S_IXOTH)


def make_private_dir(path: Path, user: ServiceUser) -> None:
    """Create a folder the instance's processes own alone (0700), reachable by them when they drop."""
    path.mkdir(parents=True, mode=0o700)
    path.chmod(0o700)
    if user.uid is not None and user.gid is not None:
        grant_search(path)
        os.chown(path, user.uid, user.gid)
