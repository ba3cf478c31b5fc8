"""Gate ID: which code is being certified — commit, clean tree, and one version everywhere it is declared."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from harness.checks import CheckSpec
from harness.config import TargetSection
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


#: Nodes opening a scope of their own: a name bound inside them is not the module's.
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _bound_names(node: ast.stmt) -> set[str]:
    """Names one statement binds by assignment or import (not those of nested statements)."""
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AugAssign) or (isinstance(node, ast.AnnAssign) and node.value is not None):
        targets = [node.target]
    elif isinstance(node, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}


def _module_bindings(tree: ast.Module, name: str) -> list[ast.stmt]:
    """Statements binding `name` at module scope (inside if/try/with too, never inside a def or class)."""
    found: list[ast.stmt] = []
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, _SCOPES):
            continue
        if isinstance(node, ast.stmt) and name in _bound_names(node):
            found.append(node)
        # statements nested in if/try/with/match bodies (and except handlers) still bind at module scope
        pending.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, ast.expr))
    return found


def version_declaration(path: Path, name: str = "__version__") -> tuple[str | None, str | None]:
    """How a module declares `name`, read without importing it: (literal, None), (None, why not literal), (None, None).

    (None, None) means the module (or the file) does not bind the name at all: it declares no version,
    so there is nothing to compare. One top-level `name = "x"` (or `name: str = "x"`) is a literal
    declaration. Anything else binding the name (a call such as importlib.metadata.version, another
    name, an import, a non-string constant, a block, several assignments) is a declaration whose value
    cannot be read without running the target: returned as why, so the gate reports it, never guesses.
    """
    if not path.is_file():
        return None, None
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        return None, f"not readable as Python ({type(exc).__name__})"
    bindings = _module_bindings(tree, name)
    if len(bindings) > 1:
        lines = ", ".join(str(node.lineno) for node in bindings)
        return None, f"bound {len(bindings)} times (lines {lines}), not one literal"
    return _literal(source, tree, bindings[0]) if bindings else (None, None)


def _literal(source: str, tree: ast.Module, node: ast.stmt) -> tuple[str | None, str | None]:
    """The one binding's literal string, or why it is not one."""
    text = " ".join((ast.get_source_segment(source, node) or type(node).__name__).split())[:80]
    if node not in tree.body:
        return None, f"bound inside a block (line {node.lineno}), not at the top level: {text}"
    value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return value.value, None
    return None, f"not a literal string: {text}"


#: Calls that read a distribution's version from its installed metadata (one string argument).
METADATA_CALLS = ("version", "metadata.version", "importlib.metadata.version", "importlib_metadata.version")


def _dotted(node: ast.expr) -> str:
    """`a.b.c` of a Name/Attribute chain ('' for anything else)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def metadata_distribution(path: Path, name: str = "__version__") -> str | None:
    """The distribution a module's one top-level `name = importlib.metadata.version("dist")` reads; else None.

    Such a version is the installed distribution's own, taken from the project's metadata (pyproject),
    so it is no second declaration that could disagree, provided it names the project itself.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    bindings = _module_bindings(tree, name)
    if len(bindings) != 1 or bindings[0] not in tree.body:
        return None
    node = bindings[0]
    value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
    if not isinstance(value, ast.Call) or _dotted(value.func) not in METADATA_CALLS or value.keywords:
        return None
    if len(value.args) != 1 or not isinstance(value.args[0], ast.Constant) or not isinstance(value.args[0].value, str):
        return None
    return value.args[0].value


def _normal(distribution: str) -> str:
    """A distribution name normalised as packaging does (PEP 503)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


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


def declared_versions(target_dir: Path, target: TargetSection) -> tuple[dict[str, str | None], dict[str, str]]:
    """Every version declaration of the target: {where: literal} and {where: why it is not a literal}.

    The configured source (`[target] version`) is always listed, None when it is absent, because a
    target must declare its version somewhere. A package `__init__.py` is listed only when it binds
    `__version__`: one that does not declares nothing, so there is nothing to compare.
    """
    source = target.version
    where = f"{source.file}:{source.key}"
    unreadable: dict[str, str] = {}
    if source.file.endswith(".py"):
        literal, why = version_declaration(target_dir / source.file, source.key)
        if why is not None:
            unreadable[where] = why
    else:
        literal = _toml_key(target_dir / source.file, source.key)
    versions: dict[str, str | None] = {where: literal}
    project = _toml_key(target_dir / "pyproject.toml", "project.name")
    root = target_dir / target.source_root
    for package in target.packages:
        init = root / package.replace(".", "/") / "__init__.py"
        name = f"{init.relative_to(target_dir).as_posix()}:__version__"
        if name in versions or name in unreadable:
            continue
        literal, why = version_declaration(init)
        if literal is not None:
            versions[name] = literal
        elif why is not None:
            distribution = metadata_distribution(init)
            if project is not None and distribution is not None and _normal(distribution) == _normal(project):
                continue  # the project's own metadata version: the pyproject declaration, read back
            if distribution is not None:
                why += f" (reads distribution {distribution!r}, not this project {project!r})"
            unreadable[name] = why
    return versions, unreadable


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
        """Ask git for commit and status, and read every version declaration (declared_versions)."""
        version = ctx.run("git-version", ["git", "--version"], timeout_s=30)
        if version.returncode != 0:
            msg = "git is not installed"
            raise ToolMissingError(msg, hint="apt-get install git")
        ctx.record_tool("git", version.stdout().strip().removeprefix("git version "))
        head = ctx.run("git-head", ["git", "rev-parse", "HEAD"], timeout_s=30)
        status = ctx.run("git-status", ["git", "status", "--porcelain", "--", "."], timeout_s=60)
        versions, unreadable = declared_versions(ctx.target_dir, ctx.config.target)
        ctx.write_json(
            EVIDENCE,
            {
                "mode": ctx.mode,
                "commit": head.stdout().strip() if head.returncode == 0 else None,
                "git_error": None if head.returncode == 0 else head.stderr().strip()[-300:],
                "changed": sorted({line[3:] for line in status.stdout().splitlines() if line.strip()}),
                "versions": versions,
                "unreadable": unreadable,
            },
        )

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """FAIL on disagreeing or missing versions, or a dirty tree in release mode; INCONCLUSIVE on an unreadable one.

        Only declarations found are compared: a package whose `__init__.py` binds no `__version__`
        declares nothing. The configured source must hold the version (else "version not found").
        A `__version__` bound to anything but one literal string cannot be checked without running
        the target: INCONCLUSIVE with the expression named (FAIL if something else already fails).
        """
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
        # Packs written before "unreadable" was recorded listed every package __init__, None where it had
        # no literal __version__: judged as then (missing), so `certify verify` reproduces their verdicts.
        unreadable: dict[str, str] = data.get("unreadable", {})
        missing = sorted(name for name, value in versions.items() if value is None and name not in unreadable)
        distinct = sorted({value for value in versions.values() if value is not None})
        if missing:
            reasons.append(f"version not found in: {', '.join(missing)}")
        if len(distinct) > 1:
            listed = {k: v for k, v in versions.items() if v is not None or k not in unreadable}
            reasons.append("versions disagree: " + ", ".join(f"{k}={v}" for k, v in sorted(listed.items())))
        not_read = "; ".join(f"{name} {why}" for name, why in sorted(unreadable.items()))
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
        if unreadable:
            details["unreadable"] = unreadable
        if reasons:
            if unreadable:
                reasons.append(f"version not readable without running the target: {not_read}")
            return Verdict(status=Status.FAIL, reasons=tuple(reasons), measurements=measurements, details=details)
        if unreadable:
            return Verdict(
                status=Status.INCONCLUSIVE,
                reasons=(
                    f"a version is declared but not as a literal string, so the harness (which never imports "
                    f"the target) cannot check it agrees: {not_read}; declare it as one literal or drop it",
                ),
                measurements=measurements,
                details=details,
            )
        note = f"commit {commit[:12]}, version {distinct[0]}" + (", dirty tree (allowed in ci mode)" if changed else "")
        return Verdict(status=Status.PASS, reasons=(note,), measurements=measurements, details=details)
