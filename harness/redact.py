"""Keeping secrets out of the pack: an environment allow-list and a value scrubber for every write."""

from __future__ import annotations

import fnmatch
import math
import re
from collections import Counter
from collections.abc import Mapping

REDACTED = "[REDACTED]"

#: Environment variables worth recording in the run record (values still scrubbed when secret).
ENV_ALLOW = (
    "CI",
    "GITHUB_ACTIONS",
    "GITHUB_REF",
    "GITHUB_SHA",
    "GITHUB_RUN_ID",
    "GITHUB_WORKFLOW",
    "GITHUB_REPOSITORY",
    "LANG",
    "LC_ALL",
    "TZ",
    "PYTHONHASHSEED",
    "VIRTUAL_ENV",
    "CERTIFY_*",
    "PIP_INDEX_URL",
    "PIP_NO_CACHE_DIR",
    "SOURCE_DATE_EPOCH",
)
SECRET_NAME = re.compile(
    r"(^|_)(SECRET|TOKEN|PASSWORD|PASSWD|PASS|KEY|APIKEY|CREDENTIALS?|AUTH|PRIVATE|SIGNATURE|DSN)(_|$)"
    r"|SECRET|PASSWORD|TOKEN",
    re.I,
)
SECRET_VALUE = re.compile(
    r"AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abpr]-[A-Za-z0-9-]{10,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)?"
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."
    r"|://[^/\s:@]+:[^/\s@]+@"
)
MIN_SECRET_LEN = 8


def _entropy_bits_per_char(value: str) -> float:
    """Shannon entropy of a string, per character."""
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def looks_secret(name: str, value: str) -> bool:
    """Whether an environment variable's name or value suggests a credential."""
    if SECRET_NAME.search(name):
        return True
    if SECRET_VALUE.search(value):
        return True
    return len(value) >= 24 and " " not in value and "/" not in value and _entropy_bits_per_char(value) > 4.0


def allowed_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of the environment, with secret-looking values redacted."""
    recorded: dict[str, str] = {}
    for name in sorted(environ):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in ENV_ALLOW):
            value = environ[name]
            recorded[name] = REDACTED if looks_secret(name, value) else value
    return recorded


class Redactor:
    """Replaces every known secret value, and secret-shaped tokens, in data bound for the pack."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        """Learn the secret values present in this process's environment."""
        # Only values named as secrets are scrubbed everywhere: scrubbing every high-entropy
        # value would also erase ordinary paths and ids from the evidence.
        values = {
            value
            for name, value in environ.items()
            if len(value) >= MIN_SECRET_LEN
            and not value.startswith("/")  # a path (SSH_AUTH_SOCK, *_KEY_FILE) names a secret, is not one
            and (SECRET_NAME.search(name) or SECRET_VALUE.search(value))
        }
        # Longest first, so a secret containing another is replaced whole.
        self._values = sorted(values, key=len, reverse=True)
        self._encoded = [value.encode("utf-8") for value in self._values]

    def text(self, text: str) -> str:
        """Scrub a string."""
        for value in self._values:
            text = text.replace(value, REDACTED)
        return SECRET_VALUE.sub(REDACTED, text)

    def data(self, data: bytes) -> bytes:
        """Scrub bytes (any file written into the pack)."""
        for value in self._encoded:
            data = data.replace(value, REDACTED.encode())
        if self._looks_textual(data):
            return self.text(data.decode("utf-8")).encode("utf-8")
        return data

    @staticmethod
    def _looks_textual(data: bytes) -> bool:
        """Whether bytes decode as UTF-8 text (binary evidence such as PNG is left intact)."""
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return b"\x00" not in data
