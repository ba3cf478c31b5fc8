"""X2, pinned dependencies: a lock or constraints file pins every installed distribution, and the install used it.

`collect` stores the target's lock file (`[gates.G5] lock_file`, a pip requirements/constraints file)
and the `[install]` argv; the pure `assess` compares it with what the target's venv really holds
(inventory.json): every installed distribution but the target itself must be pinned with `==` at the
version installed (else the install did not use the file), each pin with a `--hash` when
`lock_hashes` is set (the requirements format allows them), and the install command must name the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gates.security.inventory import INVENTORY
from gates.security.policy import EvidenceReader, ScanResult, SecurityPolicy, canonical_name
from gates.security.store import EvidenceStore
from harness.model import Measurement, Status

INPUTS = "pins/inputs.json"
SCANNER = "pinned dependencies (release-harness)"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;\\]+)")
MAX_NAMED = 5


def collect(store: EvidenceStore, target_dir: Path, policy: SecurityPolicy, install_argv: tuple[str, ...]) -> None:
    """Store the lock file's text (None when the target has none) and the install argv."""
    if policy.lock_file is None:
        return
    path = target_dir / policy.lock_file
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
    store.write_json(INPUTS, {"lock_file": policy.lock_file, "text": text, "install_command": list(install_argv)})


def parse_pins(text: str) -> dict[str, dict[str, Any]]:
    """Pins of a requirements/constraints file: canonical name -> version and its hashes (continuations joined)."""
    pins: dict[str, dict[str, Any]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        entry = line.split(" #", 1)[0].strip()
        match = PIN.match(entry)
        if match:
            pins[canonical_name(match.group(1))] = {
                "version": match.group(2),
                "hashes": re.findall(r"--hash[=\s]+(\S+)", entry),
            }
    return pins


def _install_uses(argv: list[str], lock_file: str) -> bool:
    """Whether the install argv names the lock file (an argument, `--constraint=FILE`, or a word of an `sh -c`)."""
    word = re.compile(rf"(?:^|[\s='\"/]){re.escape(Path(lock_file).name)}(?:$|[\s'\"])")
    return any(word.search(arg) for arg in argv)


def assess(reader: EvidenceReader, policy: SecurityPolicy, context: dict[str, Any]) -> ScanResult | None:
    """The X2 verdict from the stored lock and inventory; None when the target names no lock file."""
    if policy.lock_file is None:
        return None
    if not reader.exists(INPUTS) or not reader.exists(INVENTORY):
        return ScanResult(SCANNER, Status.INCONCLUSIVE, "not collected", ("the lock file or the inventory is missing",))
    inputs = reader.read_json(INPUTS)
    lock = str(inputs["lock_file"])
    if inputs["text"] is None:
        reason = f"{lock}: no lock or constraints file, so no dependency version is pinned"
        return ScanResult(SCANNER, Status.FAIL, "no lock file", (reason,))
    pins = parse_pins(str(inputs["text"]))
    own = canonical_name(str(context.get("target_project", "")))
    installed = {
        canonical_name(d["name"]): str(d["version"])
        for d in reader.read_json(INVENTORY)["distributions"]
        if canonical_name(d["name"]) != own
    }
    unpinned = sorted(name for name in installed if name not in pins)
    drifted = sorted(
        f"{n} {v} (pinned {pins[n]['version']})" for n, v in installed.items() if n in pins and pins[n]["version"] != v
    )
    unhashed = sorted(n for n in installed if n in pins and not pins[n]["hashes"]) if policy.lock_hashes else []
    reasons = []
    if unpinned:
        reasons.append(
            f"{lock} does not pin {len(unpinned)} installed distribution(s): {', '.join(unpinned[:MAX_NAMED])}"
        )
    if drifted:
        reasons.append(f"the install did not follow {lock}: installed {', '.join(drifted[:MAX_NAMED])}")
    if unhashed:
        reasons.append(
            f"{lock} pins {len(unhashed)} distribution(s) without a --hash: {', '.join(unhashed[:MAX_NAMED])}"
        )
    if not _install_uses(list(inputs["install_command"]), lock):
        reasons.append(f"the [install] command does not use {lock} (-c {lock})")
    measurements = (
        Measurement.judged(
            "installed distributions not pinned at their version", len(unpinned) + len(drifted), "<=", 0
        ),
        Measurement.judged("pins without a hash", len(unhashed), "<=", 0),
    )
    facts = {"lock_file": lock, "pins": len(pins), "installed": len(installed)}
    if reasons:
        return ScanResult(SCANNER, Status.FAIL, "not pinned", tuple(reasons), measurements=measurements, facts=facts)
    summary = f"{len(installed)} installed distribution(s) pinned in {lock}, the install used it"
    return ScanResult(SCANNER, Status.PASS, summary, measurements=measurements, facts=facts)
