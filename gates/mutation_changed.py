"""G1 test strength on the changed lines (ci mode): which lines a change touched, and their mutants.

The changed lines are diff coverage's: ``git diff -U0`` of the working tree against the merge base
of HEAD and ``[gates.G1] diff_base`` (changes.diff and diff_base.json in the pack), so uncommitted
edits count, plus every line of a critical file git does not track yet. Where that base cannot be
resolved (no such ref, a shallow clone without the merge base, not a git repository, diff_base
empty) the changed lines are "not determined", with the reason, and the sample stays the random one.

Every mutant whose mutated line is a changed line of a critical file joins the ci sample, up to
``mutation_changed_cap`` (beyond it a subset seeded like the sample). A mutant's line is read from
mutmut's mutated file as data (ast, never imported): the numbered mutant is compared with the
unmutated copy mutmut keeps beside it, and the copy is matched to the function in the critical file.
"""

from __future__ import annotations

import ast
import difflib
import random
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gates.coverage_judge import DIFF, DIFF_BASE, parse_diff
from harness.context import GateContext

#: mutmut's separator in the generated names of methods: ``xǁClassǁmethod__mutmut_3``.
CLASS_SEPARATOR = "ǁ"
ORIG_SUFFIX = "__mutmut_orig"


class WrittenEvidence(Protocol):
    """The G1 evidence collect has written so far (diff_base.json, changes.diff)."""

    def exists(self, name: str) -> bool:
        """Whether the file was written."""

    def read_text(self, name: str) -> str:
        """A written file's text."""

    def read_json(self, name: str) -> Any:
        """A written JSON file's content."""


def changed_lines(
    ctx: GateContext, written: WrittenEvidence, critical_files: Sequence[str], diff_base: str
) -> dict[str, Any]:
    """The changed lines of the critical files since the diff base, or why they are not determined."""
    record: dict[str, Any] = {"determined": False, "base_ref": diff_base or None, "base_commit": None}
    if not diff_base:
        record["reason"] = "[gates.G1] diff_base is empty, so there is no base to compare with"
        return record
    if not written.exists(DIFF_BASE):
        record["reason"] = "the diff against the base was not taken"
        return record
    base = written.read_json(DIFF_BASE)
    if not base.get("computed"):
        record["reason"] = str(base.get("reason") or "the diff against the base was not computed")
        return record
    changed = parse_diff(written.read_text(DIFF))
    lines = {path: sorted(changed[path]) for path in critical_files if changed.get(path)}
    untracked = ctx.run(
        "git-untracked-critical",
        ["git", "ls-files", "--others", "--exclude-standard", "-z", "--", *critical_files],
        timeout_s=60,
    )
    if untracked.returncode != 0:
        record["reason"] = f"git could not list the untracked critical files: {untracked.stderr().strip()[-300:]}"
        return record
    new_files = sorted(name for name in untracked.stdout().split("\0") if name in critical_files)
    for path in new_files:
        count = len((ctx.target_dir / path).read_text(encoding="utf-8", errors="replace").splitlines())
        lines[path] = list(range(1, count + 1))
    record.update(
        determined=True,
        reason=None,
        base_commit=base["base_commit"],
        includes_uncommitted=True,
        untracked_files=new_files,
        lines=lines,
    )
    return record


def _defs(tree: ast.Module) -> list[tuple[str | None, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Top-level functions and the methods of top-level classes (what mutmut mutates), with the class."""
    found: list[tuple[str | None, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append((None, node))
        elif isinstance(node, ast.ClassDef):
            found += [(node.name, m) for m in node.body if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)]
    return found


def _segment(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, list[str]]:
    """A function's first line (its first decorator's) and its lines, right-stripped."""
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return start, [line.rstrip() for line in lines[start - 1 : node.end_lineno]]


def function_of(generated: str) -> tuple[str | None, str]:
    """The class (None for a function) and function name of a generated mutmut name without its module."""
    mangled = generated.partition("__mutmut_")[0]
    if mangled.startswith("x" + CLASS_SEPARATOR):
        _, class_name, function_name = mangled.split(CLASS_SEPARATOR, 2)
        return class_name, function_name
    return None, mangled.removeprefix("x_")


def _renamed(lines: list[str], generated: str, function_name: str) -> list[str]:
    """A generated function's lines with its def renamed back to the original name."""
    return [line.replace(f"def {generated}(", f"def {function_name}(", 1) for line in lines]


def locate_mutants(mutated_source: str, source: str, names: Sequence[str]) -> dict[str, list[int] | None]:
    """The original file's lines each mutant changes (None: not located), from mutmut's mutated file.

    ``names`` are mutmut's names (``pkg.mod.x_func__mutmut_3``); ``source`` is the critical file the
    mutants were generated from, ``mutated_source`` mutmut's mutants/ copy of it.
    """
    located: dict[str, list[int] | None] = dict.fromkeys(names)
    try:
        mutated, original = ast.parse(mutated_source), ast.parse(source)
    except SyntaxError:
        return located
    mutated_lines, source_lines = mutated_source.splitlines(), source.splitlines()
    generated = {node.name: _segment(mutated_lines, node)[1] for _, node in _defs(mutated)}
    originals = [(cls, node.name, *_segment(source_lines, node)) for cls, node in _defs(original)]
    for name in names:
        mutant = name.rpartition(".")[2]
        copy_name = mutant.partition("__mutmut_")[0] + ORIG_SUFFIX
        if mutant not in generated or copy_name not in generated:
            continue
        class_name, function_name = function_of(mutant)
        copy = _renamed(generated[copy_name], copy_name, function_name)
        changed = _renamed(generated[mutant], mutant, function_name)
        starts = [s for cls, fn, s, body in originals if (cls, fn) == (class_name, function_name) and body == copy]
        ops = [
            op for op in difflib.SequenceMatcher(None, copy, changed, autojunk=False).get_opcodes() if op[0] != "equal"
        ]
        if len(starts) != 1 or not ops:
            continue
        first, last = ops[0][1], max(op[2] for op in ops)
        located[name] = list(range(starts[0] + first, starts[0] + max(last, first + 1)))
    return located


def on_changed_lines(
    located: Mapping[str, list[int] | None], files: Mapping[str, str], lines: Mapping[str, Sequence[int]]
) -> tuple[list[str], list[str]]:
    """Mutants with a line among their file's changed lines, and those that could not be placed; sorted."""
    wanted = {path: set(numbers) for path, numbers in lines.items()}
    hits = [name for name, where in located.items() if where and wanted.get(files[name], set()) & set(where)]
    return sorted(hits), sorted(name for name, where in located.items() if where is None)


def capped(names: Sequence[str], cap: int, seed: int) -> list[str]:
    """At most ``cap`` of the names: all of them, or a subset drawn with the sample's seed; sorted."""
    if len(names) <= cap:
        return sorted(names)
    draw = random.Random(f"release-harness G1 changed lines {seed}")  # noqa: S311 - reproducible, not a secret
    return sorted(draw.sample(sorted(names), cap))
