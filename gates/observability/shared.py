"""The run-wide Prometheus (an `Observer`): it scrapes G2's load-profile and G4's chaos instances while they run.

The runner starts it before the first gate when G6 is planned after a watched gate and a
`prometheus` binary exists. Instances are discovered through a file_sd targets file rewritten as
they start and stop; each is labelled certify_gate / certify_name. `watch` returns once Prometheus
has scraped the new instance (so a query at a window's start sees its counters before the window);
`unwatch` returns once it has scraped it after the window. G6's collect then asks this server for
each window's counters, histogram buckets, `up` and ALERTS (`answers`) and keeps the answers and
the load generator's raw rows as its own evidence; the judgement is in shared_judge.py.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from gates.observability.policy import ObservabilityPolicy
from gates.observability.prom import PrometheusServer, binary_version
from gates.observability.run import duration_s, prom_selector, zero_for_file
from gates.observability.shared_judge import instance_of
from harness.context import RunServices
from harness.errors import HarnessError
from harness.observer import Observer

GATE_LABEL = "certify_gate"
NAME_LABEL = "certify_name"
UNWATCH_EXTRA_S = 6.0


class SharedPrometheus(Observer):
    """One Prometheus for the whole run, scraping every watched instance every `scrape_interval_s`."""

    def __init__(self, policy: ObservabilityPolicy, services: RunServices, gates: tuple[str, ...]) -> None:
        """Bind to G6's policy and the run; nothing starts until `start`."""
        self.policy = policy
        self.services = services
        self.gates = gates
        self.workdir = services.work_dir / "G6-shared-prometheus"
        self.targets_file = self.workdir / "targets.json"
        self.server: PrometheusServer | None = None
        self.failure = ""
        self.version = ""
        self.alert_for_s: dict[str, float] = {}
        self.zero_for = False
        self.started_at = 0.0
        self._lock = threading.Lock()
        self._targets: dict[tuple[str, str], dict[str, Any]] = {}
        self.instances: list[dict[str, Any]] = []
        self.windows: list[dict[str, Any]] = []

    def start(self) -> SharedPrometheus:
        """Start Prometheus on an empty target list; a failure is remembered (G6 reports it), never raised."""
        found = shutil.which(self.policy.prometheus)
        if found is None:
            self.failure = f"{self.policy.prometheus} is not installed (not on PATH)"
            return self
        service = self.services.config.service
        metrics = service.metrics if service is not None else ""
        if not metrics:
            self.failure = "[service] metrics is empty: nothing to scrape"
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_targets()
        try:
            rules = self._rules()
            self.version = binary_version(Path(found))
            self.server = PrometheusServer.start(
                Path(found),
                self.workdir,
                target="",
                metrics_path=metrics,
                interval_s=self.policy.scrape_interval_s,
                rule_files=rules,
                targets_file=self.targets_file,
            )
        except (HarnessError, OSError, yaml.YAMLError) as exc:
            self.failure = f"the run-wide Prometheus did not start: {getattr(exc, 'message', exc)}"
            self.server = None
        self.started_at = time.time()
        return self

    def _rules(self) -> list[Path]:
        """The target's rule files as G6 loads them (ci: for: 0s copies); remembers each alert's `for:`."""
        target_dir = self.services.target_dir
        self.zero_for = self.services.mode == "ci" and self.policy.ci_zero_for
        loaded = []
        for pattern in self.policy.alert_rules:
            for path in sorted(p for p in target_dir.glob(pattern) if p.is_file()):
                text = path.read_text(encoding="utf-8")
                for group in (yaml.safe_load(text) or {}).get("groups") or []:
                    for rule in group.get("rules") or []:
                        if "alert" in rule:
                            shipped = duration_s(rule.get("for", "0s"))
                            self.alert_for_s[str(rule["alert"])] = 0.0 if self.zero_for else shipped
                if not self.zero_for:
                    loaded.append(path)
                    continue
                loaded.append(zero_for_file(path, path.relative_to(target_dir).as_posix(), self.workdir / "rules"))
        return loaded

    def watching(self, gate_id: str) -> bool:
        """Whether the server still runs and that gate is one of the watched."""
        if self.server is None or gate_id not in self.gates:
            return False
        if self.server.proc is not None and self.server.proc.poll() is not None:
            with self._lock:
                self.failure = self.failure or f"the run-wide Prometheus exited: {self.server.stderr_tail()}"
            return False
        return True

    def _write_targets(self) -> None:
        """Rewrite the file_sd targets file atomically (Prometheus watches it)."""
        with self._lock:
            groups = list(self._targets.values())
        tmp = self.targets_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(groups, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, self.targets_file)
        except OSError as exc:
            with self._lock:
                self.failure = self.failure or f"the targets file could not be written: {exc.strerror}"

    def _selector(self, gate_id: str, name: str) -> str:
        """up{certify_gate="G2",certify_name="P1"}."""
        return f'up{{{GATE_LABEL}="{gate_id}",{NAME_LABEL}="{name}"}}'

    def _last_scrape(self, gate_id: str, name: str) -> float | None:
        """Unix time of the newest scrape of that instance, or None."""
        assert self.server is not None  # noqa: S101 - only called while watching
        body = self.server.query(f"timestamp({self._selector(gate_id, name)})", time.time())
        result = body.get("data", {}).get("result", []) if body.get("status") == "success" else []
        return float(result[0]["value"][1]) if result else None

    def _wait_scrape(self, gate_id: str, name: str, after: float, limit_s: float) -> float | None:
        """Wait until Prometheus has scraped the instance at or after `after`; the scrape's time or None."""
        deadline = time.monotonic() + limit_s
        while not self.services.cancel.is_set():
            last = self._last_scrape(gate_id, name)
            if last is not None and last >= after:
                return last
            if time.monotonic() > deadline:
                return None
            time.sleep(self.policy.scrape_interval_s / 4)
        return None

    def watch(self, gate_id: str, name: str, base_url: str) -> None:
        """Add the instance to the targets file and wait for its first scrape."""
        address = urllib.parse.urlsplit(base_url).netloc
        labels = {GATE_LABEL: gate_id, NAME_LABEL: name}
        with self._lock:
            self._targets[(gate_id, name)] = {"targets": [address], "labels": labels}
        self._write_targets()
        asked = time.time()
        first = self._wait_scrape(gate_id, name, 0.0, self.policy.shared.first_scrape_s)
        entry = {"gate": gate_id, "name": name, "instance": address, "watched_at": round(asked, 3)}
        entry["first_scrape"] = None if first is None else round(first, 3)
        with self._lock:
            self.instances.append(entry)

    def unwatch(self, gate_id: str, name: str) -> None:
        """Wait for one more scrape of the instance, then drop it from the targets file."""
        asked = time.time()
        last = self._wait_scrape(gate_id, name, asked, 3 * self.policy.scrape_interval_s + UNWATCH_EXTRA_S)
        with self._lock:
            self._targets.pop((gate_id, name), None)
            for entry in self.instances:
                if entry["gate"] == gate_id and entry["name"] == name and "last_scrape" not in entry:
                    entry["unwatched_at"] = round(asked, 3)
                    entry["last_scrape"] = None if last is None else round(last, 3)
        self._write_targets()

    def window(self, gate_id: str, name: str, *, kind: str, start: float, end: float, info: dict[str, Any]) -> None:
        """Remember a window; the instance's last scrape is filled in from `unwatch` when G6 asks."""
        with self._lock:
            self.windows.append(
                {"gate": gate_id, "name": name, "kind": kind, "start": round(start, 3), "end": round(end, 3), **info}
            )

    def stop(self) -> None:
        """Stop Prometheus (its data dir stays in the run's scratch, out of the pack)."""
        if self.server is not None:
            self.server.stop()

    def facts(self) -> dict[str, Any]:
        """What G6 keeps about the shared server: state, instances, windows (copies)."""
        with self._lock:
            return {
                "gates": list(self.gates),
                "running": self.server is not None and not self.failure,
                "failure": self.failure,
                "version": self.version,
                "zero_for": self.zero_for,
                "alert_for_s": dict(sorted(self.alert_for_s.items())),
                "started_at": round(self.started_at, 3),
                "instances": [dict(item) for item in self.instances],
                "windows": [dict(item) for item in self.windows],
            }


def window_selector(metric: str, labels: dict[str, str], gate_id: str, name: str) -> str:
    """A metric selector restricted to one watched instance."""
    return prom_selector(metric, {**labels, GATE_LABEL: gate_id, NAME_LABEL: name})


def _range_step(policy: ObservabilityPolicy, start: float, end: float) -> float:
    """A range-query step: the scrape interval, coarser if the run is long (Prometheus allows 11,000 points)."""
    return max(policy.scrape_interval_s, (end - start) / 10_000)


def record_shared(shared: SharedPrometheus, rec: Any, policy: ObservabilityPolicy) -> None:
    """Ask the shared server about every window and keep the answers, the windows and the generator's rows.

    `rec` is G6's evidence Recorder. Writes shared/run.json (always), and when the server ran
    shared/answers.json, shared/alerts-range.json, shared/up-range.json and the raw rows of each
    load window under shared/load/<profile>/raw.csv.gz.
    """
    facts = shared.facts()
    server = shared.server
    answers: dict[str, Any] = {}
    for window in facts["windows"]:
        raw = window.pop("raw_csv_gz", None)
        if window["kind"] != "load":
            continue
        if raw and Path(raw).is_file():
            window["raw"] = f"shared/load/{window['name']}/raw.csv.gz"
            rec.write_bytes(window["raw"], Path(raw).read_bytes())
        if server is not None:
            answers[window["name"]] = _window_answers(server, policy, window, facts["instances"])
    if server is not None:
        end = time.time()
        step = _range_step(policy, facts["started_at"], end)
        rec.write_json("shared/alerts-range.json", server.query_range("ALERTS", facts["started_at"], end, step))
        up = f'up{{{GATE_LABEL}=~".+"}}'
        rec.write_json("shared/up-range.json", server.query_range(up, facts["started_at"], end, step))
        facts["range_step_s"] = step
        facts["ended_at"] = round(end, 3)
        rec.write_json("shared/answers.json", answers)
    rec.write_json("shared/run.json", facts)


def _window_answers(
    server: PrometheusServer, policy: ObservabilityPolicy, window: dict[str, Any], instances: list[dict[str, Any]]
) -> dict[str, Any]:
    """Counters and histogram buckets of one load window's instance, just before it and after its last scrape."""
    entry = instance_of(instances, window)
    after_at = entry.get("last_scrape")
    out: dict[str, Any] = {"before_at": window["start"], "after_at": after_at, "cross": {}, "latency": {}}
    if after_at is None:
        return out
    for item in policy.cross_checks:
        expr = f"sum({window_selector(item.metric, item.labels, window['gate'], window['name'])})"
        out["cross"][item.name] = {
            "query": expr,
            "before": server.query(expr, window["start"]),
            "after": server.query(expr, after_at + 0.001),
        }
    for check in policy.latency_checks:
        selector = window_selector(f"{check.histogram}_bucket", check.labels, window["gate"], window["name"])
        expr = f"sum by (le) ({selector})"
        out["latency"][check.name] = {
            "query": expr,
            "before": server.query(expr, window["start"]),
            "after": server.query(expr, after_at + 0.001),
        }
    return out
