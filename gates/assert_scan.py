"""G1's static test-strength companion: test functions that assert nothing (issue #26, item 4).

Coverage counts the lines a test executes, not whether it checks anything: a suite whose
assertions were deleted keeps its coverage. This reads the target's test files as data (ast,
never imported) and lists every `test_*` function (module level or in a `Test*` class) in which no
assertion of any kind appears: no `assert` statement, no `pytest.raises`/`warns`/`deprecated_call`/
`fail`, no `assert*`/`assert_*` call (unittest, mock, numpy), and no call of a helper of the same
module or of a conftest.py on its path that itself asserts (helpers are followed transitively).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCAN = "test_asserts.json"
#: pytest helpers that are an assertion by themselves (a call or a `with` of them).
PYTEST_ASSERTS = frozenset({"raises", "warns", "deprecated_call", "fail", "approx"})
SKIP_DIRS = frozenset({".git", ".venv", "venv", ".nox", ".tox", "node_modules", "build", "dist", "__pycache__"})


def _called_name(call: ast.Call) -> tuple[str | None, str]:
    """(object name or None, function name) of a call: `pytest.raises(...)` -> ("pytest", "raises")."""
    func = call.func
    if isinstance(func, ast.Name):
        return None, func.id
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else ""
        return owner, func.attr
    return None, ""


def _asserts_directly(node: ast.AST) -> bool:
    """Whether the body holds an assert statement or an asserting call."""
    for child in ast.walk(node):
        if isinstance(child, ast.Assert):
            return True
        if isinstance(child, ast.Call):
            owner, name = _called_name(child)
            if name.startswith(("assert", "Assert")) or (owner == "pytest" and name in PYTEST_ASSERTS):
                return True
    return False


def _calls(node: ast.AST) -> set[str]:
    """Names of the plain functions a body calls."""
    return {name for c in ast.walk(node) if isinstance(c, ast.Call) for owner, name in [_called_name(c)] if not owner}


def _helpers(trees: Iterable[ast.Module]) -> dict[str, ast.AST]:
    """Module-level functions (and fixtures) of the given modules by name, the later ones winning."""
    found: dict[str, ast.AST] = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found[node.name] = node
    return found


def _asserting(helpers: dict[str, ast.AST]) -> set[str]:
    """Helpers that assert, directly or through other helpers (a fixed point over the call graph)."""
    asserting = {name for name, node in helpers.items() if _asserts_directly(node)}
    changed = True
    while changed:
        changed = False
        for name, node in helpers.items():
            if name not in asserting and _calls(node) & asserting:
                asserting.add(name)
                changed = True
    return asserting


def _test_functions(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """(qualified name, node) of each test function: module-level test_* and test_* of Test* classes."""
    found: list[tuple[str, ast.AST]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            found.append((node.name, node))
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test"):
                    found.append((f"{node.name}.{item.name}", item))
    return found


def find_test_roots(target_dir: Path) -> list[Path]:
    """Where the target keeps its tests: pytest's `testpaths` from pyproject.toml, else the whole target."""
    pyproject = target_dir / "pyproject.toml"
    if pyproject.is_file():
        try:
            options = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("pytest", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            options = {}
        paths = options.get("ini_options", {}).get("testpaths")
        if isinstance(paths, list) and paths:
            return [target_dir / str(p) for p in paths if (target_dir / str(p)).exists()]
    return [target_dir]


def _files(roots: Iterable[Path]) -> list[Path]:
    """Test files under the roots (test_*.py, *_test.py), skipping environments and build output."""
    found: set[Path] = set()
    for root in roots:
        candidates = [root] if root.is_file() else root.rglob("*.py")
        for path in candidates:
            if SKIP_DIRS & set(path.parts):
                continue
            if path.name.startswith("test_") or path.name.endswith("_test.py"):
                found.add(path)
    return sorted(found)


def _conftests(path: Path, target_dir: Path) -> list[ast.Module]:
    """The parsed conftest.py files from the target root down to the test file's directory."""
    trees = []
    for directory in [*reversed(path.parent.relative_to(target_dir).parents), path.parent.relative_to(target_dir)]:
        conftest = target_dir / directory / "conftest.py"
        if conftest.is_file():
            try:
                trees.append(ast.parse(conftest.read_text(encoding="utf-8")))
            except (SyntaxError, UnicodeDecodeError):
                continue
    return trees


def scan(target_dir: Path) -> dict[str, Any]:
    """test_asserts.json: test files and functions found, and every test that asserts nothing."""
    target_dir = target_dir.resolve()
    files = _files(find_test_roots(target_dir))
    tests, silent, unreadable = 0, [], []
    for path in files:
        rel = path.relative_to(target_dir).as_posix()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        except (SyntaxError, UnicodeDecodeError) as exc:
            unreadable.append(f"{rel}: {type(exc).__name__}")
            continue
        asserting = _asserting(_helpers([*_conftests(path, target_dir), tree]))
        for name, node in _test_functions(tree):
            tests += 1
            if not _asserts_directly(node) and not (_calls(node) & asserting):
                silent.append(f"{rel}::{name}")
    return {"files": len(files), "tests": tests, "without_assertion": silent, "unreadable": unreadable}
