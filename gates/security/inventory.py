"""What is installed in the target's venv, asked of the target's own interpreter (never imported here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gates.security.policy import EvidenceReader, canonical_name
from gates.security.store import EvidenceStore, run_problem

INVENTORY = "inventory.json"
INVENTORY_RUN = "inventory-run.json"

# Runs inside the target's interpreter with -I: lists every installed distribution and where
# site-packages is, so each scanner's coverage can be checked against the real installed set.
PROBE = """
import importlib.metadata as md, json, sys, sysconfig
paths = sysconfig.get_paths()
dists = sorted({(d.metadata["Name"] or "", d.version or "") for d in md.distributions()})
print(json.dumps({
    "python": sys.version.split()[0],
    "prefix": sys.prefix,
    "site_packages": sorted({paths["purelib"], paths["platlib"]}),
    "distributions": [{"name": n, "version": v} for n, v in dists if n],
}))
"""


def collect(store: EvidenceStore, python: Path, timeout_s: float) -> dict[str, Any] | None:
    """Ask the target's interpreter for its installed distributions; None if it could not answer."""
    run = store.ctx.run("inventory", [str(python), "-I", "-c", PROBE], cwd=store.ctx.scratch, timeout_s=timeout_s)
    store.record_run(INVENTORY_RUN, run)
    if run.returncode != 0:
        return None
    try:
        data: dict[str, Any] = json.loads(run.stdout())
    except ValueError:
        return None
    store.write_json(INVENTORY, data)
    return data


def installed_names(inventory: dict[str, Any], exclude: str | None) -> dict[str, str]:
    """Canonical name -> version of every installed distribution except `exclude` (the target itself)."""
    skip = canonical_name(exclude) if exclude else None
    names = {canonical_name(d["name"]): str(d["version"]) for d in inventory.get("distributions", [])}
    return {name: version for name, version in sorted(names.items()) if name != skip}


def inventory_problem(reader: EvidenceReader) -> str | None:
    """Why the installed set is unknown, or None when inventory.json exists."""
    if reader.exists(INVENTORY):
        return None
    if reader.exists(INVENTORY_RUN):
        why = run_problem(reader.read_json(INVENTORY_RUN), "the target's interpreter")
        return f"the installed distributions could not be listed ({why or 'its output was not JSON'})"
    return "the installed distributions were not listed"
