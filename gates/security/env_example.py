"""X3, `.env.example`: every environment variable the target's code reads is listed there, none with a secret.

`collect` finds the reads in the target's tracked Python source with the standard `ast` parser
(`os.environ.get/[]/setdefault/pop`, `os.getenv`, `"X" in os.environ`; a name held in a string
constant, of any scanned module, is resolved) and stores them with the file's text. The pure `assess`
needs each read name on a `NAME=value` line (`export ` and a leading `# ` allowed: a documented,
unset default), and takes secret-looking values from the G5 secret scan (detect-secrets) of that file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from gates.security import secret_scan
from gates.security.policy import EvidenceReader, ScanResult, SecurityPolicy
from gates.security.store import EvidenceStore
from harness.model import Measurement, Status

INPUTS = "env/inputs.json"
SCANNER = "environment example (release-harness)"
LISTED = re.compile(r"^\s*#?\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.M)
READERS = frozenset({"get", "pop", "setdefault", "getenv", "__getitem__"})
MAX_NAMED = 8


def _string_constants(trees: list[ast.Module]) -> dict[str, str]:
    """Module-level `NAME = "text"` constants of every scanned module (how code names its variables)."""
    found: dict[str, str] = {}
    for tree in trees:
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = node.value.value
    return found


def _is_environ(node: ast.expr) -> bool:
    """Whether an expression is `os.environ` or a bare `environ`."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _key(node: ast.expr, constants: dict[str, str]) -> str | None:
    """The variable name an expression evaluates to, when it is a literal or a known string constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    return constants.get(name) if name else None


def _reads(tree: ast.Module, constants: dict[str, str]) -> list[tuple[str | None, int]]:
    """(name or None when it cannot be resolved, line) of every environment read in one module."""
    reads: list[tuple[str | None, int]] = []
    for node in ast.walk(tree):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            owner = node.func.value
            if node.func.attr in READERS and (_is_environ(owner) or (node.func.attr == "getenv")):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            key = node.slice
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            key = node.left
        if key is not None and isinstance(node, ast.expr):
            reads.append((_key(key, constants), node.lineno))
    return reads


def find_reads(target_dir: Path, files: list[str]) -> list[dict[str, Any]]:
    """Every environment read in the given Python files of the target: name (None: unresolved), file, line."""
    parsed: list[tuple[str, ast.Module]] = []
    for relpath in files:
        try:
            parsed.append((relpath, ast.parse((target_dir / relpath).read_bytes(), relpath)))
        except (SyntaxError, ValueError, OSError):
            continue
    constants = _string_constants([tree for _, tree in parsed])
    return [
        {"name": name, "file": relpath, "line": line}
        for relpath, tree in parsed
        for name, line in _reads(tree, constants)
    ]


def collect(store: EvidenceStore, target_dir: Path, policy: SecurityPolicy, tracked: list[str]) -> None:
    """Store the example file's text (None when absent) and the reads in the target's tracked source."""
    if policy.env_example is None:
        return
    path = target_dir / policy.env_example
    sources = [f for f in tracked if f.endswith(".py") and not f.startswith(policy.env_example_ignore)]
    store.write_json(
        INPUTS,
        {
            "env_example": policy.env_example,
            "text": path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None,
            "sources": len(sources),
            "reads": find_reads(target_dir, sources),
        },
    )


def assess(reader: EvidenceReader, policy: SecurityPolicy) -> ScanResult | None:
    """The X3 verdict from the stored reads, the file and the secret scan; None when no example is configured."""
    if policy.env_example is None:
        return None
    if not reader.exists(INPUTS):
        return ScanResult(SCANNER, Status.INCONCLUSIVE, "not collected", ("the environment reads were not collected",))
    inputs = reader.read_json(INPUTS)
    example = str(inputs["env_example"])
    if inputs["text"] is None:
        return ScanResult(SCANNER, Status.FAIL, "no example", (f"{example}: missing, so no variable is documented",))
    listed = set(LISTED.findall(str(inputs["text"])))
    read = sorted({r["name"] for r in inputs["reads"] if r["name"]})
    unlisted = [name for name in read if name not in listed]
    scanned = reader.read_json(secret_scan.FILES).get("scanned", []) if reader.exists(secret_scan.FILES) else []
    report = reader.read_json(secret_scan.REPORT) if reader.exists(secret_scan.REPORT) else {"results": []}
    secrets = [f"line {e['line_number']} ({e['type']})" for e in report["results"] if e["filename"] == example]
    reasons = []
    if unlisted:
        reasons.append(
            f"{example} does not list {len(unlisted)} variable(s) the code reads: {', '.join(unlisted[:MAX_NAMED])}"
        )
    if secrets:
        reasons.append(f"{example} holds secret-looking value(s) (detect-secrets): {', '.join(secrets[:MAX_NAMED])}")
    measurements = (
        Measurement.judged("variables read but not in the example", len(unlisted), "<=", 0),
        Measurement.judged("secret-looking values in the example", len(secrets), "<=", 0),
    )
    facts = {"example": example, "read": read, "unresolved": sum(1 for r in inputs["reads"] if not r["name"])}
    if reasons:
        return ScanResult(SCANNER, Status.FAIL, "incomplete", tuple(reasons), measurements=measurements, facts=facts)
    if example not in scanned:
        why = f"{example} was not covered by the secret scan, so its values are unchecked"
        return ScanResult(SCANNER, Status.INCONCLUSIVE, "unscanned", (why,), measurements=measurements, facts=facts)
    summary = f"{len(read)} variable(s) read by {inputs['sources']} source file(s), all in {example}; no secret"
    return ScanResult(SCANNER, Status.PASS, summary, measurements=measurements, facts=facts)
