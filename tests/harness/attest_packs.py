"""Signed packs of the tiny fixture target for the attestation tests, made with the real CLI."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness.packs import certify_argv, certify_env, committed_copy

ATTESTATIONS = "attestations.intoto.jsonl"


@dataclass(frozen=True)
class Keys:
    """A key pair written by `certify keygen`."""

    private: Path
    public: Path


def certify(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real certify entry point and capture its output."""
    return subprocess.run(
        certify_argv(*args), env=certify_env(**env), capture_output=True, text=True, timeout=timeout, check=False
    )


def keygen(out: Path) -> Keys:
    """A fresh key pair in out."""
    done = certify("keygen", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return Keys(out / "certify-signing.key", out / "certify-signing.pub.pem")


def tiny_target(base: Path) -> Path:
    """A committed copy of the tiny fixture target."""
    return committed_copy("tiny", base / "tiny")


def signed_pack(target: Path, out: Path, keys: Keys | None, mode: str = "release") -> Path:
    """A complete pack of the target, signed with keys (None: unsigned)."""
    sign = ["--sign-key", str(keys.private)] if keys is not None else []
    done = certify("run", "--target", str(target), "--out", str(out), "--mode", mode, *sign)
    assert done.returncode == 0, done.stdout + done.stderr
    return out
