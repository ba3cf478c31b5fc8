"""S5, sandbox and permissions: measured by the harness on the running governance instance.

Nothing here takes the target's word: the service's process tree is read with psutil (effective
uids, listening sockets), its data dir with `os.lstat` (group/world-writable entries, secret files
wider than 0600). Only the privileged actions a playbook may take are declared by the target, in its
own playbook list (the field `[gates.PB.sandbox] actions_field` names); the harness bounds them by
the policy's `allowed_actions`. `observe` is collect-side; `judge_sandbox` is pure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import stat
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import psutil

from gates.playbooks.config import SandboxCheck

#: The sub-checks, as they appear in the gate's details under `governance`.
ROOT = "S5 service not root"
DATA_DIR = "S5 data dir not group/world writable"
SECRETS = "S5 secret files 0600"
LISTEN = "S5 listens only on the configured interface"
ACTIONS = "S5 playbook actions within the policy"
#: Names a file holding a key or token has, found in the data dir whatever the target declares.
SECRET_NAMES = ("*.pem", "*.key", "*secret*", "*token*", "*.keyfile")


def _tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (those that vanish while read are left out)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _process_row(proc: psutil.Process) -> dict[str, Any] | None:
    """Pid, name, real/effective uid and the listening sockets of one process; None when it is gone."""
    try:
        with proc.oneshot():
            uids = proc.uids()
            listening = [
                [conn.laddr.ip, conn.laddr.port]
                for conn in proc.net_connections(kind="inet")
                if conn.status == psutil.CONN_LISTEN and conn.laddr
            ]
            return {"pid": proc.pid, "name": proc.name(), "uid": uids.real, "euid": uids.effective, "listen": listening}
    except psutil.Error:
        return None


def _entries(data_dir: Path) -> list[dict[str, Any]]:
    """Every entry under the data dir (symlinks not followed) with its mode and owner uid."""
    rows = []
    for dirpath, dirnames, filenames in os.walk(data_dir):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):  # a file removed while walking is not an entry
                info = path.lstat()
                if not stat.S_ISLNK(info.st_mode):
                    rows.append({"path": str(path.relative_to(data_dir)), "mode": stat.S_IMODE(info.st_mode)})
    info = data_dir.lstat()
    return [{"path": ".", "mode": stat.S_IMODE(info.st_mode)}, *rows]


def observe(
    service_pid: int,
    data_dir: Path,
    listed: list[dict[str, Any]],
    check: SandboxCheck,
    user: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The raw S5 record of a running instance: processes, data-dir entries, the listed playbooks' actions.

    `user` is what the launcher did about the service user (harness.service_user.ServiceUser.record).
    """
    processes = [row for row in map(_process_row, _tree(service_pid)) if row is not None]
    actions = {str(item.get("id")): item.get(check.actions_field) for item in listed if isinstance(item, dict)}
    return {
        "harness_euid": os.geteuid(),
        "service_user": user or {},
        "processes": processes,
        "entries": _entries(data_dir),
        "actions": actions,
    }


def _judge_root(check: SandboxCheck, record: dict[str, Any]) -> tuple[str, str]:
    """Whether any service process runs with effective uid 0, and whether that is the harness's doing."""
    processes = record.get("processes") or []
    if not processes:
        return "INCONCLUSIVE", "no process of the service could be read"
    root = [f"{p['name']} (pid {p['pid']})" for p in processes if p["euid"] == 0]
    if not root:
        uids = sorted({p["euid"] for p in processes})
        return "PASS", f"{len(processes)} service process(es), effective uid(s) {uids}"
    if check.allow_root and check.root_reason:
        return "PASS", f"runs as root by declaration: {check.root_reason}"
    if record.get("harness_euid") == 0:
        return _judge_root_harness(record.get("service_user") or {}, root)
    return "FAIL", f"runs as root although the harness does not: {', '.join(root[:3])}"


def _judge_root_harness(user: dict[str, Any], root: list[str]) -> tuple[str, str]:
    """A root service under a root harness: declared, escalated, a drop that could not happen, or unknown."""
    if user.get("requested") == "root":
        return "FAIL", f"runs as root by certify.toml's [service] user = 'root': {', '.join(root[:3])}"
    if user.get("uid") is not None:
        return "FAIL", f"runs as root although started as {user['requested']!r}: {', '.join(root[:3])}"
    if user.get("problem"):
        return "INCONCLUSIVE", f"{user['problem']} ({', '.join(root[:3])})"
    return "INCONCLUSIVE", (
        f"the harness runs as root and starts the target as root ({', '.join(root[:3])}): "
        "whether it drops privileges on its own is not shown"
    )


def _judge_data_dir(record: dict[str, Any]) -> tuple[str, str]:
    """No entry of the data dir is writable by group or others."""
    entries = record.get("entries") or []
    wide = [f"{e['path']} ({e['mode']:04o})" for e in entries if e["mode"] & 0o022]
    if wide:
        return "FAIL", f"group/world writable in the data dir: {', '.join(wide[:5])}"
    return "PASS", f"{len(entries)} data-dir entries, none group/world writable"


def _judge_secrets(check: SandboxCheck, record: dict[str, Any]) -> tuple[str, str] | None:
    """Declared secret files exist and are 0600 or stricter; so are key-like files found. None: none at all."""
    entries = {e["path"]: e["mode"] for e in record.get("entries") or []}
    missing = [g for g in check.secret_files if not any(fnmatch(p, g) for p in entries)]
    if missing:
        return "FAIL", f"declared secret file(s) not found in the data dir: {', '.join(missing)}"
    patterns = (*check.secret_files, *SECRET_NAMES)
    found = {p: m for p, m in entries.items() if any(fnmatch(p, g) or fnmatch(Path(p).name, g) for g in patterns)}
    if not found:
        return None
    wide = [f"{p} ({m:04o})" for p, m in sorted(found.items()) if m & 0o077]
    if wide:
        return "FAIL", f"secret file(s) readable beyond the owner (need 0600): {', '.join(wide[:5])}"
    return "PASS", f"{len(found)} secret file(s), all 0600 or stricter"


def _allowed_host(ip: str, hosts: tuple[str, ...]) -> bool:
    """Whether a listening address is one of the configured ones (:: and 0.0.0.0 only when listed)."""
    with contextlib.suppress(ValueError):
        mapped = ipaddress.ip_address(ip)
        if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped is not None:
            ip = str(mapped.ipv4_mapped)
    return ip in hosts


def _judge_listen(check: SandboxCheck, record: dict[str, Any]) -> tuple[str, str]:
    """Every listening socket of the service's processes is on a configured address."""
    sockets = [(p["pid"], ip, port) for p in record.get("processes") or [] for ip, port in p["listen"]]
    if not sockets:
        return "INCONCLUSIVE", "no listening socket of the service's processes was seen"
    wrong = [f"{ip}:{port} (pid {pid})" for pid, ip, port in sockets if not _allowed_host(ip, check.listen_hosts)]
    if wrong:
        return "FAIL", f"listening beyond {', '.join(check.listen_hosts)}: {', '.join(wrong[:5])}"
    return "PASS", f"{len(sockets)} listening socket(s), all on {', '.join(check.listen_hosts)}"


def _judge_actions(check: SandboxCheck, record: dict[str, Any]) -> tuple[str, str]:
    """Every listed playbook declares its privileged actions, all of them allowed by the policy."""
    actions = record.get("actions") or {}
    if not actions:
        return "INCONCLUSIVE", "no playbook was listed: no privileged action to check"
    undeclared = sorted(pb for pb, acts in actions.items() if not isinstance(acts, list))
    if undeclared:
        return "INCONCLUSIVE", (
            f"{len(undeclared)} of {len(actions)} listed playbooks declare no '{check.actions_field}' list "
            f"(e.g. {', '.join(undeclared[:3])})"
        )
    beyond = sorted(f"{pb}: {a}" for pb, acts in actions.items() for a in acts if a not in check.allowed_actions)
    if beyond:
        return "FAIL", f"privileged action(s) the policy does not allow: {', '.join(beyond[:5])}"
    return "PASS", f"{len(actions)} playbooks, every action within {', '.join(check.allowed_actions)}"


def judge_sandbox(
    check: SandboxCheck | None, governance: dict[str, Any], checks: dict[str, str], reasons: list[str]
) -> None:
    """Add the S5 sub-checks to the governance checks from the stored record (pure)."""
    if check is None:
        return
    record = governance.get("sandbox")
    if not isinstance(record, dict) or "processes" not in record:
        checks[ROOT] = "INCONCLUSIVE"
        reasons.append("S5 not observed: no sandbox record (the governance instance did not get that far)")
        return
    judged = {
        ROOT: _judge_root(check, record),
        DATA_DIR: _judge_data_dir(record),
        SECRETS: _judge_secrets(check, record),
        LISTEN: _judge_listen(check, record),
        ACTIONS: _judge_actions(check, record),
    }
    for name, outcome in judged.items():
        if outcome is None:
            reasons.append(f"{name}: no secret file declared or found in the data dir")
            continue
        checks[name] = outcome[0]
        if outcome[0] != "PASS":
            reasons.append(f"{name}: {outcome[1]}")
