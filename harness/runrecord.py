"""The run record: what ran, on what, for which commit of the target, with which tools."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import psutil

from harness import __version__
from harness.config import CertifyConfigBase


def utc_now() -> str:
    """Current UTC time in ISO-8601 with a Z suffix, to the millisecond."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _git(target_dir: Path, *args: str) -> str | None:
    """Output of a quick git query in the target, or None when git or the repository is absent."""
    if shutil.which("git") is None:
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(target_dir), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _changed_paths(porcelain_z: str) -> list[str]:
    """The paths of `git status --porcelain -z` output (a rename's source path is not listed twice)."""
    entries = porcelain_z.split("\0")
    paths: set[str] = set()
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:  # "XY path": two status letters, a space, at least one character
            continue
        paths.add(entry[3:])
        if entry[0] in "RC":  # a rename or copy: the next entry is its source path
            index += 1
    return sorted(paths)


def git_identity(target_dir: Path) -> dict[str, Any]:
    """Commit, short commit, dirty flag and changed paths of the target's working tree."""
    commit = (_git(target_dir, "rev-parse", "HEAD") or "").strip() or None
    if commit is None:
        return {"commit": "unknown", "short": "nocommit", "dirty": True, "changed": ["(not a git repository)"]}
    status = _git(target_dir, "status", "--porcelain", "-z", "--untracked-files=normal", "--", ".") or ""
    changed = _changed_paths(status)
    return {"commit": commit, "short": commit[:10], "dirty": bool(changed), "changed": changed}


def declared_version(config: CertifyConfigBase, target_dir: Path) -> str:
    """The version string from the target's declared version source, or 'unknown'."""
    path = target_dir / config.target.version.file
    try:
        data: Any = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return "unknown"
    for part in config.target.version.key.split("."):
        if not isinstance(data, dict) or part not in data:
            return "unknown"
        data = data[part]
    return str(data)


def _cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpu() -> str:
    """Names of NVIDIA GPUs seen by nvidia-smi, or a statement that none was detected."""
    if shutil.which("nvidia-smi") is None:
        return "none detected (no nvidia-smi)"
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (nvidia-smi failed)"
    return done.stdout.strip().replace("\n", "; ") or "none detected"


def host_info() -> dict[str, Any]:
    """OS, kernel, Python, CPU, memory and GPU of the machine running the gates."""
    return {
        "os": platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "memory_bytes": int(psutil.virtual_memory().total),
        "gpu": _gpu(),
    }


def harness_version() -> str:
    """This harness's version."""
    return __version__


def harness_packages() -> dict[str, str]:
    """Exact versions of the harness and the libraries that judge and render (for the run record)."""
    versions = {}
    for name in ("release-harness", "pydantic", "jinja2", "rich", "psutil"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
