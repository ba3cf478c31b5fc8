"""Pure analysis of one repetition's stored probe samples and ledger: detection, recovery, loss, duplicates.

Used by the runner (to stop observing once recovered), by the report and the timeline, and by the
gate's `evaluate`, which recomputes everything from the stored record; nothing here does I/O.

Definitions (times in seconds on the repetition's clock):
- a probe is healthy when readiness answered 2xx and its fresh task completed within `healthy_latency_s`;
- an unhealthy probe covers its whole time in flight, from its start (`t_s`) to its return (`end_s`): the
  final healthy streak after injection is made of probes started after every unhealthy probe (one started
  before injection included) had returned, so a probe stuck on a hanging target breaks any streak it
  overlaps, not just the probes started after its own start. While the runner observes, a probe in flight
  longer than `healthy_latency_s` is already unhealthy (it cannot be healthy any more) and covers up to now;
- recovered_at is the completion moment of the first probe of that final healthy streak, provided the
  streak lasts at least `stable_s`; with no unhealthy probe at all it is the injection time;
- samples recorded before `end_s` was (old packs) cover only their start, as they were judged then, so
  `certify verify` reproduces those verdicts;
- detect_s: injection to the first probe whose readiness was not 2xx (the target noticing the fault);
- impact_s: injection to the first unhealthy probe (the harness seeing the fault's effect).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from chaos.capacity import analyse_capacity
from chaos.client import counter_sum
from chaos.ledger import reconcile_counts
from chaos.probe import healthy


def _covered_until(samples: list[dict[str, Any]], completed: set[str], healthy_latency_s: float) -> float | None:
    """The latest return of an unhealthy probe that recorded one (`end_s`); None when there is none."""
    ends = [s["end_s"] for s in samples if s.get("end_s") is not None and not healthy(s, completed, healthy_latency_s)]
    return max(ends, default=None)


def recovery(
    samples: list[dict[str, Any]],
    injected_at_s: float,
    removed_at_s: float,
    *,
    completed: set[str],
    healthy_latency_s: float,
    stable_s: float,
    in_flight_since_s: Sequence[float] = (),
    now_s: float | None = None,
) -> dict[str, Any]:
    """Detection, impact and recovery times from the probe samples.

    `in_flight_since_s` (with `now_s`) are the starts of probes not finished yet, known only to the
    runner while it observes; the stored record has none, every probe having returned.
    """
    after = sorted((s for s in samples if s["t_s"] >= injected_at_s), key=lambda s: s["t_s"])
    flags = [healthy(s, completed, healthy_latency_s) for s in after]
    impact = next((s["t_s"] for s, ok in zip(after, flags, strict=True) if not ok), None)
    detect = next((s["t_s"] for s in after if s["ready"] is None or not 200 <= s["ready"] < 300), None)
    out: dict[str, Any] = {
        "probes_after_injection": len(after),
        "unhealthy_probes": flags.count(False),
        "impact_s": None if impact is None else round(impact - injected_at_s, 3),
        "detect_s": None if detect is None else round(detect - injected_at_s, 3),
        "recovered_at_s": None,
        "recovery_from_start_s": None,
        "recovery_from_removal_s": None,
        "streak_s": 0.0,
    }
    if not after:
        return out
    start = len(flags)
    while start > 0 and flags[start - 1]:
        start -= 1
    covered = _covered_until(samples, completed, healthy_latency_s)
    if covered is not None and covered < injected_at_s:
        covered = None  # an unhealthy probe that returned before the fault says nothing about it
    if now_s is not None and any(now_s - t > healthy_latency_s for t in in_flight_since_s):
        covered = now_s  # overdue: unhealthy whatever it returns, from its start until at least now
    while covered is not None and start < len(after) and after[start]["t_s"] <= covered:
        start += 1
    if start == len(flags):
        return out
    streak_s = after[-1]["t_s"] - after[start]["t_s"]
    out["streak_s"] = round(streak_s, 3)
    if streak_s < stable_s:
        return out
    untouched = start == 0 and covered is None  # no probe was unhealthy after the injection
    recovered_at = injected_at_s if untouched else max(after[start]["done_s"], injected_at_s)
    out["recovered_at_s"] = round(recovered_at, 3)
    out["recovery_from_start_s"] = round(recovered_at - injected_at_s, 3)
    out["recovery_from_removal_s"] = round(max(0.0, recovered_at - removed_at_s), 3)
    return out


def failed_requests(attempts: list[dict[str, Any]], begin_s: float, end_s: float | None) -> dict[str, int]:
    """Work submissions started between fault injection and recovery (or the end) and how many failed."""
    window = [a for a in attempts if a["t_s"] >= begin_s and (end_s is None or a["t_s"] <= end_s)]
    failed = [a for a in window if a["id"] is None]
    return {"submitted": len(window), "failed": len(failed)}


def accepted_ids(record: dict[str, Any]) -> list[str]:
    """Every id the target accepted during the repetition: steady-state probes, work stream, recovery probes."""
    ids = [s["id"] for s in record["steady_before"]["samples"] if s["id"]]
    ids += [a["id"] for a in record["work"] if a["id"]]
    ids += [s["id"] for s in record["samples"] if s["id"]]
    ids += [s["id"] for s in record["steady_after"]["samples"] if s["id"]]
    for burst in ((record.get("capacity") or {}).get(when) for when in ("before", "after", "after_confirm")):
        ids += list(burst["ids"]) if burst else []
    return ids


def unacknowledged(record: dict[str, Any], accepted: int) -> int:
    """Submissions the target's counter recorded beyond the ids the client saw accepted (a lost 201 answer)."""
    metric = record["reconciliation"]["metric"]
    name = metric.get("submitted_name") or ""
    before = counter_sum(metric.get("submitted_before_lines") or [], name) if name else None
    after = counter_sum(metric.get("submitted_after_lines") or [], name) if name else None
    if before is None or after is None:
        return 0
    return max(0, round(after - before) - accepted)


def duplicates_by_metric(record: dict[str, Any], completed_now: int, unseen: int = 0) -> int | None:
    """Completions the target's counter recorded beyond the distinct ids that completed; None if not observable.

    The counter is read when nothing of this repetition is in flight (before its first submission and
    after the drain); `completed_now` counts this repetition's completed ids plus ids carried over from
    an earlier repetition that completed in between (`extra_completed`). `unseen` tasks were accepted by
    the target without the client seeing the answer; their completions are not duplicates.
    """
    metric = record["reconciliation"]["metric"]
    if not metric["name"]:
        return None
    before = counter_sum(metric["before_lines"], metric["name"])
    after = counter_sum(metric["after_lines"], metric["name"])
    if before is None or after is None:
        return None
    return max(0, round(after - before) - completed_now - unseen)


def analyse(record: dict[str, Any], healthy_latency_s: float, stable_s: float) -> dict[str, Any]:
    """Everything judged about one repetition, recomputed from its stored record (capacity included, #25)."""
    tasks = record["tasks"]
    completed = set(tasks["completed"])
    fault = record["fault"]
    rec = recovery(
        record["samples"],
        fault["injected_at_s"],
        fault["removed_at_s"],
        completed=completed,
        healthy_latency_s=healthy_latency_s,
        stable_s=stable_s,
    )
    counts = reconcile_counts(accepted_ids(record), record["reconciliation"]["finals"], tasks)
    unseen = unacknowledged(record, counts["accepted"])
    by_metric = duplicates_by_metric(
        record, len(counts["completed"]) + record["reconciliation"]["metric"]["extra_completed"], unseen
    )
    by_field = counts["duplicated_by_field"] if tasks.get("completions_field") else None
    observed = [value for value in (by_field, by_metric) if value is not None]
    capacity = analyse_capacity(record, stable_s)
    times = [t for t in (rec["recovery_from_removal_s"], capacity["restore_from_removal_s"]) if t is not None]
    return {
        **rec,
        "moment_s": record.get("moment_s"),
        "capacity": capacity,
        # Recovered = health back AND every role's count back: the later of the two (None if either never was).
        "recovery_s": max(times)
        if rec["recovery_from_removal_s"] is not None
        and (capacity["restored_at_s"] is not None or not capacity["roles_declared"])
        else None,
        "requests": failed_requests(record["work"], fault["injected_at_s"], rec["recovered_at_s"]),
        "accepted": counts["accepted"],
        "completed": len(counts["completed"]),
        "lost": len(counts["lost"]) + len(counts["unreadable"]),
        "not_completed": len(counts["failed"]) + len(counts["unfinished"]),
        "duplicated": max(observed) if observed else None,
        "duplicated_by_field": by_field,
        "duplicated_by_metric": by_metric,
        "unacknowledged": unseen,
        "lost_ids": (counts["lost"] + counts["unreadable"])[:20],
        "not_completed_ids": (counts["failed"] + counts["unfinished"])[:20],
        "duplicated_ids": counts["duplicated_ids"][:20],
    }


def percentile(values: list[float], q: float) -> float:
    """Pure: the nearest-rank q-th percentile (0 < q <= 100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def distribution(values: list[float]) -> dict[str, float | None]:
    """Max, p95, median (p50) and min of a list of times (None when empty); p95 by nearest rank."""
    if not values:
        return {"max": None, "p95": None, "median": None, "min": None}
    return {
        "max": max(values),
        "p95": percentile(values, 95),
        "median": round(statistics.median(values), 3),
        "min": min(values),
    }
