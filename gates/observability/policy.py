"""G6's thresholds table `[gates.G6]`: required metrics, cross-checks, traffic, the fault, logs, rules, dashboards."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.gate import Policy


class _Table(BaseModel):
    """A frozen sub-table; unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class CrossCheck(_Table):
    """One target counter (delta over the load window) against what the load generator counted."""

    name: str = Field(description="Row title in the cross-check table.")
    metric: str = Field(description="Sample name as exposed, e.g. app_requests_total or app_latency_seconds_count.")
    labels: dict[str, str] = Field(default_factory=dict, description="Label -> regex (full match); samples summed.")
    rows: Literal["http", "tasks"] = Field(
        "http", description="http: requests the generator sent; tasks: polled tasks."
    )
    kinds: tuple[str, ...] = Field(("arrival", "poll", "follow"), description="http rows: arrival, poll, follow.")
    requests: tuple[str, ...] = Field((), description="Request names ([gates.G2.requests]) counted; empty: all.")
    status: str = Field("", description="Regex (full match) on the HTTP status the generator saw; empty: any.")
    ok: bool | None = Field(None, description="Only successful (true) or failed (false) rows; unset: both.")
    may_be_zero: bool = Field(False, description="A zero generator count is a valid comparison (e.g. 5xx errors).")


class LatencyCheck(_Table):
    """The target's latency histogram p99 bucket against the generator's measured p99."""

    name: str
    histogram: str = Field(description="Histogram family name, e.g. app_http_request_duration_seconds.")
    labels: dict[str, str] = Field(default_factory=dict, description="Label -> regex (full match), le excluded.")
    kinds: tuple[str, ...] = ("arrival",)
    requests: tuple[str, ...] = ()
    quantile: float = Field(0.99, gt=0, lt=1)
    client_overhead_ms: float = Field(
        50.0,
        ge=0,
        description="Time the generator may see above the histogram's bucket (loopback, queueing, a busy host).",
    )


class HttpAction(_Table):
    """An HTTP request sent to start or end a fault; url may use {base_url}, {data_dir}, {<dep>_url}."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    json_body: dict[str, Any] | None = None


class KillAction(_Table):
    """Signals sent during the fault to processes named by pid files under the instance's data dir."""

    pid_file: str = Field(description="Glob relative to the data dir, e.g. pids/worker-*.pid (round-robin).")
    signal: Literal["SIGKILL", "SIGTERM", "SIGSEGV", "SIGABRT"] = "SIGKILL"
    times: int = Field(1, ge=1, le=100)
    interval_s: float = Field(2.0, gt=0)


class PauseAction(_Table):
    """A declared dependency frozen for the fault window: every process of it SIGSTOPped, SIGCONT at the end."""

    dependency: str = Field(description="Name of a [service.dependencies] entry, e.g. db (the database hangs).")


class FaultSpec(_Table):
    """The fault window: actions, its traffic and the alerts that must fire during it."""

    start: tuple[HttpAction, ...] = Field((), description="Requests that start the fault.")
    stop: tuple[HttpAction, ...] = Field((), description="Requests that end it (always sent).")
    kill: KillAction | None = Field(None, description="Process kills during the fault.")
    pause: PauseAction | None = Field(
        None, description="A dependency frozen (SIGSTOP) from the fault's start to its end (SIGCONT, always sent)."
    )
    duration_s: float = Field(120.0, gt=0, description="release: fault length (raised to the longest `for:` + margin).")
    ci_duration_s: float = Field(25.0, gt=0, description="ci: fault length (alerts loaded with for: 0s).")
    rate_per_min: float = Field(120.0, gt=0, description="Arrivals per minute during the fault.")
    mix: dict[str, float] = Field(default_factory=dict, description="Request mix during the fault; empty: load mix.")
    expect_alerts: tuple[str, ...] = Field((), description="Alerts that must fire during the fault.")
    log_levels: tuple[str, ...] = Field(
        ("WARNING", "ERROR", "CRITICAL"), description="At least one log line at these levels during the fault."
    )


class SharedWatch(_Table):
    """The run-wide Prometheus that scrapes other gates' instances while G6 is planned after them."""

    gates: tuple[str, ...] = Field(
        ("G2", "G3", "G4"),
        description="Gates whose instances it scrapes (load profiles, chaos experiments); empty: off.",
    )
    chaos_alerts: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Chaos experiment id -> alerts that must fire between its injection and its recovery.",
    )
    quiet_during_load: bool = Field(True, description="No alert may fire during a load profile (no fault there).")
    grace_s: float = Field(10.0, ge=0, description="Time after a window in which its alerts still count.")
    first_scrape_s: float = Field(20.0, gt=0, description="How long to wait for Prometheus to scrape a new instance.")


class BurnAlert(_Table):
    """A multi-window burn-rate alert (SRE workbook): error ratio above burn_rate x budget over both windows."""

    alert: str = Field(description="Alert name in the target's rule files.")
    burn_rate: float = Field(
        gt=0, description="Budget burn multiple the alert fires at, e.g. 14.4 (2% of 30 d in 1 h)."
    )
    long_window: str = Field("1h", description="Long window as written in the shipped rule, e.g. 1h.")
    short_window: str = Field("5m", description="Short window as written in the shipped rule, e.g. 5m.")
    ci_long_window: str | None = Field(
        None, description="ci: the long window in the labelled copy G6 loads (unset: shipped window kept)."
    )
    ci_short_window: str | None = Field(
        None, description="ci: the short window in the labelled copy G6 loads (unset: shipped window kept)."
    )
    must_fire: bool = Field(False, description="Must fire in the real Prometheus during G6's fault and resolve after.")


class SloSpec(_Table):
    """One SLO: the SLI's series, its objective and its burn-rate alerts."""

    name: str = Field(description="SLO name in the report.")
    kind: Literal["ratio", "latency"] = Field(
        description="ratio: good/bad samples of one counter; latency: histogram observations within `le`."
    )
    objective: float = Field(gt=0, lt=1, description="Target share of good events, e.g. 0.995.")
    metric: str = Field(description="ratio: counter sample name (with _total/_count); latency: histogram family.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of every SLI series (literal values).")
    good_labels: dict[str, str] = Field(default_factory=dict, description="ratio: labels of the good events.")
    bad_labels: dict[str, str] = Field(
        default_factory=dict, description="ratio: labels of one bad series (the synthetic error series)."
    )
    le: str = Field("", description="latency: bucket bound a good event falls in, as exposed (e.g. 1.0).")
    alerts: tuple[BurnAlert, ...] = Field((), description="The SLO's burn-rate alerts.")


class ObservabilityPolicy(Policy):
    """G6: metrics true under load (cross-checked), JSON logs, alert rules that fire, dashboards with data."""

    required_families: dict[str, str] = Field(
        default_factory=dict,
        description="Family -> type (counter, gauge, histogram, summary); counters without _total.",
    )
    moving_families: tuple[str, ...] | None = Field(
        None, description="Families that must change during the run; unset: every required counter and histogram."
    )
    cross_checks: tuple[CrossCheck, ...] = Field((), description="Target counters vs generator counts.")
    latency_checks: tuple[LatencyCheck, ...] = Field((), description="Histogram p99 bucket vs measured p99.")
    tolerance: float = Field(0.01, ge=0, lt=1, description="Allowed relative difference of a cross-check (1%).")
    mix: dict[str, float] = Field(default_factory=dict, description="Load request mix ([gates.G2.requests] names).")
    rate_per_min: float = Field(240.0, gt=0, description="Load arrivals per minute.")
    load_s: float = Field(120.0, gt=0, description="release: load window length.")
    ci_load_s: float = Field(30.0, gt=0, description="ci: load window length.")
    drain_s: float = Field(15.0, ge=0, description="After the last arrival, time for in-flight requests and polls.")
    quiet_s: float = Field(3.0, ge=0, description="Idle time before each direct scrape, so counters are settled.")
    fault: FaultSpec = Field(FaultSpec(), description="The fault window.")
    alert_rules: tuple[str, ...] = Field((), description="Globs of Prometheus rule files, relative to the target.")
    rule_tests: tuple[str, ...] = Field(
        (), description="Globs of `promtool test rules` files, if the target ships any."
    )
    dashboards: tuple[str, ...] = Field((), description="Globs of Grafana dashboard JSON files.")
    ci_zero_for: bool = Field(True, description="ci: load a labelled copy of the rules with every `for:` set to 0s.")
    prometheus: str = Field("prometheus", description="Prometheus server binary (name on PATH or path).")
    promtool: str = Field("promtool", description="promtool binary (name on PATH or path).")
    scrape_interval_s: float = Field(1.0, ge=0.5, le=15, description="Prometheus scrape and rule evaluation interval.")
    log_required_fields: tuple[str, ...] = Field(("ts", "level", "msg", "service"), description="Per log line.")
    log_ts_field: str = Field("ts", description="Field holding the ISO-8601 time.")
    log_level_field: str = Field("level", description="Field holding the level name.")
    log_msg_field: str = Field("msg", description="Field holding the message.")
    min_valid_log_share: float = Field(1.0, gt=0, le=1, description="Share of log lines that must be valid JSON.")
    log_sample_lines: int = Field(200, ge=10, le=5000, description="Lines copied to logs_sample/.")
    shared: SharedWatch = Field(SharedWatch(), description="Scraping G2's profiles and G4's experiments.")
    slos: tuple[SloSpec, ...] = Field((), description="SLOs and their burn-rate alerts (O6).")
    slo_margin: float = Field(
        0.25, gt=0, lt=1, description="Synthetic series: error ratio (1 +/- margin) x the alert's threshold."
    )
    slo_resolve_s: float = Field(
        120.0, gt=0, description="After the fault, how long G6 waits for the must-fire burn alerts to resolve."
    )
