"""What the healing CLI commands do (kept out of cli.py, which only parses and prints)."""

from __future__ import annotations

from typing import Any

from guardian.healing.audit import AuditLog
from guardian.healing.env import (
    FaultInjectionDisabledError,
    HealEnv,
    data_dir_allows_faults,
)
from guardian.healing.incidents import IncidentStore
from guardian.healing.playbooks import BasePlaybook, PlaybookError
from guardian.paths import DataDir
from guardian.store import Store

INT_OPTIONS = {"bytes", "mib", "count", "cost_ms", "slot"}


def playbook_list() -> list[dict[str, Any]]:
    """Every registered playbook's spec."""
    from guardian.healing.book import default_registry  # noqa: PLC0415

    return [p.spec.to_json() for p in default_registry().healing()]


def inject(data_dir: DataDir, playbook_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """Inject ``playbook_id``'s fault into the instance serving ``data_dir`` (if allowed)."""
    from guardian.healing.book import default_registry  # noqa: PLC0415

    if not data_dir_allows_faults(data_dir):
        raise FaultInjectionDisabledError(
            f"{data_dir.root} was not started with --enable-fault-injection"
        )
    playbook = default_registry().get(playbook_id)
    if not isinstance(playbook, BasePlaybook):
        raise PlaybookError(f"{playbook_id} has no fault injector")
    typed = {k: int(v) if k in INT_OPTIONS else v for k, v in options.items()}
    env = HealEnv(data_dir)
    try:
        return {"playbook": playbook_id, "injected": playbook.inject(env, typed)}
    finally:
        env.close()


def audit_report(data_dir: DataDir) -> dict[str, Any]:
    """Verify the audit chain and head."""
    store = Store(data_dir.db_path)
    try:
        return AuditLog(store).report().to_json()
    finally:
        store.close()


def incidents_report(data_dir: DataDir, playbook_id: str | None) -> dict[str, Any]:
    """Incidents (newest first) and stats."""
    store = Store(data_dir.db_path)
    try:
        incidents = IncidentStore(store)
        return {
            "stats": incidents.stats(),
            "incidents": [i.to_json() for i in incidents.list(playbook_id, 200)],
        }
    finally:
        store.close()


def run_healer(
    data_dir: DataDir, upstream_url: str | None, api: tuple[str, int] | None = None
) -> int:
    """Run the healer process until SIGTERM; with ``api`` (host, port) the canaries run too."""
    from guardian import procutil  # noqa: PLC0415
    from guardian.healing import healer  # noqa: PLC0415
    from guardian.healing.canary import CanaryRunner, CanaryTarget  # noqa: PLC0415

    data_dir.ensure()
    procutil.bind_to_parent()
    data_dir.write_pid("healer", 0)
    env = HealEnv(data_dir, upstream_url, busy_timeout_ms=3000)
    canary = None if api is None else CanaryRunner(env, CanaryTarget(*api, upstream_url))
    try:
        return healer.main(env, canary)
    finally:
        data_dir.remove_pid("healer", 0)
