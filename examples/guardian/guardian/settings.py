"""Runtime settings persisted in the database: worker count, log level, task costs and limits.

The web UI and ``--workers`` write them; the supervisor scales workers to ``worker_count``,
every process applies ``log_level``, and workers read the task costs before each task.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from guardian.errors import SettingsError
from guardian.logsetup import LEVELS
from guardian.store import Store

# (minimum, maximum) of every integer setting; the UI and the API validate against these.
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "worker_count": (1, 16),
    "orchestrate_cost_ms": (0, 1000),
    "compute_cost_ms": (1, 5000),
    "dependency_timeout_ms": (100, 10_000),
    "dependency_retries": (0, 5),
}
# Protection knobs the healer sets (operators may too: POST /ui/settings accepts every key), kept
# off the settings page. 0 means "off": no bulkhead, no pacing, no memory limit.
POLICY_BOUNDS: dict[str, tuple[int, int]] = {
    "dependency_max_in_flight": (0, 16),
    "dependency_min_interval_ms": (0, 10_000),
    "worker_memory_limit_mb": (0, 65_536),
}
# String settings: the upstream endpoint override ("" = use --upstream-url).
MAX_URL_CHARS = 200


@dataclass(frozen=True)
class Settings:
    """The complete, validated set of runtime settings."""

    worker_count: int = 2
    log_level: str = "INFO"
    orchestrate_cost_ms: int = 2
    compute_cost_ms: int = 50
    dependency_timeout_ms: int = 2000
    dependency_retries: int = 2
    dependency_max_in_flight: int = 0
    dependency_min_interval_ms: int = 0
    worker_memory_limit_mb: int = 0
    upstream_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-ready dict."""
        return asdict(self)


def validate(values: dict[str, Any], base: Settings | None = None) -> Settings:
    """Merge ``values`` over ``base`` (or defaults), rejecting unknown keys and bad values."""
    current = (base or Settings()).to_dict()
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
    for key, raw in values.items():
        if key == "log_level":
            level = str(raw).upper()
            if level not in LEVELS:
                raise SettingsError(f"log_level must be one of {', '.join(LEVELS)}")
            current[key] = level
            continue
        if key == "upstream_url":
            current[key] = validate_url(raw)
            continue
        low, high = {**INT_BOUNDS, **POLICY_BOUNDS}[key]
        try:
            number = int(str(raw).strip())
        except ValueError as exc:
            raise SettingsError(f"{key} must be an integer") from exc
        if not low <= number <= high:
            raise SettingsError(f"{key} must be between {low} and {high}")
        current[key] = number
    return Settings(**current)


def validate_url(raw: object) -> str:
    """Return ``raw`` if it is "" or an http(s) URL with a host; raise SettingsError otherwise."""
    if not isinstance(raw, str) or len(raw) > MAX_URL_CHARS:
        raise SettingsError(f"upstream_url must be a string of at most {MAX_URL_CHARS} chars")
    if raw == "":
        return raw
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname or any(c.isspace() for c in raw):
        raise SettingsError("upstream_url must be empty or an http(s) URL with a host")
    return raw.rstrip("/")


def load(store: Store) -> Settings:
    """Read persisted settings; keys never saved keep their defaults, invalid ones are ignored."""
    persisted = store.load_settings()
    result = Settings()
    for key, value in persisted.items():
        try:
            result = validate({key: value}, result)
        except SettingsError:
            continue  # a hand-edited bad value must not stop the service; defaults apply
    return result


def save(store: Store, values: dict[str, Any]) -> Settings:
    """Validate ``values`` against the current settings and persist the merged result."""
    merged = validate(values, load(store))
    store.save_settings(merged.to_dict())
    return merged
