"""e2e_report.html: per journey its steps, screenshots (links into e2e/), duration, verdict and visual diffs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import jinja2

if TYPE_CHECKING:
    from harness.model import Verdict


class WrittenEvidence(Protocol):
    """The just-written evidence the report reads."""

    def read_json(self, name: str) -> Any:
        """A JSON file's content."""


def describe_finding(item: dict[str, Any]) -> str:
    """One line for a journey finding (console error, page error, failed request, accessibility issue)."""
    if "issue" in item:
        return f"{item['issue']} on {item['url']}"
    if "failure" in item:
        return f"{item['method']} {item['url']}: {item['failure']}"
    return f"{item['text']}" + (f" ({item['url']})" if item.get("url") else "")


def _environment() -> jinja2.Environment:
    """The templates of release/templates, autoescaped and strict."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("release", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(
    verdict: Verdict, written: WrittenEvidence, target_name: str, cases: list[dict[str, str]], policy: Any
) -> str:
    """Render the report from the evidence collect has just written (paths relative to the pack root)."""
    journeys = written.read_json("journeys.json")
    visuals = written.read_json("visual.json")
    by_journey: dict[str, list[dict[str, Any]]] = {}
    for entry in visuals:
        by_journey.setdefault(entry["journey"], []).append(entry)
    recorded = {journey["nodeid"].rsplit("::", 1)[-1] for journey in journeys}
    others = [case for case in cases if case["id"].rsplit("::", 1)[-1] not in recorded]
    return (
        _environment()
        .get_template("e2e_report.html.j2")
        .render(
            target=target_name,
            verdict=verdict,
            context=written.read_json("context.json"),
            phases=written.read_json("phases.json"),
            journeys=journeys,
            visuals=by_journey,
            cases={case["id"].rsplit("::", 1)[-1]: case for case in cases},
            others=others,
            cli=written.read_json("cli.json"),
            shutdown=written.read_json("shutdown.json"),
            policy=policy,
            describe=describe_finding,
        )
    )
