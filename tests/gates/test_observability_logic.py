"""Unit tests for G6's pure parts: PromQL metric names, exposition sums and p99 buckets, logs, rule copies."""

from __future__ import annotations

import yaml

from gates.observability.exposition import (
    bucket_counts,
    bucket_delta,
    bucket_range,
    changed_samples,
    parse_scrape,
    quantile_bucket,
    selected_sum,
)
from gates.observability.judge import compare_quantile
from gates.observability.logs import check_lines, parse_ts
from gates.observability.prom import render_config
from gates.observability.promql import grafana_to_promql, metric_names
from gates.observability.run import duration_s, prom_selector, zero_for_copy

SCRAPE = """# TYPE app_requests_total counter
app_requests_total{route="/a",status="200"} 10
app_requests_total{route="/a",status="500"} 2
app_requests_total{route="/b",status="200"} 5
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{route="/a",le="0.01"} 3
app_latency_seconds_bucket{route="/a",le="0.1"} 9
app_latency_seconds_bucket{route="/a",le="1.0"} 10
app_latency_seconds_bucket{route="/a",le="+Inf"} 10
app_latency_seconds_sum{route="/a"} 0.9
app_latency_seconds_count{route="/a"} 10
"""


def test_metric_names_skip_functions_labels_durations_and_keywords() -> None:
    """Only selected metric names come out: not functions, aggregations, label names, strings or durations."""
    expr = (
        'sum by (instance) (rate(a_total{route=~"/api/.*",status=~"5.."}[5m])) / ignoring(x) group_left(y) '
        'sum(rate(b_count[5m] offset 1d)) > 0.02 or max(c) > bool 0 unless {__name__="d", job="j"} '
        'and label_replace(up, "dst", "$1", "src", "(.*)")'
    )
    assert metric_names(expr) == {"a_total", "b_count", "c", "d", "up"}


def test_grafana_variables_become_promql() -> None:
    """Grafana's interval variables become a real duration and other variables match anything."""
    assert grafana_to_promql('rate(x{job="$job"}[$__rate_interval])') == 'rate(x{job=".*"}[1m])'


def test_selected_sum_and_counter_family_names() -> None:
    """Samples are summed by full-match label regexes; the parser names the counter family without _total."""
    scrape = parse_scrape(SCRAPE)
    assert scrape.error is None
    assert scrape.types["app_requests"] == "counter"
    assert selected_sum(scrape, "app_requests_total", {"route": "/a"}) == (12.0, 2)
    assert selected_sum(scrape, "app_requests_total", {"status": "5.."}) == (2.0, 1)
    assert selected_sum(scrape, "app_requests_total", {"route": "/"}) == (0.0, 0)


def test_duplicates_and_parse_errors_are_reported() -> None:
    """A duplicated sample and a malformed line are findings, not silently accepted."""
    assert parse_scrape("# TYPE x gauge\nx 1\nx 2\n").duplicates == ["x"]
    assert parse_scrape("x{a=1} 1\n").error is not None


def test_quantile_bucket_of_a_histogram_delta() -> None:
    """The p99 of a delta lands in the bucket whose cumulative count first reaches 99%."""
    before = bucket_counts(parse_scrape(SCRAPE), "app_latency_seconds", {"route": "/a"})
    after = {bound: count * 3 for bound, count in before.items()}
    buckets = bucket_delta(before, after)
    assert buckets[-1] == (float("inf"), 20.0)
    index = quantile_bucket(buckets, 0.99)
    assert index == 2
    assert bucket_range(buckets, index) == (0.1, 1.0)
    assert quantile_bucket(bucket_delta(before, before), 0.99) is None


def test_measured_quantile_may_exceed_the_histogram_by_client_overhead_only() -> None:
    """Generator above the histogram passes within the overhead allowance; beyond it, or below the histogram, fails."""
    buckets = [(0.001, 0.0), (0.0025, 99.0), (0.005, 99.0), (0.01, 99.0), (0.1, 100.0), (float("inf"), 100.0)]
    assert compare_quantile(buckets, 1, 0.002, 0.05) == (0, "")
    assert compare_quantile(buckets, 1, 0.004, 0.0) == (1, "")
    assert compare_quantile(buckets, 1, 0.030, 0.05) == (3, "")
    distance, finding = compare_quantile(buckets, 1, 0.080, 0.05)
    assert distance == 3
    assert "more than 50 ms of client-side overhead" in finding
    slow_histogram = [(0.001, 0.0), (0.01, 0.0), (0.1, 0.0), (1.0, 100.0), (float("inf"), 100.0)]
    distance, finding = compare_quantile(slow_histogram, 3, 0.0005, 0.05)
    assert distance == -3
    assert "below the histogram's (100, 1000] ms bucket" in finding


def test_changed_samples_counts_only_moved_values() -> None:
    """A frozen family has no changed sample; a moving one counts each changed series."""
    first = parse_scrape(SCRAPE)
    second = parse_scrape(SCRAPE.replace('status="200"} 10', 'status="200"} 11'))
    assert changed_samples(first, first, "app_requests") == 0
    assert changed_samples(first, second, "app_requests") == 1


def test_log_lines_need_json_fields_and_iso_time() -> None:
    """Plain text, missing fields and a non-ISO time each make a line invalid."""
    text = "\n".join(
        [
            '{"ts": "2026-01-01T00:00:00.000Z", "level": "ERROR", "msg": "boom", "service": "s"}',
            "2026-01-01 plain text",
            '{"ts": "2026-01-01T00:00:01Z", "level": "INFO", "msg": "x"}',
            '{"ts": "yesterday", "level": "INFO", "msg": "x", "service": "s"}',
        ]
    )
    result = check_lines(text, ("ts", "level", "msg", "service"), "ts", "level", "msg")
    assert (result.lines, result.valid) == (4, 1)
    assert set(result.problems) == {"not JSON", "missing service", "ts is not ISO-8601"}
    start = parse_ts("2026-01-01T00:00:00Z")
    assert start is not None
    assert result.at_levels(("ERROR",), start, start + 1) == [(start, "ERROR", "boom")]


def test_zero_for_copy_is_labelled_and_only_changes_alert_for() -> None:
    """The ci copy of a rule file says what it is and sets every alert's for: to 0s."""
    rules = (
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x > 1\n    for: 5m\n  - record: r\n    expr: sum(x)\n"
    )
    copy = zero_for_copy(rules, "rules.yml")
    assert copy.startswith("# GENERATED by release-harness gate G6")
    data = yaml.safe_load(copy)
    assert data["groups"][0]["rules"][0]["for"] == "0s"
    assert "for" not in data["groups"][0]["rules"][1]


def test_durations_selectors_and_config() -> None:
    """Prometheus durations parse; selectors escape regexes; the generated config scrapes one target."""
    assert duration_s("1m30s") == 90
    assert prom_selector("x_total", {"route": '/a"b'}) == 'x_total{route=~"/a\\"b"}'
    config = yaml.safe_load(render_config("127.0.0.1:9", "/metrics", 1.0, []))
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:9"]}]
    assert config["global"]["scrape_interval"] == "1000ms"
