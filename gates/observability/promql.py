"""Metric names referenced by a PromQL expression: a small scanner, enough for rule and panel checks.

Prometheus itself judges syntax (rules are loaded by the server and checked by promtool; panel queries
go through /api/v1/query). This scanner only answers "which metrics does this expression read", so G6
can check each of them is exposed by the target. It skips strings, label matchers (except a
`__name__="..."` matcher), range and offset durations, functions, aggregations and their label lists.
"""

from __future__ import annotations

import re

KEYWORDS = frozenset(
    {
        # aggregation operators
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
        # modifiers and binary keywords
        "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
        "and", "or", "unless", "atan2", "inf", "nan",
    }
)  # fmt: skip
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+(?:ms|[smhdwy]))+|\d*\.?\d+(?:[eE][+-]?\d+)?")
_NAME_MATCHER = re.compile(r"""__name__\s*=\s*(?:"([^"\\]*)"|'([^'\\]*)')""")
#: Grafana's built-in interval variables, replaced before a panel query is sent to Prometheus.
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range", "${__rate_interval}", "${__interval}")


def grafana_to_promql(expr: str, interval: str = "1m") -> str:
    """A panel query with Grafana's interval variables replaced and other `$var`s matching anything."""
    for name in GRAFANA_INTERVALS:
        expr = expr.replace(name, interval)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", expr)


def _skip_string(expr: str, i: int) -> int:
    """Index just after the string literal starting at i."""
    quote = expr[i]
    i += 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" and quote != "`" else 1
    return i + 1


def _skip_group(expr: str, i: int, opening: str, closing: str) -> tuple[int, str]:
    """Index just after the bracketed group starting at i, and the group's text."""
    depth, start = 0, i
    while i < len(expr):
        char = expr[i]
        if char in "\"'`":
            i = _skip_string(expr, i)
            continue
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return i + 1, expr[start : i + 1]
        i += 1
    return i, expr[start:]


def _next_char(expr: str, i: int) -> str:
    """The next non-blank character at or after i ('' at the end)."""
    while i < len(expr) and expr[i].isspace():
        i += 1
    return expr[i] if i < len(expr) else ""


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects."""
    names: set[str] = set()
    i = 0
    while i < len(expr):
        char = expr[i]
        if char in "\"'`":
            i = _skip_string(expr, i)
        elif char == "#":
            i = expr.find("\n", i) if "\n" in expr[i:] else len(expr)
        elif char == "{":
            i, group = _skip_group(expr, i, "{", "}")
            names.update(a or b for a, b in _NAME_MATCHER.findall(group))
        elif char == "[":
            i, _ = _skip_group(expr, i, "[", "]")
        elif char.isdigit() or (char == "." and i + 1 < len(expr) and expr[i + 1].isdigit()):
            found = _NUMBER.match(expr, i)
            i = found.end() if found else i + 1
        elif _IDENT.match(expr, i):
            found = _IDENT.match(expr, i)
            assert found is not None  # noqa: S101 - matched just above
            word, i = found.group(), found.end()
            following = _next_char(expr, i)
            if word.lower() in LABEL_LIST_KEYWORDS and following == "(":
                i, _ = _skip_group(expr, expr.index("(", i), "(", ")")
            elif word.lower() not in KEYWORDS and following != "(":
                names.add(word)
        else:
            i += 1
    return names
