"""The rendering environment of a screenshot: the browser's version and which font each CSS family became.

Two machines can draw the same page differently: another Chromium build, or a font package that
changes what `sans-serif` resolves to (Debian's chromium recommends fonts-liberation, which turns
Arial and the form controls' default font from DejaVu Sans into Liberation Sans). The E2E gate
records this for every run and `python -m e2e.update_baselines` records it beside the baselines
(`rendering.json`), so a visual change can say when the baselines were drawn elsewhere. The record
explains a change; it never excuses one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

RECORD = "rendering.json"
"""The file beside a target's baselines that says how they were drawn."""
FAMILIES = ("sans-serif", "serif", "monospace", "system-ui", "Arial")
"""CSS families pages commonly name; each is asked of fontconfig, as Chromium on Linux does."""
FC_TIMEOUT_S = 10.0


def _fc_match(fc_match: str, family: str) -> str:
    """The font fontconfig gives for `family`, or "unknown" when it cannot say."""
    try:
        done = subprocess.run(
            [fc_match, "-f", "%{family[0]}", family], capture_output=True, text=True, timeout=FC_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def fonts() -> dict[str, str]:
    """Each family of FAMILIES -> the font fontconfig gives for it ("unknown" without fc-match)."""
    fc_match = shutil.which("fc-match")
    return {family: _fc_match(fc_match, family) if fc_match else "unknown" for family in FAMILIES}


def environment(browser_version: str) -> dict[str, Any]:
    """This machine's rendering environment for a browser of `browser_version`."""
    return {"browser": f"Chromium {browser_version}", "fonts": fonts()}


def read_record(baselines: Path) -> dict[str, Any] | None:
    """The baselines' rendering record, or None when there is none or it is not a JSON object with a browser."""
    try:
        data = json.loads((baselines / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("fonts", {}), dict) or "browser" not in data:
        return None
    return data


def record_bytes(env: dict[str, Any]) -> bytes:
    """The record as written beside the baselines (sorted keys, one trailing newline)."""
    return (json.dumps(env, indent=2, sort_keys=True) + "\n").encode("utf-8")


def describe(env: dict[str, Any]) -> str:
    """One line: the browser and each font family's resolution."""
    families = ", ".join(f"{family} -> {font}" for family, font in sorted(env.get("fonts", {}).items()))
    return f"{env.get('browser', 'an unknown browser')} ({families or 'fonts unknown'})"


def difference(baseline: dict[str, Any] | None, run: dict[str, Any] | None) -> str:
    """Why the baselines may render differently here, or "" when nothing recorded says so; pure.

    The baselines' record missing is said too: then nobody can tell a page's change from a machine's.
    """
    if not run:
        return ""
    if not baseline:
        return (
            "the baselines record no rendering environment (python -m e2e.update_baselines writes "
            f"{RECORD}); this run drew with {describe(run)}"
        )
    then = baseline.get("fonts", {})
    changed = [
        f"{family} -> {then[family]} then, {font} now"
        for family, font in sorted(run.get("fonts", {}).items())
        if then.get(family, font) != font
    ]
    if baseline.get("browser") != run.get("browser"):
        changed.insert(0, f"{baseline.get('browser')} then, {run.get('browser')} now")
    if not changed:
        return ""
    return (
        "the baselines were drawn in another rendering environment ("
        + "; ".join(changed)
        + "): the change may be the machine's, not the page's; review the diff images, and after review "
        "refresh the baselines with python -m e2e.update_baselines"
    )
