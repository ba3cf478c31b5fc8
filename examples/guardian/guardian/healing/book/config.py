"""Playbooks for configuration and runtime state: setting drift, log floods, a stuck circuit."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from guardian import settings as settings_mod
from guardian.errors import SettingsError
from guardian.healing.book.tasks import insert_task_rows
from guardian.healing.env import HealEnv
from guardian.healing.playbooks import (
    BasePlaybook,
    Detection,
    ParamSpec,
    PlaybookOutcome,
    PlaybookSpec,
    RiskTier,
    RunContext,
)


def _invalid_rows(env: HealEnv) -> dict[str, str]:
    """Return persisted settings rows that fail validation: key → raw JSON text."""
    bad = {}
    for key, raw in env.store().read("SELECT key, value FROM settings"):
        try:
            settings_mod.validate({key: json.loads(raw)})
        except (SettingsError, ValueError):
            bad[key] = raw
    return bad


class SettingsDrift(BasePlaybook):
    """Persisted settings that no longer validate are restored to the last known-good values."""

    spec = PlaybookSpec(
        id="settings-drift",
        actions=("config-write",),
        title="Restore known-good settings over drifted values",
        failure_mode="persisted settings were edited to values guardian silently ignores",
        tier=RiskTier.TIER_3,
        fault="writes worker_count=999 and dependency_retries='many' into the settings table",
    )

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Invalid rows; while there are none, remember the settings as known-good."""
        bad = _invalid_rows(env)
        if not bad:
            env.memory["known_good_settings"] = settings_mod.load(env.store()).to_dict()
            return None
        return Detection("settings drift", ",".join(sorted(bad)), {"invalid": bad})

    def _known_good(self, env: HealEnv) -> dict[str, Any]:
        """Return the last fully valid settings this healer saw (defaults if it never saw any)."""
        return dict(env.memory.get("known_good_settings") or settings_mod.Settings().to_dict())

    def plan(self, ctx: RunContext) -> list[str]:
        """Rewrite each bad key."""
        good = self._known_good(ctx.env)
        return [
            f"set {k} = {good[k]!r} (was {v})"
            for k, v in _invalid_rows(ctx.env).items()
            if k in good
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Write the known-good value of every invalid key, remembering the raw values."""
        bad = _invalid_rows(ctx.env)
        good = self._known_good(ctx.env)
        fixes = {k: good[k] for k in bad if k in good}
        with ctx.env.store().write() as conn:
            for key, value in fixes.items():
                conn.execute(
                    "UPDATE settings SET value = ? WHERE key = ?", (json.dumps(value), key)
                )
            for key in set(bad) - set(fixes):
                conn.execute("DELETE FROM settings WHERE key = ?", (key,))
        ctx.undo["raw"] = bad
        return PlaybookOutcome(True, f"restored {sorted(bad)}", {"restored": fixes})

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Put the raw values back."""
        raw = context.undo.get("raw", {})
        with context.env.store().write() as conn:
            for key, value in raw.items():
                conn.execute(
                    "INSERT INTO settings(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
        return PlaybookOutcome(True, f"restored raw {sorted(raw)}")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Hand-edit two rows to values load() ignores."""
        with env.store().write() as conn:
            for key, value in (("worker_count", 999), ("dependency_retries", "many")):
                conn.execute(
                    "INSERT INTO settings(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, json.dumps(value)),
                )
        return {"worker_count": 999, "dependency_retries": "many"}


class LogFlood(BasePlaybook):
    """DEBUG logging left on under load floods the log: return to INFO."""

    spec = PlaybookSpec(
        id="log-flood",
        actions=("config-write",),
        title="Turn debug logging off during a log flood",
        failure_mode="the log grows faster than its budget because log_level is DEBUG",
        tier=RiskTier.TIER_1,
        params=(
            ParamSpec("max_bytes_per_s", int, 20_000, 1000, 1 << 40, "log growth budget"),
            ParamSpec("window_s", int, 2, 1, 600, "measurement window"),
        ),
        fault="sets log_level DEBUG and submits 300 light tasks of 10 steps (11 DEBUG lines each)",
    )

    def _rate(self, env: HealEnv, window_s: int) -> float:
        """Log growth in bytes per second over (at least) the window."""
        samples: list[tuple[float, int]] = env.memory.setdefault("log_samples", [])
        path = env.data_dir.log_path
        now = time.monotonic()
        samples.append((now, path.stat().st_size if path.exists() else 0))
        while len(samples) > 2 and now - samples[1][0] >= window_s:
            samples.pop(0)
        then, size_then = samples[0]
        if now - then < window_s:
            return 0.0
        return max(0.0, (samples[-1][1] - size_then) / (now - then))

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """DEBUG level and growth above budget."""
        rate = self._rate(env, params["window_s"])
        level = settings_mod.load(env.store()).log_level
        if level != "DEBUG" or rate <= params["max_bytes_per_s"]:
            return None
        return Detection(
            "log flood at DEBUG", "log_level", {"bytes_per_s": round(rate), "log_level": level}
        )

    def plan(self, ctx: RunContext) -> list[str]:
        """Set INFO."""
        return ["set log_level DEBUG -> INFO"]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Persist INFO (every process applies it within two seconds)."""
        previous = settings_mod.load(ctx.env.store()).log_level
        settings_mod.save(ctx.env.store(), {"log_level": "INFO"})
        ctx.undo["log_level"] = previous
        return PlaybookOutcome(True, f"log_level {previous} -> INFO")

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Pass when the persisted level is no longer DEBUG."""
        level = settings_mod.load(context.env.store()).log_level
        return PlaybookOutcome(level != "DEBUG", f"log_level {level}")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Restore the previous level."""
        previous = context.undo.get("log_level")
        if previous:
            settings_mod.save(context.env.store(), {"log_level": previous})
        return PlaybookOutcome(True, f"log_level back to {previous}")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """DEBUG plus a stream of light tasks (each step and each completion logs at DEBUG).

        The tasks are scheduled evenly over `spread_s` seconds, starting after the processes have
        applied the new level (they re-read settings within two seconds): a flood is sustained
        log growth, not one burst that a fast worker clears before DEBUG is even in effect. Few
        tasks of many steps (30 tasks/s by default, about 70 kB/s of log at DEBUG) flood the log
        without queueing work faster than a loaded host drains it: 3000 one-step tasks did, and
        the queue-backlog playbook fired during the flood.
        """
        settings_mod.save(env.store(), {"log_level": "DEBUG"})
        count = int(options.get("count", 300))
        steps = int(options.get("steps", 10))
        spread_s = float(options.get("spread_s", 10.0))
        start = time.time() + 2.5
        payload = json.dumps({"steps": steps, "cost_ms": 0})
        rows: list[tuple[str, str, str, int, float, str | None, float | None]] = [
            ("orchestrate", payload, "queued", 0, start + spread_s * i / count, None, None)
            for i in range(count)
        ]
        insert_task_rows(env, rows)
        return {"log_level": "DEBUG", "submitted": count, "steps": steps, "spread_s": spread_s}


class CircuitStuckOpen(BasePlaybook):
    """The shared breaker is open until a future time (clock skew) while the upstream is healthy."""

    spec = PlaybookSpec(
        id="circuit-stuck-open",
        actions=("sqlite-write",),
        title="Close a dependency circuit stuck open by a skewed timestamp",
        failure_mode="dependency calls are refused although the upstream answers",
        tier=RiskTier.TIER_1,
        fault="sets the upstream circuit open with opened_at one day ahead",
    )

    def _row(self, env: HealEnv) -> tuple[Any, ...] | None:
        """Return the upstream circuit row, if stuck open."""
        rows = env.store().read(
            "SELECT state, consecutive_failures, opened_at, updated_at FROM circuit "
            "WHERE name = 'upstream' AND state = 'open' AND opened_at > ?",
            (time.time() + 1.0,),
        )
        return tuple(rows[0]) if rows else None

    def _upstream_healthy(self, env: HealEnv) -> bool:
        """GET {upstream}/healthz answers 200."""
        try:
            return httpx.get(f"{env.upstream_url}/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Open with a future opened_at, and the upstream healthy."""
        if env.upstream_url is None:
            return None
        row = self._row(env)
        if row is None or not self._upstream_healthy(env):
            return None
        return Detection("circuit stuck open", "upstream", {"opened_at": row[2]})

    def plan(self, ctx: RunContext) -> list[str]:
        """Close the breaker."""
        return ["set circuit upstream closed, failures 0"]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Close it, remembering the row."""
        row = self._row(ctx.env)
        ctx.undo["row"] = list(row) if row else None
        with ctx.env.store().write() as conn:
            conn.execute(
                "UPDATE circuit SET state = 'closed', consecutive_failures = 0, opened_at = NULL, "
                "updated_at = ? WHERE name = 'upstream'",
                (time.time(),),
            )
        return PlaybookOutcome(True, "circuit closed")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Restore the saved row."""
        row = context.undo.get("row")
        if row:
            with context.env.store().write() as conn:
                conn.execute(
                    "UPDATE circuit SET state = ?, consecutive_failures = ?, opened_at = ?, "
                    "updated_at = ? WHERE name = 'upstream'",
                    tuple(row),
                )
        return PlaybookOutcome(True, "circuit row restored" if row else "nothing to restore")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Open the breaker until tomorrow."""
        now = time.time()
        with env.store().write() as conn:
            conn.execute(
                "INSERT INTO circuit(name, state, consecutive_failures, opened_at, updated_at) "
                "VALUES ('upstream', 'open', 3, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "state = 'open', consecutive_failures = 3, opened_at = excluded.opened_at, "
                "updated_at = excluded.updated_at",
                (now + 86_400, now),
            )
        return {"opened_at": now + 86_400}


PLAYBOOKS: tuple[type[BasePlaybook], ...] = (SettingsDrift, LogFlood, CircuitStuckOpen)
