"""Pure judgement of the SOAK gate: hourly figures, resource growth, healing, and whether it was the soak.

Everything is recomputed from the stored segment files (raw per-request CSV, /proc samples, heal
observations), so `certify verify` reaches the same verdict. A soak shorter than the catalogue's
duration is *abbreviated* (R5): its figures are still judged, but it never evidences P4 or H15.
"""

from __future__ import annotations

import csv
import io
import statistics
from typing import Any

from gates.load import judge_quantile, judge_rate
from gates.playbooks.config import PlaybookPolicy
from gates.playbooks.judge import sample_healthy
from harness.model import Measurement, Status, worst
from load.stats import RawRow, parse_raw, profile_stats

KIB_PER_MIB = 1024
#: The /proc figures judged for growth: the service pid's, and its whole process group's.
RESOURCE_KEYS = ("rss_kb", "fds", "group_rss_kb", "group_fds")
#: Seconds before an interrupted segment's last planned arrival left out of its figures.
CUT_TAIL_S = 10.0


def parse_proc(text: str) -> list[dict[str, float | None]]:
    """Rows of a segment's proc.csv (t, rss_kb, fds, group_rss_kb, group_procs); empty cells are None."""
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append({key: (float(value) if value not in ("", None) else None) for key, value in row.items()})
    return rows


def heal_outcome(pb: PlaybookPolicy, heal: dict[str, Any]) -> dict[str, Any]:
    """One injected fault: healed (the target's incident final as healed and the harness's probes healthy)."""
    api = pb.target_api
    check = pb.playbooks.get(heal["playbook"])
    names = (*check.probes, *pb.health) if check is not None else ()
    statuses = [i.get(api.incident_status_field) for i in heal.get("incidents", [])]
    healed_incident = any(status in api.healed for status in statuses)
    samples = heal.get("samples") or []
    probes_ok = bool(samples) and check is not None and sample_healthy(pb, names, samples[-1])
    seen = check is not None and any(not sample_healthy(pb, names, s) for s in samples)
    injected = heal.get("inject_status") is not None and 200 <= int(heal["inject_status"]) < 300
    healed = injected and healed_incident and probes_ok
    # The harness's own probes never saw the fault take effect and the target opened no incident: the
    # service stayed healthy through it (e.g. an earlier heal's remedy still guards it). Not a heal and
    # not a failure to heal; counted apart, and too many of them leave the loop unexercised.
    no_effect = injected and not statuses and probes_ok and bool(samples) and not seen and not heal.get("cut_short")
    if not injected:
        why = f"inject answered {heal.get('inject_status')} {heal.get('inject_error') or ''}".strip()
    elif heal.get("cut_short"):
        why = "the soak ended while the heal was being watched"
    elif no_effect:
        why = f"no effect: the harness's probes stayed healthy for {len(samples)} samples and no incident was opened"
    elif not healed_incident:
        why = f"no incident of {heal['playbook']} reached {'/'.join(api.healed)} (saw {statuses or 'none'})"
    elif not probes_ok:
        why = "the harness's probes were not healthy at the end of the watch"
    else:
        why = ""
    return {
        "playbook": heal["playbook"],
        "inject_at": heal["inject_at"],
        "healed": healed,
        "cut_short": bool(heal.get("cut_short")),
        "fault_seen_by_harness": seen,
        "no_effect": no_effect,
        "heal_s": round(float(heal["ended_at"]) - float(heal["inject_at"]), 3) if healed else None,
        "why": why,
    }


def fault_windows(heals: list[dict[str, Any]], grace_s: float) -> list[tuple[float, float]]:
    """Unix-time windows from each injection to the end of its heal watch plus `grace_s`."""
    return [(float(h["inject_at"]), float(h["ended_at"]) + grace_s) for h in heals if "ended_at" in h]


def split_by_windows(
    rows: list[RawRow], origin_unix: float, windows: list[tuple[float, float]]
) -> tuple[list[RawRow], list[RawRow]]:
    """Rows planned outside every fault window, and rows planned inside one, each by its own planned time.

    A poll has its own planned time: the polls of a task submitted just before a fault that fail
    while it lasts are inside the window, and the submit that preceded it stays outside.
    """
    outside: list[RawRow] = []
    inside: list[RawRow] = []
    for row in rows:
        at = origin_unix + row.planned_s
        (inside if any(start <= at <= end for start, end in windows) else outside).append(row)
    return outside, inside


def _load_figures(rows: list[RawRow], warmup_s: float, confidence: float) -> dict[str, Any]:
    """Requests, errors, latency percentiles and task figures of some rows of a segment."""
    planned = sum(1 for row in rows if row.kind in ("arrival", "drop"))
    stats = profile_stats(rows, planned, warmup_s, 1.0, confidence)
    http = stats["http"]
    latency = http["corrected_ms"]
    return {
        "requests": http["requests"],
        "errors": http["errors"],
        "error_rate": round(http["errors"] / http["requests"], 6) if http["requests"] else None,
        "p50_ms": latency["p50"],
        "p90_ms": latency["p90"],
        "p99_ms": latency["p99"],
        "p99_upper_ms": (latency["p99_ci"] or {}).get("upper_ms"),
        "task_p99_ms": stats["tasks"]["latency_ms"]["p99"],
        "tasks_submitted": stats["tasks"]["submitted"],
        "tasks_failed": stats["tasks"]["failed"],
        "errors_by_kind": stats["errors_by_kind"],
    }


def segment_figures(  # noqa: PLR0917 - the four files of a segment and the three settings that judge them
    meta: dict[str, Any],
    raw: bytes,
    proc_text: str,
    heals: list[dict[str, Any]],
    pb: PlaybookPolicy,
    confidence: float,
    grace_s: float,
) -> dict[str, Any]:
    """One segment's (one hour's) figures: latency percentiles, error rate, RSS and fd change, incidents healed.

    The load figures are given for every request, and apart for the requests planned outside the
    fault windows (injection to heal, plus a grace) and inside them: a fault the harness injects on
    purpose may fail requests while it lasts; what the soak's steady state does is the outside figure.
    """
    rows = parse_raw(raw)
    cut_tail_s = 0.0
    if not meta["complete"] and rows:
        # Stopped by an interrupt: the harness's own shutdown (instance stopped while the driver still
        # sends) refuses the last requests, so the tail before the stop is left out, and said so.
        cut_tail_s = CUT_TAIL_S
        last = max(row.planned_s for row in rows)
        late = {
            row.seq
            for row in rows
            if row.kind in ("arrival", "drop", "unfinished") and row.planned_s > last - cut_tail_s
        }
        rows = [row for row in rows if row.seq not in late]
    origin = float(meta.get("load_started_unix") or meta["started_at"])
    outside, inside = split_by_windows(rows, origin, fault_windows(heals, grace_s))
    proc = [r for r in parse_proc(proc_text) if r["rss_kb"] is not None and r["fds"] is not None]
    outcomes = [heal_outcome(pb, heal) for heal in heals]
    every = _load_figures(rows, float(meta["warmup_s"]), confidence)
    arrivals = sum(1 for row in rows if row.kind in ("arrival", "drop", "unfinished"))
    return {
        "index": meta["index"],
        "instance": meta["instance"],
        "started_at": meta["started_at"],
        "planned_s": meta["planned_s"],
        "wall_s": meta["wall_s"],
        "complete": bool(meta["complete"]),
        "cut_tail_s": cut_tail_s,
        **every,
        "outside_faults": _load_figures(outside, float(meta["warmup_s"]), confidence),
        "during_faults": _load_figures(inside, float(meta["warmup_s"]), confidence),
        "delivered_ratio": round(arrivals / int(meta["planned_arrivals"]), 6) if meta["planned_arrivals"] else 0.0,
        "rss_start_kb": proc[0]["rss_kb"] if proc else None,
        "rss_end_kb": proc[-1]["rss_kb"] if proc else None,
        "fds_start": proc[0]["fds"] if proc else None,
        "fds_end": proc[-1]["fds"] if proc else None,
        "group_rss_end_kb": proc[-1]["group_rss_kb"] if proc else None,
        "proc_samples": len(proc),
        "faults_injected": len(outcomes),
        "incidents_healed": sum(1 for o in outcomes if o["healed"]),
        "heals": outcomes,
    }


def growth(samples: list[tuple[float, float]], warmup_s: float) -> dict[str, Any] | None:
    """Change of a resource over one instance's life after its warm-up: median of the last tenth minus the first's.

    Medians of a tenth of the samples each keep one sample's spike (a GC pause, a burst of sockets)
    from counting as growth. None when fewer than two samples follow the warm-up.
    """
    after = [(t, v) for t, v in samples if t >= warmup_s]
    if len(after) < 2:
        return None
    k = max(1, len(after) // 10)
    start = statistics.median(v for _, v in after[:k])
    end = statistics.median(v for _, v in after[-k:])
    return {"from_s": after[0][0], "to_s": after[-1][0], "start": start, "end": end, "delta": end - start}


def instance_growth(segments: list[dict[str, Any]], procs: list[str], warmup_s: float) -> list[dict[str, Any]]:
    """RSS and fd growth per instance (a resumed soak has one instance per harness process)."""
    by_instance: dict[str, list[tuple[float, dict[str, float | None]]]] = {}
    for meta, text in zip(segments, procs, strict=True):
        for row in parse_proc(text):
            if row["rss_kb"] is None or row["fds"] is None or row["t"] is None:
                continue
            by_instance.setdefault(meta["instance"], []).append((float(meta["started_at"]) + row["t"], row))
    out = []
    for name, rows in by_instance.items():
        first = rows[0][0]
        entry: dict[str, Any] = {"instance": name, "span_s": round(rows[-1][0] - first, 3)}
        for key in RESOURCE_KEYS:
            seen = [(at - first, float(value)) for at, r in rows if (value := r.get(key)) is not None]
            entry[key] = growth(seen, warmup_s)
        out.append(entry)
    return out


def _judge_healing(hours: list[dict[str, Any]], policy: Any) -> tuple[Status, list[str], list[Measurement]]:
    """The healing loop's status: every fault that took effect healed, enough of them, most took effect."""
    found: list[Measurement] = []
    reasons: list[str] = []
    watched = [o for h in hours for o in h["heals"] if not o["cut_short"]]
    idle = [o for o in watched if o.get("no_effect")]
    heals = [o for o in watched if not o.get("no_effect")]
    unhealed = [o for o in heals if not o["healed"]]
    found.append(Measurement.judged("soak faults that took effect", len(heals), ">=", policy.min_faults))
    found.append(Measurement(name="soak incidents healed", value=sum(1 for o in heals if o["healed"])))
    found.append(Measurement(name="soak faults without effect", value=len(idle)))
    if idle:
        reasons.append(
            f"healing: {len(idle)} of {len(watched)} fault(s) had no effect (the harness's probes stayed healthy and "
            f"no incident was opened; neither healed nor failed): {', '.join(o['playbook'] for o in idle[:5])}"
        )
    if unhealed:
        heal_status = Status.FAIL
        reasons += [
            f"healing: {o['playbook']} injected at {o['inject_at']:.0f} not healed: {o['why']}" for o in unhealed[:5]
        ]
    elif len(heals) < policy.min_faults:
        heal_status = Status.INCONCLUSIVE
        reasons.append(
            f"healing: {len(heals)} fault(s) took effect and were watched to the end, fewer than {policy.min_faults}"
        )
    elif len(idle) * 2 > len(watched):
        heal_status = Status.INCONCLUSIVE
        reasons.append(
            f"healing: most faults had no effect ({len(idle)} of {len(watched)}): the loop was not exercised"
        )
    else:
        heal_status = Status.PASS
        reasons.append(f"healing: all {len(heals)} fault(s) that took effect healed")
    return heal_status, reasons, found


def judge_figures(
    hours: list[dict[str, Any]], instances: list[dict[str, Any]], policy: Any, p99_ms: float
) -> tuple[dict[str, Status], list[str], list[Measurement]]:
    """The soak's figure checks (load, resources, healing) over the whole soak: statuses, reasons, measurements."""
    reasons: list[str] = []
    found: list[Measurement] = []
    judged = [h if policy.judge_fault_windows else h["outside_faults"] for h in hours]
    scope = "every request" if policy.judge_fault_windows else "requests outside fault windows"
    requests = sum(h["requests"] for h in judged)
    errors = sum(h["errors"] for h in judged)
    during = [h["during_faults"] for h in hours]
    during_requests = sum(h["requests"] for h in during)
    during_errors = sum(h["errors"] for h in during)
    rate_status, _low, high = judge_rate(errors, requests, policy.max_error_rate, policy.confidence)
    found.append(
        Measurement.judged(
            f"soak request error rate ({scope})", round(errors / max(1, requests), 6), "<=", policy.max_error_rate
        )
    )
    found.append(Measurement(name="soak request error rate upper Wilson bound", value=round(high, 6)))
    found.append(
        Measurement(
            name="soak request error rate during fault windows", value=round(during_errors / max(1, during_requests), 6)
        )
    )
    hourly = [judge_quantile(h["p99_ms"], h["p99_upper_ms"], p99_ms) for h in judged]
    worst_p99 = max((h["p99_ms"] for h in judged if h["p99_ms"] is not None), default=None)
    if worst_p99 is not None:
        found.append(Measurement.judged("soak worst hourly p99 HTTP latency", worst_p99, "<=", p99_ms, "ms"))
    load_status = worst([rate_status, *hourly])
    reasons.append(
        f"load ({scope}): {errors} of {requests} requests failed ({errors / max(1, requests):.3%}, upper bound "
        f"{high:.3%} vs {policy.max_error_rate:.1%}); worst hourly p99 {worst_p99} ms vs {p99_ms:g} ms"
        + ("; too few requests to bound the error rate" if rate_status is Status.INCONCLUSIVE else "")
        + ("; an hour's p99 upper bound is not within the limit" if Status.INCONCLUSIVE in hourly else "")
        + f"; during fault windows {during_errors} of {during_requests} failed (reported, not judged)"
    )
    resource_statuses: list[Status] = []
    for inst in instances:
        span_h = max(1.0, inst["span_s"] / 3600)
        for key, label, limit, scale, unit in (
            ("rss_kb", "RSS", policy.max_rss_growth_mib_per_h, KIB_PER_MIB, "MiB"),
            ("fds", "open fds", policy.max_fd_growth_per_h, 1, ""),
            ("group_rss_kb", "process group RSS", policy.max_group_rss_growth_mib_per_h, KIB_PER_MIB, "MiB"),
            ("group_fds", "process group open fds", policy.max_group_fd_growth_per_h, 1, ""),
        ):
            seen = inst.get(key)
            if seen is None:
                resource_statuses.append(Status.INCONCLUSIVE)
                reasons.append(f"{inst['instance']}: too few {label} samples after the warm-up")
                continue
            delta = round(seen["delta"] / scale, 3)
            allowed = round(limit * span_h, 3)
            found.append(Measurement.judged(f"soak {label} growth ({inst['instance']})", delta, "<=", allowed, unit))
            resource_statuses.append(Status.PASS if delta <= allowed else Status.FAIL)
            if delta > allowed:
                reasons.append(
                    f"{inst['instance']}: {label} grew {delta:g}{unit} over {inst['span_s'] / 3600:.2f} h "
                    f"(allowed {limit:g}{unit}/h, at least one hour's worth: {allowed:g}{unit})"
                )
    heal_status, heal_reasons, heal_found = _judge_healing(hours, policy)
    reasons += heal_reasons
    found += heal_found
    return {"load": load_status, "resources": worst(resource_statuses), "healing": heal_status}, reasons, found


def duration_judgement(soaked_s: float, requested_h: float, policy: Any, stopped: bool) -> dict[str, Any]:
    """Whether the soak was the soak: P4 needs `hours`, H15 `loop_hours`; shorter or stopped is abbreviated (R5)."""
    soaked_h = soaked_s / 3600
    notes = []
    if stopped:
        notes.append(f"stopped early: {soaked_h:.2f} h of the {requested_h:g} h requested")
    p4_full = soaked_h >= policy.hours and not stopped
    loop_full = soaked_h >= policy.loop_hours and not stopped
    if not p4_full:
        notes.append(f"abbreviated (R5): {soaked_h:.2f} h soaked of the {policy.hours:g} h the P4 soak requires")
    if not loop_full:
        notes.append(
            f"the self-healing loop ran {soaked_h:.2f} h of the {policy.loop_hours:g} h H15 requires; "
            "an abbreviated soak is not the soak"
        )
    return {
        "soaked_h": round(soaked_h, 4),
        "requested_h": requested_h,
        "abbreviated": not (p4_full and loop_full),
        "p4": Status.PASS.value if p4_full else Status.INCONCLUSIVE.value,
        "h15": Status.PASS.value if loop_full else Status.INCONCLUSIVE.value,
        "notes": notes,
    }
