"""Locust file for gates G2/G3: an open-model driver that starts every request at its planned time.

Runs only inside a Locust process (`python -m locust -f load/locustfile.py`), never imported by the
harness: importing Locust monkey-patches gevent into the importing process. It reads its plan from
the JSON file named by $CERTIFY_LOAD_PLAN and writes one raw CSV per worker into the plan's out_dir:

    kind,seq,request,planned_s,sent_s,end_s,status,ok,error

kind is arrival (the planned request), poll, follow (page-session GETs), task (submit -> terminal),
drop (the generator had no free slot: load not delivered) or unfinished (still in flight at the
end). Times are seconds from the driver's start on a monotonic clock; latency corrected for
coordinated omission is end_s - planned_s, the uncorrected one end_s - sent_s.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.pool
from locust import FastHttpUser, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

PLAN: dict[str, Any] = json.loads(Path(os.environ["CERTIFY_LOAD_PLAN"]).read_text(encoding="utf-8"))
FIELDS = ("kind", "seq", "request", "planned_s", "sent_s", "end_s", "status", "ok", "error")
DONE_MESSAGE = "certify_driver_done"
FLUSH_S = 2.0
SPIN_S = 0.0015
"""Last stretch before a planned arrival spent yielding instead of sleeping."""
SPIN_FROM_S = 0.005
"""Spin only when the next arrival is at least this far away (rates below ~200/s per driver)."""
_done_workers: set[int] = set()


def _fill(value: Any, seq: int) -> Any:
    """Fill {seq} and {profile} in the string values of a body template."""
    if isinstance(value, str):
        return value.replace("{seq}", str(seq)).replace("{profile}", str(PLAN["profile"]))
    if isinstance(value, dict):
        return {key: _fill(item, seq) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, seq) for item in value]
    return value


def _on_driver_done(environment: Any, msg: Any, **kwargs: Any) -> None:
    """Master: quit once every worker's driver has finished its plan."""
    del kwargs
    _done_workers.add(int(msg.data["worker"]))
    if len(_done_workers) >= int(PLAN["workers"]):
        gevent.spawn_later(0.2, environment.runner.quit)


@events.init.add_listener
def _register(environment: Any, **kwargs: Any) -> None:
    """Listen for drivers finishing (distributed mode only)."""
    del kwargs
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(DONE_MESSAGE, _on_driver_done)


class OpenModelDriver(FastHttpUser):
    """One driver per worker; it spawns one greenlet per planned arrival, bounded by max_in_flight."""

    host = PLAN["base_url"]
    concurrency = int(PLAN["max_in_flight"])
    network_timeout = float(PLAN["http_timeout_s"])
    connection_timeout = float(PLAN["http_timeout_s"])
    insecure = False

    def on_start(self) -> None:
        """Open this worker's raw file."""
        self.rows: list[tuple[Any, ...]] = []
        self.in_flight: dict[int, tuple[float, float, str]] = {}
        self.worker = max(0, int(getattr(self.environment.runner, "worker_index", 0)))
        out_dir = Path(PLAN["out_dir"])
        self.raw_path = out_dir / f"raw-w{self.worker}.csv"
        self.summary_path = out_dir / f"driver-w{self.worker}.json"
        with self.raw_path.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerow(FIELDS)

    def _now(self) -> float:
        """Seconds since the driver started."""
        return time.perf_counter() - self.t0

    def _row(  # noqa: PLR0917 - one positional per raw CSV column
        self,
        kind: str,
        seq: int,
        request: str,
        planned: float,
        sent: float,
        end: float | None,
        status: str,
        ok: bool,
        error: str = "",
    ) -> None:
        """Record one raw row."""
        end_text = "" if end is None else f"{end:.6f}"
        self.rows.append((kind, seq, request, f"{planned:.6f}", f"{sent:.6f}", end_text, status, int(ok), error[:200]))

    def _flush(self) -> None:
        """Append buffered rows to the raw file."""
        rows, self.rows = self.rows, []
        if rows:
            with self.raw_path.open("a", encoding="utf-8", newline="") as handle:
                csv.writer(handle).writerows(rows)

    def _flusher(self) -> None:
        """Flush rows every few seconds, so a crash loses little."""
        while True:
            gevent.sleep(FLUSH_S)
            self._flush()

    def _send(  # noqa: PLR0917 - mirrors client.request plus the row's identity
        self,
        kind: str,
        seq: int,
        request: str,
        planned: float,
        method: str,
        path: str,
        expect: tuple[int, ...],
        body: Any = None,
    ) -> tuple[bool, Any]:
        """One HTTP request, recorded; returns (ok, response)."""
        sent = self._now()
        with self.client.request(method, path, name=f"{request}:{kind}", json=body, catch_response=True) as resp:
            end = self._now()
            status = int(resp.status_code or 0)
            error = "" if status in expect else (repr(resp.error) if resp.error else f"HTTP {status}")
            if error:
                resp.failure(error)
            else:
                resp.success()
        self._row(kind, seq, request, planned if kind == "arrival" else sent, sent, end, str(status), not error, error)
        return not error, resp

    def _arrival(self, seq: int, planned: float, name: str) -> None:
        """Run one planned arrival: the request, then its polls or page follow-ups."""
        spec = PLAN["requests"][name]
        sent = self._now()
        self.in_flight[seq] = (planned, sent, name)
        try:
            body = _fill(spec.get("json_body"), seq)
            expect = tuple(spec["expect_status"])
            ok, resp = self._send("arrival", seq, name, planned, spec["method"], spec["path"], expect, body)
            for path in spec.get("follow") or ():
                if not ok:
                    break
                ok, _ = self._send("follow", seq, name, planned, "GET", path, (200,))
            if spec.get("poll"):
                self._poll(seq, name, (planned, sent), spec["poll"], resp if ok else None)
        finally:
            self.in_flight.pop(seq, None)

    def _poll(self, seq: int, name: str, times: tuple[float, float], poll: dict[str, Any], resp: Any) -> None:
        """Poll the task until a terminal status or the timeout; record the task's outcome."""
        planned, sent = times
        if resp is None:
            self._row("task", seq, name, planned, sent, self._now(), "submit-failed", False, "submit failed")
            return
        try:
            task_id = str(json.loads(resp.text)[poll["id_field"]])
        except (ValueError, KeyError, TypeError) as exc:
            self._row("task", seq, name, planned, sent, self._now(), "no-id", False, f"no task id: {exc!r}")
            return
        path = poll["path"].replace("{id}", task_id)
        deadline = self._now() + float(poll["timeout_s"])
        while self._now() < deadline:
            gevent.sleep(float(poll["interval_s"]))
            ok, poll_resp = self._send("poll", seq, name, planned, "GET", path, (200,))
            if not ok:
                continue
            try:
                status = str(json.loads(poll_resp.text)[poll["status_field"]])
            except (ValueError, KeyError, TypeError):
                continue
            if status in poll["done_values"] or status in poll["failed_values"]:
                error = "" if status in poll["done_values"] else f"task ended {status}"
                self._row("task", seq, name, planned, sent, self._now(), status, not error, error)
                return
        self._row("task", seq, name, planned, sent, self._now(), "timeout", False, "task not terminal in time")

    @task
    def drive(self) -> None:
        """Start each of this worker's arrivals at its planned time; then drain, write, report done and stop."""
        workers = max(1, int(PLAN["workers"]))
        mine = [
            (seq, float(t), str(name)) for seq, (t, name) in enumerate(PLAN["arrivals"]) if seq % workers == self.worker
        ]
        pool = gevent.pool.Pool(int(PLAN["max_in_flight"]))
        self.t0 = time.perf_counter()
        started_unix = time.time()
        flusher = gevent.spawn(self._flusher)
        max_lag = 0.0
        for seq, planned, name in mine:
            delay = planned - self._now()
            if delay > SPIN_FROM_S:
                # gevent's event loop waits in whole milliseconds, so a plain sleep wakes up to
                # ~1 ms late and that lateness would be charged to the target: wake early and
                # yield until the planned time (only when arrivals are sparse, to bound the CPU).
                gevent.sleep(delay - SPIN_S)
                while self._now() < planned:
                    gevent.sleep(0)
            elif delay > 0:
                gevent.sleep(delay)
            max_lag = max(max_lag, self._now() - planned)
            if pool.full():
                self._row("drop", seq, name, planned, self._now(), None, "", False, "no free generator slot")
                continue
            pool.spawn(self._arrival, seq, planned, name)
        plan_end = self._now()
        # Hold the profile for its whole duration (a spike's quiet tail included), then drain.
        gevent.sleep(max(0.0, float(PLAN["duration_s"]) - plan_end))
        drained = pool.join(timeout=float(PLAN["drain_s"]))
        for seq, (planned, sent, name) in sorted(self.in_flight.items()):
            self._row("unfinished", seq, name, planned, sent, self._now(), "", False, "still in flight at the end")
        pool.kill(block=True, timeout=5)
        flusher.kill()
        self._flush()
        summary = {
            "worker": self.worker,
            "workers": workers,
            "planned": len(mine),
            "started_unix": started_unix,
            "plan_end_s": round(plan_end, 6),
            "end_s": round(self._now(), 6),
            "drained": bool(drained),
            "max_send_lag_s": round(max_lag, 6),
        }
        self.summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.send_message(DONE_MESSAGE, {"worker": self.worker})
        else:
            gevent.spawn_later(0.2, runner.quit)
        raise StopUser
