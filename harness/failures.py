"""Readable sentences about a tool run that failed, for verdict reasons.

A reason is read by whoever decides the release: it says what happened, what to do where that is
known, and which evidence file holds the tool's full output. A tail of stderr cut at some length (a
traceback fragment such as "ite-packages/requests/adapters.py, line 729 ...") says none of that,
so no reason quotes raw output; at most it names the exception a traceback ended with.
"""

from __future__ import annotations

import re

#: The line a Python traceback ends with: `package.module.SomeError: message` (or the bare class name).
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s.*)?$")
_TRACEBACK_MARKERS = ("Traceback (most recent call last)", '\n  File "')


def raised_exception(output: str) -> str | None:
    """The class name of the exception a Python traceback in `output` ended with, or None if it holds none."""
    if not any(marker in f"\n{output}" for marker in _TRACEBACK_MARKERS):
        return None
    for line in reversed([line.rstrip() for line in output.splitlines() if line.strip()]):
        if line.startswith((" ", "\t")):
            continue
        found = _EXCEPTION_LINE.match(line)
        name = found.group(1) if found else ""
        if name and name.rsplit(".", 1)[-1][:1].isupper():
            return name
    return None


def output_shape(output: str) -> str:
    """What a failed run's error output holds, in a few words: a traceback and its exception, a message, nothing."""
    exception = raised_exception(output)
    if exception:
        return f"a Python traceback ending in {exception}"
    return "an error message" if output.strip() else "no error output"


def where_output_is(evidence_file: str | None) -> str:
    """The clause naming the evidence file that holds a run's full output."""
    return f"its full output is in {evidence_file}" if evidence_file else "its full output is kept in the pack"


def failed_run(
    tool: str,
    *,
    returncode: object,
    timed_out: bool = False,
    cancelled: bool = False,
    output: str = "",
    evidence_file: str | None = None,
) -> str:
    """One sentence on how a tool run ended badly, naming the evidence file with its output (never quoting it)."""
    if timed_out:
        ended = f"{tool} timed out"
    elif cancelled:
        ended = f"{tool} was cancelled"
    else:
        ended = f"{tool} exited {returncode} with {output_shape(output)}"
    return f"{ended}; {where_output_is(evidence_file)}"
