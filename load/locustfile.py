"""Locust file for gates G2/G3: an open-model driver that starts every request at its planned time.

Runs only inside a Locust process (`python -m locust -f load/locustfile.py`), never imported by the
harness: importing Locust monkey-patches gevent into the importing process. It reads its plan from
the JSON file named by $CERTIFY_LOAD_PLAN and writes one raw CSV per worker into the plan's out_dir:

    kind,seq,request,planned_s,sent_s,end_s,status,ok,error,end_by

kind is arrival (the planned request), poll, follow (page-session GETs), task (submit -> terminal),
drop (the generator had no free slot: load not delivered) or unfinished (still in flight at the
end). Times are seconds from the driver's start on a monotonic clock; latency corrected for
coordinated omission is end_s - planned_s, the uncorrected one end_s - sent_s. For HTTP rows end_s
is when the answer's last bytes reached the driver's socket (end_by "socket": the kernel's receive
stamp, so the driver's own wake-up and parsing are not charged to the target) or, where the kernel
gives no stamp, when the driver had read them (end_by "driver"); see load/stamped_http.py.

HTTP goes through load/stamped_http.py (geventhttpclient, as Locust's FastHttpUser uses); every
request is also reported to Locust's own statistics through its request event.

A remote worker ([gates.G2.remote]: `locust -f load/locustfile.py --worker --master-host H
--master-port P` on another host, without $CERTIFY_LOAD_PLAN) asks the master for the plan, drives
the target at the plan's remote_base_url, and sends its raw rows and summary to the master, which
writes them into out_dir as a local worker would (Locust's own custom messages over its ZeroMQ link).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.pool
from locust import User, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

# Sibling modules: Locust puts this file's directory on sys.path while it loads it.
from stamped_http import StampedClient
from stats import RAW_FIELDS

PLAN_PATH = os.environ.get("CERTIFY_LOAD_PLAN")
PLAN: dict[str, Any] = json.loads(Path(PLAN_PATH).read_text(encoding="utf-8")) if PLAN_PATH else {}
REMOTE = PLAN_PATH is None
"""A worker started by hand on another host: its plan and its rows travel through the master."""
DONE_MESSAGE = "certify_driver_done"
PLAN_REQUEST, PLAN_MESSAGE = "certify_plan_request", "certify_plan"
ROWS_MESSAGE, SUMMARY_MESSAGE = "certify_rows", "certify_summary"
PLAN_WAIT_S = 60.0
FLUSH_S = 2.0
SPIN_S = 0.0015
"""Last stretch before a planned arrival spent yielding instead of sleeping (in the arrival's own greenlet)."""
SPIN_FROM_S = 0.005
"""Spin only when the next arrival is at least this far away (rates below ~200/s per driver)."""
_done_workers: set[int] = set()
_plan_ready = gevent.event.Event()


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


def _on_plan_request(environment: Any, msg: Any, **kwargs: Any) -> None:
    """Master: send a remote worker the plan, pointed at the target's remote URL, with no local out_dir."""
    del kwargs
    plan = {**PLAN, "base_url": PLAN["remote_base_url"], "out_dir": None}
    environment.runner.send_message(PLAN_MESSAGE, plan, client_id=msg.node_id)


def _on_plan(environment: Any, msg: Any, **kwargs: Any) -> None:
    """Remote worker: keep the plan the master sent."""
    del environment, kwargs
    PLAN.update(msg.data)
    _plan_ready.set()


def _on_rows(environment: Any, msg: Any, **kwargs: Any) -> None:
    """Master: append a remote worker's raw rows to its raw file in out_dir."""
    del environment, kwargs
    path = Path(PLAN["out_dir"]) / f"raw-w{int(msg.data['worker'])}.csv"
    new = not path.exists()
    with path.open("a", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(RAW_FIELDS)
        writer.writerows(msg.data["rows"])


def _on_summary(environment: Any, msg: Any, **kwargs: Any) -> None:
    """Master: write a remote worker's driver summary into out_dir."""
    del environment, kwargs
    path = Path(PLAN["out_dir"]) / f"driver-w{int(msg.data['worker'])}.json"
    path.write_text(json.dumps(msg.data, indent=2) + "\n", encoding="utf-8")


@events.init.add_listener
def _register(environment: Any, **kwargs: Any) -> None:
    """Master: listen for drivers finishing and serve remote workers; remote worker: listen for the plan."""
    del kwargs
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(DONE_MESSAGE, _on_driver_done)
        runner.register_message(PLAN_REQUEST, _on_plan_request)
        runner.register_message(ROWS_MESSAGE, _on_rows)
        runner.register_message(SUMMARY_MESSAGE, _on_summary)
    elif isinstance(runner, WorkerRunner) and REMOTE:
        runner.register_message(PLAN_MESSAGE, _on_plan)


class OpenModelDriver(User):
    """One driver per worker; it spawns one greenlet per planned arrival, bounded by max_in_flight."""

    def on_start(self) -> None:
        """Get the plan (a remote worker asks the master), open this worker's raw file and its HTTP client."""
        runner = self.environment.runner
        if REMOTE and not _plan_ready.is_set():
            runner.send_message(PLAN_REQUEST, {"host": socket.gethostname()})
            if not _plan_ready.wait(PLAN_WAIT_S):
                msg = f"no plan from the Locust master within {PLAN_WAIT_S:g} s"
                raise RuntimeError(msg)
        self.http = StampedClient(
            PLAN["base_url"], concurrency=int(PLAN["max_in_flight"]), timeout_s=float(PLAN["http_timeout_s"])
        )
        self.rows: list[tuple[Any, ...]] = []
        self.in_flight: dict[int, tuple[float, float, str]] = {}
        self.max_lag = 0.0
        self.worker = max(0, int(getattr(runner, "worker_index", 0)))
        if not REMOTE:
            out_dir = Path(PLAN["out_dir"])
            self.raw_path = out_dir / f"raw-w{self.worker}.csv"
            self.summary_path = out_dir / f"driver-w{self.worker}.json"
            with self.raw_path.open("w", encoding="utf-8", newline="") as handle:
                csv.writer(handle).writerow(RAW_FIELDS)

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
        end_by: str = "driver",
    ) -> None:
        """Record one raw row."""
        end_text, end_by = ("", "") if end is None else (f"{end:.6f}", end_by)
        row = (kind, seq, request, f"{planned:.6f}", f"{sent:.6f}", end_text, status, int(ok), error[:200], end_by)
        self.rows.append(row)

    def _flush(self) -> None:
        """Append buffered rows to the raw file (a remote worker: send them to the master, which appends them)."""
        rows, self.rows = self.rows, []
        if rows and REMOTE:
            self.environment.runner.send_message(ROWS_MESSAGE, {"worker": self.worker, "rows": rows})
        elif rows:
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
    ) -> tuple[bool, bytes]:
        """One HTTP request, recorded here and in Locust's statistics; returns (ok, answer body)."""
        sent_perf = time.perf_counter()
        result = self.http.exchange(method, path, body, sent_perf)
        sent, end = sent_perf - self.t0, result.end - self.t0
        if kind == "arrival":
            self.max_lag = max(self.max_lag, sent - planned)
        error = result.error or ("" if result.status in expect else f"HTTP {result.status}")
        row_planned = planned if kind == "arrival" else sent
        self._row(kind, seq, request, row_planned, sent, end, str(result.status), not error, error, result.end_by)
        self.environment.events.request.fire(
            request_type=method,
            name=f"{request}:{kind}",
            response_time=(end - sent) * 1000,
            response_length=len(result.body),
            exception=RuntimeError(error) if error else None,
            context={},
        )
        return not error, result.body

    def _arrival(self, seq: int, planned: float, name: str) -> None:
        """Run one planned arrival: the request, then its polls or page follow-ups."""
        spec = PLAN["requests"][name]
        body = _fill(spec.get("json_body"), seq)
        expect = tuple(spec["expect_status"])
        while self._now() < planned:
            # woken up to SPIN_S early: yield (the event loop keeps serving answers) until the planned time
            gevent.sleep(0)
        sent = self._now()
        self.in_flight[seq] = (planned, sent, name)
        try:
            ok, resp = self._send("arrival", seq, name, planned, spec["method"], spec["path"], expect, body)
            for path in spec.get("follow") or ():
                if not ok:
                    break
                ok, _ = self._send("follow", seq, name, planned, "GET", path, (200,))
            if spec.get("poll"):
                self._poll(seq, name, (planned, sent), spec["poll"], resp if ok else None)
        finally:
            self.in_flight.pop(seq, None)

    def _poll(self, seq: int, name: str, times: tuple[float, float], poll: dict[str, Any], resp: bytes | None) -> None:
        """Poll the task until a terminal status or the timeout; record the task's outcome."""
        planned, sent = times
        if resp is None:
            self._row("task", seq, name, planned, sent, self._now(), "submit-failed", False, "submit failed")
            return
        try:
            task_id = str(json.loads(resp)[poll["id_field"]])
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
                status = str(json.loads(poll_resp)[poll["status_field"]])
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
        for seq, planned, name in mine:
            delay = planned - self._now()
            if delay > SPIN_FROM_S:
                # gevent's event loop waits in whole milliseconds, so a plain sleep wakes up to
                # ~1 ms late and that lateness would be charged to the target: wake SPIN_S early
                # and let the arrival's greenlet yield until its planned time (only when arrivals
                # are sparse, to bound the CPU).
                gevent.sleep(delay - SPIN_S)
            elif delay > 0:
                gevent.sleep(delay)
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
        self.http.close()
        self._flush()
        summary = {
            "worker": self.worker,
            "workers": workers,
            "planned": len(mine),
            "started_unix": started_unix,
            "plan_end_s": round(plan_end, 6),
            "end_s": round(self._now(), 6),
            "drained": bool(drained),
            "max_send_lag_s": round(self.max_lag, 6),
            "remote": REMOTE,
            "host": socket.gethostname(),
        }
        runner = self.environment.runner
        if REMOTE:
            runner.send_message(SUMMARY_MESSAGE, summary)
        else:
            self.summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if isinstance(runner, WorkerRunner):
            runner.send_message(DONE_MESSAGE, {"worker": self.worker})
        else:
            gevent.spawn_later(0.2, runner.quit)
        raise StopUser
