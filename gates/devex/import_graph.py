"""X5, module dependency graph: the target's import graph (grimp) as DOT and SVG, and its import contracts.

The graph is built by grimp in a child process of the harness's own interpreter over a clean copy
of the target's tracked files. grimp parses the source files and never imports them (only the
top-level package is located with `importlib.util.find_spec`, which does not execute it); the child
records which of the target's modules ended up in `sys.modules`, and any is a FAIL of its own.
The contracts the target declares for import-linter (`.importlinter`, `setup.cfg` `[importlinter]`
or `[tool.importlinter]` in pyproject.toml) are checked by import-linter's own engine in the same
child, with its cache off. A broken contract is a FAIL naming the contract and each forbidden
import (importer -> imported, line). No contracts declared: the graph is still written and X5 is
INCONCLUSIVE, since the requirement is the graph *with* its declared contracts checked.

Evidence: `import_graph.json` (modules, imports with line numbers, contracts and their breaks),
`import_graph.dot`, `import_graph.svg` (graphviz `dot`; its absence is recorded, X5 INCONCLUSIVE).
"""

from __future__ import annotations

import configparser
import json
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

from harness.context import GateContext
from harness.model import Status, worst

EVIDENCE = "import_graph.json"
DOT = "import_graph.dot"
SVG = "import_graph.svg"
TIMEOUT_S = 300.0

#: Child process: argv = packages (JSON), source root, contracts file or "". Prints one JSON object.
GRAPH_SCRIPT = r"""
import json, sys
packages, root, config = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
sys.path.insert(0, root)
import grimp
graph = grimp.build_graph(*packages, cache_dir=None)
imports = []
for importer in sorted(graph.modules):
    for imported in sorted(graph.find_modules_directly_imported_by(importer)):
        lines = sorted({d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)})
        imports.append({"importer": importer, "imported": imported, "line_numbers": lines})
out = {"grimp": grimp.__version__ if hasattr(grimp, "__version__") else None,
       "modules": sorted(graph.modules), "imports": imports, "contracts": None, "contract_error": None}
if config:
    from importlinter import __version__ as il_version
    from importlinter.application import use_cases
    from importlinter.configuration import configure
    configure()
    out["import_linter"] = il_version
    def direct(node, found):
        if isinstance(node, dict):
            if {"importer", "imported", "line_numbers"} <= node.keys():
                found.append({"importer": node["importer"], "imported": node["imported"],
                              "line_numbers": sorted(node["line_numbers"])})
            for value in node.values():
                direct(value, found)
        elif isinstance(node, (list, tuple)):
            for value in node:
                direct(value, found)
        return found
    try:
        use_cases._register_built_in_contract_types()
        report = use_cases.create_report(use_cases.read_user_options(config), cache_dir=None)
        out["contracts"] = [
            {"name": contract.name, "type": type(contract).__name__, "kept": check.kept,
             "broken_imports": direct(check.metadata, [])}
            for contract, check in report.get_contracts_and_checks()
        ]
        if report.invalid_contract_options:
            out["contract_error"] = "; ".join(f"{k}: {v}" for k, v in report.invalid_contract_options.items())
    except Exception as exc:
        out["contract_error"] = f"{type(exc).__name__}: {exc}"
out["imported_target_modules"] = sorted(
    name for name in sys.modules if any(name == p or name.startswith(p + ".") for p in packages))
print(json.dumps(out))
"""


def contracts_file(source_root: Path) -> Path | None:
    """The import-linter configuration the target declares, in import-linter's own lookup order."""
    for name in ("setup.cfg", ".importlinter"):
        path = source_root / name
        if path.is_file():
            parser = configparser.ConfigParser()
            try:
                parser.read(path, encoding="utf-8")
            except configparser.Error:
                return path  # import-linter reports the parse error
            if parser.has_section("importlinter"):
                return path
    pyproject = source_root / "pyproject.toml"
    if pyproject.is_file():
        try:
            tool = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
        except tomllib.TOMLDecodeError:
            return None
        if "importlinter" in tool:
            return pyproject
    return None


def to_dot(modules: list[str], imports: list[dict[str, Any]]) -> str:
    """The import graph as a Graphviz digraph, one node per module, one edge per direct import."""
    lines = ["digraph imports {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica", fontsize=10];']
    lines += [f"  {json.dumps(name)};" for name in modules]
    lines += [f"  {json.dumps(i['importer'])} -> {json.dumps(i['imported'])};" for i in imports]
    return "\n".join([*lines, "}", ""])


def collect(ctx: GateContext, copy_root: Path) -> None:
    """Build the graph of the copy's [target] packages, check its contracts, write JSON, DOT and SVG."""
    packages = list(ctx.config.target.packages)
    source_root = (copy_root / ctx.config.target.source_root).resolve()
    record: dict[str, Any] = {"packages": packages, "source_root": ctx.config.target.source_root}
    if not packages:
        record["error"] = "certify.toml's [target] packages is empty: no package to build the import graph of"
        ctx.write_json(EVIDENCE, record)
        return
    config = contracts_file(source_root)
    record["contracts_file"] = str(config.relative_to(copy_root)) if config else None
    ctx.progress("X5: import graph (grimp) and import contracts (import-linter)")
    argv = [sys.executable, "-I", "-c", GRAPH_SCRIPT, json.dumps(packages), str(source_root), str(config or "")]
    run = ctx.run("import-graph", argv, cwd=source_root, timeout_s=TIMEOUT_S)
    record["log"] = f"runs/{run.stderr_path.name}"
    try:
        graph = json.loads(run.stdout().strip().splitlines()[-1]) if run.returncode == 0 else None
    except (json.JSONDecodeError, IndexError):
        graph = None
    if graph is None:
        tail = run.stderr().strip()[-400:] or f"exit {run.returncode}"
        record["error"] = f"grimp could not build the import graph of {', '.join(packages)}: {tail}"
        ctx.write_json(EVIDENCE, record)
        return
    record.update(graph)
    dot_text = to_dot(graph["modules"], graph["imports"])
    ctx.write_text(DOT, dot_text)
    record["svg_error"] = _write_svg(ctx, dot_text)
    ctx.write_json(EVIDENCE, record)


def _write_svg(ctx: GateContext, dot_text: str) -> str | None:
    """Render the graph to SVG with graphviz `dot`; the reason it could not, or None."""
    dot = shutil.which("dot")
    if dot is None:
        return "graphviz `dot` is not installed: no SVG of the import graph (install graphviz)"
    source, target = ctx.scratch / DOT, ctx.scratch / SVG
    source.write_text(dot_text, encoding="utf-8")
    run = ctx.run("dot-svg", [dot, "-Tsvg", "-o", str(target), str(source)], timeout_s=120)
    if run.returncode != 0 or not target.is_file():
        return f"dot -Tsvg exited {run.returncode}: {run.stderr().strip()[-300:]}"
    ctx.copy_in(SVG, target)
    return None


def _where(item: dict[str, Any]) -> str:
    """One forbidden import as `importer -> imported (l.N)`."""
    lines = ", ".join(f"l.{n}" for n in item["line_numbers"]) or "line unknown"
    return f"{item['importer']} -> {item['imported']} ({lines})"


def judge(data: dict[str, Any]) -> tuple[Status, list[str]]:
    """The X5 status and reasons from import_graph.json; pure."""
    if data.get("error"):
        return Status.INCONCLUSIVE, [f"X5: {data['error']}"]
    modules, imports = data["modules"], data["imports"]
    if not modules:
        return Status.INCONCLUSIVE, [f"X5: grimp found no module in {', '.join(data['packages'])}"]
    if data["imported_target_modules"]:
        names = ", ".join(data["imported_target_modules"][:5])
        return Status.FAIL, [f"X5: building the graph imported target code ({names}); it must only be parsed"]
    reasons = [f"X5: import graph of {len(modules)} module(s), {len(imports)} direct import(s) (grimp)"]
    statuses = [Status.PASS]
    if data.get("svg_error"):
        statuses.append(Status.INCONCLUSIVE)
        reasons.append(f"X5: {data['svg_error']}")
    contracts = data.get("contracts")
    if data.get("contract_error"):
        statuses.append(Status.INCONCLUSIVE)
        reasons.append(f"X5: import-linter could not check {data['contracts_file']}: {data['contract_error']}")
    elif data.get("contracts_file") is None:
        statuses.append(Status.INCONCLUSIVE)
        reasons.append("X5: the target declares no import-linter contracts (.importlinter or [tool.importlinter])")
    elif not contracts:
        statuses.append(Status.INCONCLUSIVE)
        reasons.append(f"X5: {data['contracts_file']} declares no import-linter contract")
    else:
        broken = [c for c in contracts if not c["kept"]]
        for contract in broken:
            found = "; ".join(_where(i) for i in contract["broken_imports"][:3]) or "no import recorded"
            reasons.append(f"X5: contract {contract['name']!r} ({data['contracts_file']}) is broken: {found}")
        statuses.append(Status.FAIL if broken else Status.PASS)
        if not broken:
            reasons.append(f"X5: {len(contracts)} import contract(s) of {data['contracts_file']} kept")
    return worst(statuses), reasons
