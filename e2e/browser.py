"""Finding a Chromium the journeys can drive: Playwright's own build, else the system's chromium.

The choice is made by *launching* each candidate from the target's venv (where Playwright is
installed for the run): a browser that is present but cannot start is no browser. `[gates.E2E]
browser` picks the candidates: "auto" (Playwright's build, then chromium on PATH and the usual
Debian paths), "none" (no browser: the gate is NOT_RUN; lets a test simulate a bare machine), or
the path of an executable.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: What to install when no browser is found.
INSTALL_HINT = "apt-get install -y chromium  (or, in the target's venv: python -m playwright install chromium)"
BUNDLED = "playwright"
SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SYSTEM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium")

#: Run as `python -c PROBE CANDIDATE...` in the target's venv: prints one JSON object.
#: A candidate is "playwright" (its own build, tried only when installed) or an executable path.
PROBE = r"""
import json, os, sys
from playwright.sync_api import sync_playwright
from importlib.metadata import version
args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
result = {"playwright": version("playwright"), "attempts": [], "chosen": None}
with sync_playwright() as driver:
    for candidate in sys.argv[1:]:
        path = None if candidate == "playwright" else candidate
        if path is None and not os.path.exists(driver.chromium.executable_path):
            result["attempts"].append({"candidate": candidate, "error": "Playwright's Chromium is not installed"})
            continue
        try:
            browser = driver.chromium.launch(executable_path=path, args=args, headless=True, timeout=30000)
            page = browser.new_page()
            page.set_content("<title>probe</title>")
            assert page.title() == "probe"
            result["chosen"] = {"candidate": candidate, "executable": path or driver.chromium.executable_path,
                                "version": browser.version}
            browser.close()
            break
        except Exception as exc:
            result["attempts"].append({"candidate": candidate, "error": str(exc).strip()[:600]})
print(json.dumps(result))
"""


def candidates(setting: str) -> list[str]:
    """Browsers to try, in order, for a `browser` setting ("auto", "none" or a path)."""
    if setting == "none":
        return []
    if setting != "auto":
        return [setting]
    found = [BUNDLED]
    for name in SYSTEM_NAMES:
        path = shutil.which(name)
        if path and path not in found:
            found.append(path)
    found.extend(path for path in SYSTEM_PATHS if os.access(path, os.X_OK) and path not in found)
    return found


def executable_path(chosen: dict[str, str]) -> str:
    """What E2E_BROWSER_PATH gets: empty for Playwright's own build, else the executable."""
    return "" if chosen["candidate"] == BUNDLED else str(Path(chosen["executable"]))
