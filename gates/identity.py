"""Gate ID: which code is being certified — commit, clean tree, and one version everywhere it is declared."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from harness.checks import CheckSpec
from harness.context import GateContext
from harness.errors import ToolMissingError
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import Measurement, Status, Verdict

EVIDENCE = "identity.json"


class IdentityPolicy(Policy):
    """Thresholds of the identity gate."""

    allow_dirty_in_release: bool = Field(
        default=False, description="A release certificate must name a commit; dirty trees fail unless this is set."
    )


def _dunder_version(path: Path) -> str | None:
    """The literal `__version__ = "..."` of a module, read without importing it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
        ):
            return str(node.value.value)
    return None


def _toml_key(path: Path, dotted: str) -> str | None:
    """A dotted key's value in a TOML file, or None."""
    try:
        data: Any = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return str(data)


#: What this gate evidences (the traceability matrix; R1 is the matrix itself, not this gate).
CHECKS = (
    CheckSpec(
        id="ID.identity",
        title="the commit certified, the tree's state and every declared version agree",
        requirements=("R4",),
        measurements=("distinct declared versions", "uncommitted changes"),
        evidence=("gates/ID/identity.json",),
    ),
)


class IdentityGate(Gate):
    """Records commit and dirty state and checks the declared versions agree."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="ID", title="Target identity and version consistency", requirements=("R4",), timeout_s=120, checks=CHECKS
    )
    policy_model: ClassVar[type[Policy]] = IdentityPolicy

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """A few git queries."""
        del policy, mode
        return 2.0

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Ask git for commit and status, and read every version declaration."""
        version = ctx.run("git-version", ["git", "--version"], timeout_s=30)
        if version.returncode != 0:
            msg = "git is not installed"
            raise ToolMissingError(msg, hint="apt-get install git")
        ctx.record_tool("git", version.stdout().strip().removeprefix("git version "))
        head = ctx.run("git-head", ["git", "rev-parse", "HEAD"], timeout_s=30)
        status = ctx.run("git-status", ["git", "status", "--porcelain", "--", "."], timeout_s=60)
        config = ctx.config
        source = config.target.version
        versions = {f"{source.file}:{source.key}": _toml_key(ctx.target_dir / source.file, source.key)}
        root = ctx.target_dir / config.target.source_root
        for package in config.target.packages:
            init = root / package.replace(".", "/") / "__init__.py"
            if init.is_file():
                versions[f"{init.relative_to(ctx.target_dir)}:__version__"] = _dunder_version(init)
        ctx.write_json(
            EVIDENCE,
            {
                "mode": ctx.mode,
                "commit": head.stdout().strip() if head.returncode == 0 else None,
                "git_error": None if head.returncode == 0 else head.stderr().strip()[-300:],
                "changed": sorted({line[3:] for line in status.stdout().splitlines() if line.strip()}),
                "versions": versions,
            },
        )

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """FAIL on disagreeing or missing versions, or a dirty tree in release mode."""
        assert isinstance(policy, IdentityPolicy)  # noqa: S101 - the registry pairs gate and policy
        data = evidence.read_json(EVIDENCE)
        commit = data["commit"]
        if not commit or not re.fullmatch(r"[0-9a-f]{40,64}", commit):
            return Verdict.of(
                Status.INCONCLUSIVE,
                f"no git commit for the target ({data.get('git_error') or 'unknown'}): cannot say which code this is",
            )
        reasons: list[str] = []
        versions: dict[str, str | None] = data["versions"]
        missing = sorted(name for name, value in versions.items() if value is None)
        distinct = sorted({value for value in versions.values() if value is not None})
        if missing:
            reasons.append(f"version not found in: {', '.join(missing)}")
        if len(distinct) > 1:
            reasons.append("versions disagree: " + ", ".join(f"{k}={v}" for k, v in sorted(versions.items())))
        changed: list[str] = data["changed"]
        if changed and data["mode"] == "release" and not policy.allow_dirty_in_release:
            shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
            reasons.append(
                f"working tree has {len(changed)} uncommitted change(s) ({shown}); a certificate must name a commit"
            )
        strict_tree = data["mode"] == "release" and not policy.allow_dirty_in_release
        measurements = (
            Measurement.judged("distinct declared versions", len(distinct), "==", 1),
            Measurement.judged("uncommitted changes", len(changed), "<=", 0)
            if strict_tree
            else Measurement(name="uncommitted changes", value=len(changed)),
        )
        details = {"commit": commit, "versions": versions, "dirty": bool(changed)}
        if reasons:
            return Verdict(status=Status.FAIL, reasons=tuple(reasons), measurements=measurements, details=details)
        note = f"commit {commit[:12]}, version {distinct[0]}" + (", dirty tree (allowed in ci mode)" if changed else "")
        return Verdict(status=Status.PASS, reasons=(note,), measurements=measurements, details=details)
