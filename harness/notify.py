"""Alert hooks (O8): POST a JSON alert to webhooks and/or hand it to a command; never fatal, never blocking.

Each hook gets `timeout_s` per attempt and `retries` further attempts after a connection error or a
5xx answer (with a short back-off); a 4xx answer is not retried. The outcome of every hook is a line
the CLI prints; a hook that fails changes nothing about the run, its pack or its exit code.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from harness.config import NotifySection

ALERT_FORMAT = "release-harness-alert/1"
BACKOFF_S = 0.5


@dataclass(frozen=True)
class HookOutcome:
    """What one hook did: delivered or not, after how many attempts, and what it answered."""

    hook: str
    delivered: bool
    attempts: int
    detail: str

    def line(self) -> str:
        """One line for the CLI."""
        word = "delivered" if self.delivered else "FAILED"
        return f"notify: {self.hook}: {word} after {self.attempts} attempt(s) ({self.detail})"


def _post_once(url: str, body: bytes, timeout_s: float) -> tuple[bool, bool, str]:
    """One POST: (delivered, worth retrying, detail)."""
    request = urllib.request.Request(  # noqa: S310 - the URL's scheme is checked to be http(s) by the config
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
            return True, False, f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return False, exc.code >= 500, f"HTTP {exc.code}"  # 5xx: the receiver's fault, worth a retry
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, True, f"{type(reason).__name__}: {reason}"


def post(url: str, payload: dict[str, Any], settings: NotifySection) -> HookOutcome:
    """POST the alert to one webhook with retries."""
    body = json.dumps(payload, sort_keys=True).encode()
    detail = ""
    for attempt in range(1, settings.retries + 2):
        delivered, retry, detail = _post_once(url, body, settings.timeout_s)
        if delivered or not retry or attempt == settings.retries + 1:
            return HookOutcome(url, delivered, attempt, detail)
        time.sleep(BACKOFF_S * attempt)
    return HookOutcome(url, False, settings.retries + 1, detail)


def run_command(argv: tuple[str, ...], payload: dict[str, Any], settings: NotifySection) -> HookOutcome:
    """Hand the alert to a command on its standard input; exit 0 is delivered."""
    shown = " ".join(argv)
    try:
        done = subprocess.run(  # the target's own configured argv, never a shell
            list(argv),
            input=json.dumps(payload, sort_keys=True),
            capture_output=True,
            text=True,
            timeout=settings.timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return HookOutcome(shown, False, 1, f"{type(exc).__name__}: {exc}")
    return HookOutcome(shown, done.returncode == 0, 1, f"exit {done.returncode}")


def notify(payload: dict[str, Any], settings: NotifySection) -> list[HookOutcome]:
    """Every configured hook, in order: webhooks, then the command."""
    outcomes = [post(url, payload, settings) for url in settings.webhooks]
    if settings.command:
        outcomes.append(run_command(settings.command, payload, settings))
    return outcomes
